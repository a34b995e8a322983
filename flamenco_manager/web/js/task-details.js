// The selected task: fields, actions and its log, live (fed by the job's event stream).

import { api } from "./api.js";
import { absoluteTime, fill, h, refill } from "./dom.js";
import { notify } from "./notify.js";
import { notFound } from "./router.js";
import { TASK_ACTIONS, statusBadge } from "./statuses.js";
import { TaskLog } from "./task-log.js";

const REASON = "requested from the web UI";

// No such task: the Manager answers 404, or 400 for an ID that cannot be one.
const isMissing = (err) => err.status === 404 || err.status === 400;

export class TaskDetails {
  constructor(getJob) {
    this.getJob = getJob;
    this.taskId = null;
    this.task = null;
    this.log = new TaskLog();
    this.body = h("div");
    this.element = h(
      "section",
      { class: "details-section task-details", "aria-labelledby": "task-title", hidden: true },
      h("h3", { id: "task-title" }, "Task"),
      this.body,
      this.log.element,
    );
  }

  show(taskId) {
    if (taskId === this.taskId) return;
    this.taskId = taskId;
    this.task = null;
    this.element.hidden = !taskId;
    if (!taskId) {
      this.log.show(null);
      return;
    }
    fill(this.body, h("p", { class: "muted" }, "Loading…"));
    api.task(taskId).then(
      (task) => {
        if (taskId !== this.taskId) return;
        this.task = task;
        this.render();
      },
      (err) =>
        taskId === this.taskId &&
        fill(
          this.body,
          isMissing(err) ? notFound("task", taskId) : h("p", {}, `Could not load the task: ${err.message}`),
        ),
    );
    this.log.show(taskId).then(() => this.element.scrollIntoView({ block: "nearest" }));
  }

  /** A chunk of some task's log from the job's event stream. */
  logEvent(event) {
    if (event.task_id === this.taskId) this.log.event(event.log);
  }

  /** Read the log's tail again (after the event stream reconnected). */
  loadTail() {
    return this.log.reload();
  }

  taskEvent(event) {
    if (!this.task) return;
    this.task = {
      ...this.task,
      status: event.status,
      activity: event.activity,
      updated: event.updated,
      steps_completed: event.steps_completed,
      steps_total: event.steps_total,
      worker: event.worker ? { id: event.worker.uuid, name: event.worker.name } : this.task.worker,
    };
    this.render();
  }

  jobChanged() {
    if (this.task) this.render();
  }

  render() {
    const task = this.task;
    const job = this.getJob();
    const field = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
    const actions = TASK_ACTIONS.map((action) => {
      const blocked = job && action.blockedWhileJob.includes(job.status);
      const allowed = action.from.includes(task.status) && !blocked;
      return h(
        "button",
        {
          type: "button",
          class: "btn",
          id: `task-${action.id}`,
          "data-action": action.id,
          disabled: !allowed,
          title: allowed
            ? `${action.label}`
            : blocked
              ? `Not possible while the job is ${job.status}`
              : `Not possible while the task is ${task.status}`,
          onclick: () => this.setStatus(action),
        },
        action.label,
      );
    });
    refill(
      this.body,
      h("div", { class: "title-row" }, h("strong", {}, `#${task.index_in_job} ${task.name}`), statusBadge(task.status)),
      h("div", { class: "button-row", role: "group", "aria-label": "Task actions" }, actions),
      h(
        "dl",
        { class: "fields" },
        field("Activity", task.activity || h("span", { class: "muted" }, "–")),
        field(
          "Worker",
          task.worker
            ? h("a", { href: `#/workers/${encodeURIComponent(task.worker.id)}` }, task.worker.name)
            : h("span", { class: "muted" }, "–"),
        ),
        field("Type", task.task_type),
        field("Updated", absoluteTime(task.updated)),
        field("Last touched", task.last_touched ? absoluteTime(task.last_touched) : h("span", { class: "muted" }, "–")),
        task.failed_by_workers?.length
          ? field("Failed by", task.failed_by_workers.map((w) => w.name).join(", "))
          : null,
        field(
          "Commands",
          (task.commands || []).map((c) =>
            h("code", { class: "command", title: JSON.stringify(c.parameters) }, c.name),
          ),
        ),
      ),
    );
  }

  async setStatus(action) {
    const task = this.task;
    try {
      await api.setTaskStatus(task.id, action.status, REASON);
      notify(`Task ${task.name}: ${action.label} requested.`, "success");
    } catch (err) {
      notify(`Task ${task.name}: ${action.label} refused: ${err.message}.`, "error");
    }
  }
}
