// Status names and the rules the UI applies to them (which actions each status allows).

import { h } from "./dom.js";

export const WORKER_STATUSES = ["awake", "asleep", "starting", "testing", "restart", "offline", "error"];

export const JOB_STATUSES = [
  "active",
  "queued",
  "paused",
  "pause-requested",
  "cancel-requested",
  "requeueing",
  "completed",
  "failed",
  "canceled",
  "under-construction",
];

/** Job actions: the status each one asks for and the statuses it may be asked from. */
export const JOB_ACTIONS = [
  {
    id: "pause",
    label: "Pause",
    status: "pause-requested",
    from: ["active", "canceled", "queued"],
    help: "Queued tasks are paused; running tasks finish first.",
  },
  {
    id: "cancel",
    label: "Cancel",
    status: "cancel-requested",
    from: ["active", "failed", "paused", "pause-requested", "queued"],
    help: "Running and queued tasks are canceled.",
  },
  {
    id: "requeue",
    label: "Requeue",
    status: "requeueing",
    from: ["canceled", "completed", "failed", "paused"],
    help: "Unfinished tasks are queued again (all of them when the job was completed).",
  },
];
export const JOB_DELETABLE_FROM = ["canceled", "completed", "failed", "paused", "queued"];

/** Task actions, as for jobs; cancelling is also refused while the job is pausing. */
export const TASK_ACTIONS = [
  {
    id: "cancel-task",
    label: "Cancel task",
    status: "canceled",
    from: ["active", "queued", "soft-failed"],
    blockedWhileJob: ["pause-requested"],
  },
  {
    id: "requeue-task",
    label: "Requeue task",
    status: "queued",
    from: ["canceled", "completed", "failed"],
    blockedWhileJob: [],
  },
];

export function statusBadge(status) {
  return h(
    "span",
    { class: `status s-${status}` },
    h("span", { class: "dot", "aria-hidden": "true" }),
    h("span", { class: "status-text" }, status),
  );
}

/** The pending status request of a worker: an arrow and the requested status. */
export function statusChangeBadge(change) {
  if (!change) return null;
  const lazy = Boolean(change.is_lazy);
  const when = lazy ? "after the current task is finished" : "immediately";
  return h(
    "span",
    {
      class: `status-change ${lazy ? "lazy" : "forced"}`,
      title: `Requested: ${change.status}, ${when}`,
      "aria-label": `requested ${change.status}, ${when}`,
    },
    h("span", { class: "arrow", "aria-hidden": "true" }, lazy ? "➠" : "➜"),
    h("span", { class: "requested" }, change.status),
    h("span", { class: "when" }, lazy ? "after task" : "now"),
  );
}

/** Status dot and text, plus the request arrow when one is pending. */
export function workerStatusCell(worker) {
  return [statusBadge(worker.status), statusChangeBadge(worker.status_change)];
}

export function progressBar(done, total, status) {
  const pct = total > 0 ? Math.min(100, Math.round((100 * done) / total)) : status === "completed" ? 100 : 0;
  return h(
    "span",
    {
      class: `progress s-${status}`,
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(pct),
      title: `${done} of ${total} step${total === 1 ? "" : "s"}`,
    },
    h("span", { class: "bar", style: `width:${pct}%` }),
    h("span", { class: "pct" }, `${pct}%`),
  );
}
