// The Worker Actions menu: a <select> of status requests and an Apply button, for one or many workers.
// Several workers: one confirmation, one request for all of them (the Manager writes them in one commit),
// and every refusal reported by worker name.

import { api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { confirmDialog, notify } from "./notify.js";
import { plural, selectionList } from "./selection.js";

const PLACEHOLDER = "Choose an action…";
// Most workers the Manager takes in one status request (its BULK_STATUS_MAX_WORKERS); more go in several.
const WORKERS_PER_REQUEST = 1000;

/**
 * What each action requests. `restart` items are hidden when no selected worker can restart, and shown
 * disabled (with the reason) when only some can. `ask(n)` is the question confirming it for n workers.
 */
export const WORKER_ACTIONS = [
  {
    key: "offline-lazy",
    ask: (n) => `Shut down ${n} workers after their current task?`,
    label: "Shut Down (after task is finished)",
    status: "offline",
    lazy: true,
    help: "Stops the worker program once its current task is done. Only the worker process stops, not the computer; a service manager may start it again.",
  },
  {
    key: "offline-now",
    ask: (n) => `Shut down ${n} workers immediately?`,
    label: "Shut Down (immediately)",
    status: "offline",
    lazy: false,
    help: "Stops the worker program now; its current task goes back to the queue. Only the worker process stops, not the computer.",
  },
  {
    key: "restart-lazy",
    ask: (n) => `Restart ${n} workers after their current task?`,
    label: "Restart (after task is finished)",
    status: "restart",
    lazy: true,
    restart: true,
    help: "Restarts the worker program after its current task, e.g. to pick up a new version. The computer is not rebooted.",
  },
  {
    key: "restart-now",
    ask: (n) => `Restart ${n} workers immediately?`,
    label: "Restart (immediately)",
    status: "restart",
    lazy: false,
    restart: true,
    help: "Restarts the worker program now; its current task goes back to the queue. The computer is not rebooted.",
  },
  {
    key: "asleep-lazy",
    ask: (n) => `Send ${n} workers to sleep after their current task?`,
    label: "Send to Sleep (after task is finished)",
    status: "asleep",
    lazy: true,
    help: "Lets the current task finish, then the worker takes no new tasks until it is woken up.",
  },
  {
    key: "asleep-now",
    ask: (n) => `Send ${n} workers to sleep immediately?`,
    label: "Send to Sleep (immediately)",
    status: "asleep",
    lazy: false,
    help: "Aborts the current task (it is queued again) and the worker takes no new tasks until it is woken up.",
  },
  {
    key: "awake-now",
    ask: (n) => `Wake up ${n} workers?`,
    label: "Wake Up",
    status: "awake",
    lazy: false,
    help: "The worker starts taking tasks again. A sleeping worker keeps a request open to the Manager, so it answers at once.",
  },
];

export class WorkerActionsBar {
  /** getSelected() returns the selected worker objects. */
  constructor(getSelected) {
    this.getSelected = getSelected;
    this.select = h("select", { id: "worker-action", name: "action", "aria-describedby": "worker-action-help" });
    this.apply = h(
      "button",
      { type: "submit", class: "btn primary", id: "worker-action-apply", disabled: true },
      "Apply",
    );
    this.help = h("span", { class: "action-help", id: "worker-action-help" });
    this.element = h(
      "form",
      { class: "worker-actions", "aria-label": "Actions for the selected workers" },
      h("label", { for: "worker-action", class: "toolbar-label" }, "Worker actions"),
      this.select,
      this.apply,
      this.help,
    );
    this.element.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    this.select.addEventListener("change", () => this.syncState());
    this.select.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.run();
      }
    });
    this.refresh();
  }

  /** Rebuild the item list for the current selection, keeping the chosen item when still offered. */
  refresh() {
    const selected = this.getSelected();
    const restartable = selected.filter((w) => w.can_restart).length;
    const wanted = WORKER_ACTIONS.filter((a) => !a.restart || restartable > 0).map((a) => a.key);
    // Restart needs every selected worker to have a restart exit code; a mixed selection says why not.
    const mixed = restartable > 0 && restartable < selected.length;
    this.restartBlocked = mixed ? restartReason(selected, restartable) : "";
    const have = [...this.select.options].slice(1).map((o) => o.value);
    if (have.join() !== wanted.join() || this.select.options.length === 0) {
      const chosen = this.select.value;
      this.select.replaceChildren(
        h("option", { value: "", title: "Pick what the selected workers should do" }, PLACEHOLDER),
      );
      for (const action of WORKER_ACTIONS) {
        if (!wanted.includes(action.key)) continue;
        this.select.append(h("option", { value: action.key, title: action.help }, action.label));
      }
      this.select.value = wanted.includes(chosen) ? chosen : "";
    }
    for (const option of this.select.options) {
      const action = WORKER_ACTIONS.find((a) => a.key === option.value);
      if (!action?.restart) continue;
      option.disabled = Boolean(this.restartBlocked);
      option.title = this.restartBlocked ? `Not available: ${this.restartBlocked}.` : action.help;
    }
    if (this.select.selectedOptions[0]?.disabled) this.select.value = "";
    this.select.disabled = selected.length === 0;
    this.select.title = selected.length === 0 ? "Select one or more workers first" : "";
    this.syncState();
  }

  chosen() {
    const action = WORKER_ACTIONS.find((a) => a.key === this.select.value) || null;
    return action?.restart && this.restartBlocked ? null : action;
  }

  syncState() {
    const action = this.chosen();
    const count = this.getSelected().length;
    this.apply.disabled = !action || count === 0;
    if (count === 0) this.help.textContent = "Select workers in the table to act on them.";
    else if (action) {
      this.help.textContent = count === 1 ? action.help : `${plural(count, "worker")}: ${action.help}`;
    }
    else if (this.restartBlocked) {
      this.help.textContent = `${plural(count, "worker")} selected. Restart is not available: ${this.restartBlocked}.`;
    } else this.help.textContent = `${plural(count, "worker")} selected.`;
  }

  async run() {
    const action = this.chosen();
    // The workers as selected now: one deleted while the question is open is reported, not skipped.
    const workers = this.getSelected();
    if (!action || workers.length === 0) return;
    this.apply.disabled = true;
    if (workers.length > 1) {
      const ok = await confirmDialog(
        action.ask(workers.length),
        `${workers.map((w) => w.name).join(", ")}. ${action.help}`,
        action.label.replace(/ \(.*\)$/, ""),
      );
      if (!ok) return this.syncState();
    }
    if (workers.length === 1) {
      const [worker] = workers;
      try {
        await api.setWorkerStatus(worker.id, action.status, action.lazy);
        notify(`Worker ${worker.name}: ${action.label} confirmed.`, "success");
      } catch (err) {
        notify(`Worker ${worker.name}: ${action.label} refused: ${refusal(err)}.`, "error");
      }
    } else {
      reportMany(action, await requestOfMany(workers, action));
    }
    this.syncState();
  }
}

