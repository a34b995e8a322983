// The selected task: fields, actions and a live tail of its log (fed by the job's event stream).

import { api } from "./api.js";
import { absoluteTime, fill, h, refill } from "./dom.js";
import { notify } from "./notify.js";
import { notFound } from "./router.js";
import { TASK_ACTIONS, statusBadge } from "./statuses.js";

// The log view keeps this many characters; older lines drop off the top.
const MAX_LOG_CHARS = 64 * 1024;
const REASON = "requested from the web UI";

// No such task: the Manager answers 404, or 400 for an ID that cannot be one.
const isMissing = (err) => err.status === 404 || err.status === 400;

export class TaskDetails {
  constructor(getJob) {
    this.getJob = getJob;
    this.taskId = null;
    this.task = null;
    this.pendingLog = null;
    this.log = h("pre", { class: "log", tabindex: "0", "aria-label": "Task log (last lines, live)" });
    this.body = h("div");
    this.element = h(
      "section",
      { class: "details-section task-details", "aria-labelledby": "task-title", hidden: true },
      h("h3", { id: "task-title" }, "Task"),
      this.body,
      h("h4", {}, "Log ", h("span", { class: "muted" }, "(last lines, live)")),
      this.log,
    );
  }

  show(taskId) {
    if (taskId === this.taskId) return;
    this.taskId = taskId;
    this.task = null;
    this.element.hidden = !taskId;
    if (!taskId) return;
    fill(this.body, h("p", { class: "muted" }, "Loading…"));
    this.log.textContent = "";
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
    this.loadTail().then(() => this.element.scrollIntoView({ block: "nearest" }));
  }

  /** A chunk of some task's log from the job's event stream; chunks arriving during a tail fetch wait. */
  logEvent(event) {
    if (event.task_id !== this.taskId) return;
    if (this.pendingLog) this.pendingLog.push(event.log);
    else this.appendLog(event.log);
  }

  async loadTail() {
    const taskId = this.taskId;
    if (!taskId) return;
    const pending = [];
    this.pendingLog = pending;
    try {
      const tail = await api.taskLogTail(taskId);
      if (taskId !== this.taskId) return;
      this.log.textContent = tail;
      this.log.classList.toggle("empty", !tail);
      this.log.scrollTop = this.log.scrollHeight;
    } catch (err) {
      if (taskId === this.taskId) {
        this.log.textContent = isMissing(err) ? "" : `(could not load the log: ${err.message})`;
      }
    } finally {
      if (this.pendingLog === pending) {
        this.pendingLog = null;
        // a chunk may already be in the tail when it was written while the tail was read
        for (const chunk of pending) if (!this.log.textContent.includes(chunk)) this.appendLog(chunk);
      }
    }
  }

  appendLog(text) {
    const atBottom = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
    let next = this.log.textContent + (text.endsWith("\n") ? text : `${text}\n`);
    if (next.length > MAX_LOG_CHARS) next = next.slice(next.indexOf("\n", next.length - MAX_LOG_CHARS) + 1);
    this.log.textContent = next;
    this.log.classList.remove("empty");
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
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
