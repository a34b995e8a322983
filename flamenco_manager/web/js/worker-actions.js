// The Worker Actions menu: a <select> of status requests and an Apply button.

import { api } from "./api.js";
import { h } from "./dom.js";
import { notify } from "./notify.js";

const PLACEHOLDER = "Choose an action…";

/** What each action requests; `restart` items are offered only when a selected worker can restart. */
export const WORKER_ACTIONS = [
  {
    key: "offline-lazy",
    label: "Shut Down (after task is finished)",
    status: "offline",
    lazy: true,
    help: "Stops the worker program once its current task is done. Only the worker process stops, not the computer; a service manager may start it again.",
  },
  {
    key: "offline-now",
    label: "Shut Down (immediately)",
    status: "offline",
    lazy: false,
    help: "Stops the worker program now; its current task goes back to the queue. Only the worker process stops, not the computer.",
  },
  {
    key: "restart-lazy",
    label: "Restart (after task is finished)",
    status: "restart",
    lazy: true,
    restart: true,
    help: "Restarts the worker program after its current task, e.g. to pick up a new version. The computer is not rebooted.",
  },
  {
    key: "restart-now",
    label: "Restart (immediately)",
    status: "restart",
    lazy: false,
    restart: true,
    help: "Restarts the worker program now; its current task goes back to the queue. The computer is not rebooted.",
  },
  {
    key: "asleep-lazy",
    label: "Send to Sleep (after task is finished)",
    status: "asleep",
    lazy: true,
    help: "Lets the current task finish, then the worker takes no new tasks until it is woken up.",
  },
  {
    key: "asleep-now",
    label: "Send to Sleep (immediately)",
    status: "asleep",
    lazy: false,
    help: "Aborts the current task (it is queued again) and the worker takes no new tasks until it is woken up.",
  },
  {
    key: "awake-now",
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
    const canRestart = selected.some((w) => w.can_restart);
    const wanted = WORKER_ACTIONS.filter((a) => !a.restart || canRestart).map((a) => a.key);
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
    this.select.disabled = selected.length === 0;
    this.select.title = selected.length === 0 ? "Select one or more workers first" : "";
    this.syncState();
  }

  chosen() {
    return WORKER_ACTIONS.find((a) => a.key === this.select.value) || null;
  }

  syncState() {
    const action = this.chosen();
    const count = this.getSelected().length;
    this.apply.disabled = !action || count === 0;
    if (count === 0) this.help.textContent = "Select workers in the table to act on them.";
    else if (action) this.help.textContent = action.help;
    else this.help.textContent = `${count} worker${count === 1 ? "" : "s"} selected.`;
  }

  async run() {
    const action = this.chosen();
    const workers = this.getSelected();
    if (!action || workers.length === 0) return;
    this.apply.disabled = true;
    await Promise.all(
      workers.map(async (worker) => {
        try {
          await api.setWorkerStatus(worker.id, action.status, action.lazy);
          notify(`Worker ${worker.name}: ${action.label} confirmed.`, "success");
        } catch (err) {
          const reason = err.status === 412 ? "it cannot restart (no restart exit code configured)" : err.message;
          notify(`Worker ${worker.name}: ${action.label} refused: ${reason}.`, "error");
        }
      }),
    );
    this.syncState();
  }
}