/**
 * The action for many workers in as few requests as the Manager allows; per worker {worker, error}, in
 * the selection's order, error null when it was applied. A request that fails as a whole (the Manager
 * unreachable, say) is that error for each of its workers.
 */
async function requestOfMany(workers, action) {
  const slices = [];
  for (let start = 0; start < workers.length; start += WORKERS_PER_REQUEST) {
    slices.push(workers.slice(start, start + WORKERS_PER_REQUEST));
  }
  const answers = await Promise.all(
    slices.map((slice) =>
      api.setStatusOfWorkers(slice.map((w) => w.id), action.status, action.lazy).then(
        (answer) => ({ slice, answer, error: null }),
        (error) => ({ slice, answer: null, error }),
      ),
    ),
  );
  const results = [];
  for (const { slice, answer, error } of answers) {
    const applied = new Set(answer?.applied || []);
    const refused = new Map((answer?.refused || []).map((r) => [r.id, new ApiError(r.code, r.message)]));
    for (const worker of slice) {
      let why = error || refused.get(worker.id) || null;
      if (!why && !applied.has(worker.id)) why = new ApiError(0, "the Manager did not answer for it");
      results.push({ worker, error: why && refusal(why) });
    }
  }
  return results;
}

/** Why a mixed selection cannot restart, e.g. "2 of 5 selected workers have no restart exit code". */
function restartReason(selected, restartable) {
  const without = selected.length - restartable;
  const verb = without === 1 ? "has" : "have";
  return `${without} of ${selected.length} selected workers ${verb} no restart exit code`;
}

/** The Manager's answer to a refused request, in words. */
function refusal(err) {
  return err.status === 412 ? "it cannot restart (no restart exit code configured)" : err.message;
}

/** One notification for the confirmed workers and one naming each refused worker with its reason. */
function reportMany(action, results) {
  const failed = results.filter((r) => r.error);
  const done = results.length - failed.length;
  if (done > 0) {
    const of = failed.length ? `${done} of ${results.length}` : `${done}`;
    notify(`${action.label} confirmed for ${of} workers.`, "success");
  }
  if (failed.length === 0) return;
  notify(
    h(
      "div",
      { class: "bulk-failures" },
      `${action.label} refused for ${plural(failed.length, "worker")}:`,
      selectionList(
        failed,
        ({ worker, error }) => [h("strong", {}, worker.name), `: ${error}`],
        { limit: failed.length, className: "failure-list" },
      ),
    ),
    "error",
  );
}
