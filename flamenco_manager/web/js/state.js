// What the page knows about the farm, kept current by the event stream; views listen for changes.

export const state = {
  workers: new Map(),
  jobs: new Map(),
  tags: new Map(),
  farmStatus: "unknown",
};

export const changes = new EventTarget();

export function announce(kind, detail) {
  changes.dispatchEvent(new CustomEvent(kind, { detail }));
}

/** The summary fields a worker event carries; a missing status_change means "none pending". */
export function workerFromEvent(event) {
  return {
    id: event.id,
    name: event.name,
    status: event.status,
    status_change: event.status_change,
    last_seen: event.last_seen,
    version: event.version,
    can_restart: event.can_restart,
  };
}

/** Job events carry the list's fields; settings and metadata stay as fetched. */
export function jobFromEvent(event, old) {
  return {
    ...(old || {}),
    id: event.id,
    name: event.name ?? old?.name ?? "",
    type: event.type,
    status: event.status,
    priority: event.priority,
    updated: event.updated,
    steps_completed: event.steps_completed,
    steps_total: event.steps_total,
    delete_requested_at: event.delete_requested_at,
    created: old?.created ?? event.updated,
  };
}
