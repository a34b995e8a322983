// The selected job: fields, actions, settings and metadata, its tasks, and the selected task.

import { api } from "./api.js";
import { absoluteTime, compactTime, fill, h, refill } from "./dom.js";
import { EventStream } from "./events.js";
import { JobBlocklist } from "./job-blocklist.js";
import { jobTypes, settingsToShow } from "./job-types.js";
import { JobLastRendered } from "./last-rendered.js";
import { confirmDialog, copyText, notify } from "./notify.js";
import { changes, state } from "./state.js";
import { JOB_ACTIONS, JOB_DELETABLE_FROM, progressBar, statusBadge } from "./statuses.js";
import { ItemTable } from "./table.js";
import { TaskDetails } from "./task-details.js";

const REASON = "requested from the web UI";
// Job events carry no activity text; after a status change the job is re-read this much later, once.
const REREAD_DELAY_MS = 300;
const byIndex = (a, b) => a.index_in_job - b.index_in_job;

function taskWorker(worker) {
  if (!worker) return null;
  return { id: worker.id || worker.uuid, name: worker.name };
}

export class JobDetails {
  constructor() {
    this.jobId = null;
    this.job = null;
    this.stream = null;
    this.tasks = new ItemTable({
      className: "tasks-grid",
      label: "Tasks",
      compare: byIndex,
      emptyText: "This job has no tasks.",
      columns: [
        { label: "#", className: "col-num", cell: (t) => String(t.index_in_job) },
        { label: "Status", className: "col-status", cell: (t) => statusBadge(t.status) },
        { label: "Name", className: "col-name", cell: (t) => t.name },
        {
          label: "Worker",
          className: "col-worker",
          cell: (t) =>
            t.worker
              ? h("a", { href: `#/workers/${encodeURIComponent(t.worker.id)}` }, t.worker.name)
              : h("span", { class: "muted" }, "–"),
        },
        {
          label: "Progress",
          className: "col-progress",
          cell: (t) => progressBar(t.steps_completed, t.steps_total, t.status),
        },
        {
          label: "Updated",
          className: "col-time",
          cell: (t) => h("time", { datetime: t.updated, title: absoluteTime(t.updated) }, compactTime(t.updated)),
        },
      ],
      onSelect: ({ active }) => {
        location.hash = `#/jobs/${encodeURIComponent(this.jobId)}${active ? `/${encodeURIComponent(active)}` : ""}`;
      },
    });
    this.taskDetails = new TaskDetails(() => this.job);
    this.lastRendered = new JobLastRendered();
    this.blocklist = new JobBlocklist();
    // Every setting, or only those the job type shows on the web (kept while moving between jobs).
    this.showAllSettings = false;
    changes.addEventListener("jobtypes", () => this.jobTypesChanged());
    this.head = h("div");
    this.body = h("div");
    this.element = h("div", { class: "details" }, this.head, this.body);
    this.show(null, null);
  }

  show(jobId, taskId) {
    if (jobId !== this.jobId) {
      this.jobId = jobId;
      this.job = null;
      clearTimeout(this.rereadTimer); // a re-read planned for the previous job
      if (this.stream) this.stream.close();
      this.stream = null;
      this.lastRendered.show(jobId);
      this.blocklist.show(jobId);
      if (!jobId) {
        this.taskDetails.show(null);
        fill(this.head);
        fill(
          this.body,
          h("div", { class: "placeholder" }, h("p", {}, "Select a job to see its settings, tasks and logs.")),
        );
        return;
      }
      const summary = state.jobs.get(jobId);
      fill(this.head, summary ? this.headFor(summary) : null);
      fill(this.body, h("p", { class: "muted pad" }, "Loading…"));
      // One stream per job for its tasks and their logs: browsers allow few connections per server.
      this.stream = new EventStream(
        { topics: "task,tasklog,last-rendered", job: jobId },
        {
          "/task": (event) => this.taskEvent(event),
          "/tasklog": (event) => this.taskDetails.logEvent(event),
          "/last-rendered": (event) => this.lastRendered.event(event),
        },
        {
          onReconnect: () => {
            this.refresh();
            this.taskDetails.loadTail();
            this.lastRendered.refresh();
          },
        },
      );
      this.refresh();
    }
    this.tasks.setSelection(taskId ? [taskId] : [], taskId);
    this.taskDetails.show(taskId);
  }

  async refresh() {
    const jobId = this.jobId;
    if (!jobId) return;
    try {
      const [job, tasks] = await Promise.all([api.job(jobId), api.jobTasks(jobId)]);
      await jobTypes.ensure(job.type); // its settings are listed as its type says
      if (jobId !== this.jobId) return;
      this.job = job;
      for (const t of tasks) t.worker = taskWorker(t.worker);
      this.tasks.setItems(tasks);
      this.tasks.setSelection(this.taskDetails.taskId ? [this.taskDetails.taskId] : [], this.taskDetails.taskId);
      fill(this.head, this.headFor(job));
      fill(this.body, this.bodyFor(job));
      this.blocklist.refresh();
    } catch (err) {
      if (jobId !== this.jobId) return;
      fill(this.head);
      fill(
        this.body,
        h(
          "div",
          { class: "placeholder" },
          h(
            "p",
            {},
            err.status === 404 ? "This job does not exist (any more)." : `Could not load the job: ${err.message}`,
          ),
        ),
      );
    }
  }

  async refreshTasks() {
    const jobId = this.jobId;
    if (!jobId) return;
    const tasks = await api.jobTasks(jobId);
    if (jobId !== this.jobId) return;
    for (const t of tasks) t.worker = taskWorker(t.worker);
    this.tasks.setItems(tasks);
    this.tasks.setSelection(this.taskDetails.taskId ? [this.taskDetails.taskId] : [], this.taskDetails.taskId);
  }

  jobChanged(summary, refreshTasks) {
    if (!this.job) return;
    const statusChanged = summary.status !== this.job.status;
    this.job = { ...this.job, ...summary };
    refill(this.head, this.headFor(this.job));
    this.taskDetails.jobChanged();
    if (refreshTasks) this.refreshTasks().catch(() => {});
    if (statusChanged) {
      clearTimeout(this.rereadTimer);
      this.rereadTimer = setTimeout(() => this.rereadJob(), REREAD_DELAY_MS);
    }
  }

  async rereadJob() {
    const jobId = this.jobId;
    if (!jobId) return;
    try {
      const job = await api.job(jobId);
      if (jobId !== this.jobId || !this.job) return;
      this.job = job;
      refill(this.head, this.headFor(job));
      // only the fields: redrawing the task list would lose its scroll position
      const fields = this.fieldsFor(job);
      this.fields?.replaceWith(fields);
      this.fields = fields;
    } catch {
      // the next event or a reconnect reads it again
    }
  }

  // A fetched list of job types may name this job's type now (or describe it differently).
  jobTypesChanged() {
    if (!this.job || !this.fields) return;
    const fields = this.fieldsFor(this.job);
    this.fields.replaceWith(fields);
    this.fields = fields;
    this.redrawSettings();
  }

  redrawSettings() {
    if (!this.job || !this.settings) return;
    const settings = this.settingsFor(this.job);
    this.settings.replaceWith(settings);
    this.settings = settings;
  }

  taskEvent(event) {
    const old = this.tasks.items.get(event.id);
    if (!old) {
      this.refreshTasks().catch(() => {});
      return;
    }
    const task = {
      ...old,
      status: event.status,
      name: event.name,
      updated: event.updated,
      steps_completed: event.steps_completed,
      steps_total: event.steps_total,
      worker: taskWorker(event.worker) || old.worker,
    };
    this.tasks.upsert(task);
    if (event.id === this.taskDetails.taskId) this.taskDetails.taskEvent(event);
    // a failure may put its worker on the job's blocklist
    if (event.status !== old.status && ["failed", "soft-failed"].includes(event.status)) this.blocklist.refresh();
  }

  headFor(job) {
    const actions = JOB_ACTIONS.map((action) =>
      h(
        "button",
        {
          type: "button",
          class: "btn",
          id: `job-${action.id}`,
          "data-action": action.id,
          disabled: !action.from.includes(job.status),
          title: action.from.includes(job.status) ? action.help : `Not possible while the job is ${job.status}`,
          onclick: () => this.setStatus(job, action),
        },
        action.label,
      ),
    );
    const deletable = JOB_DELETABLE_FROM.includes(job.status) && !job.delete_requested_at;
    actions.push(
      h(
        "button",
        {
          type: "button",
          class: "btn danger",
          id: "job-delete",
          "data-action": "delete",
          disabled: !deletable,
          title: deletable
            ? "Delete the job, its logs and last rendered images"
            : `Not possible while the job is ${job.status}`,
          onclick: () => this.deleteJob(job),
        },
        "Delete…",
      ),
    );
    const prio = h("input", {
      type: "number",
      min: "0",
      max: "100",
      value: String(job.priority),
      id: "job-priority",
      class: "num-input",
    });
    const prioForm = h(
      "form",
      { class: "inline-form", "aria-label": "Job priority" },
      h("label", { for: "job-priority" }, "Priority"),
      prio,
      h("button", { type: "submit", class: "btn", id: "job-priority-set" }, "Set"),
    );
    prioForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.setPriority(job, Number(prio.value));
    });
    return h(
      "header",
      { class: "details-head job-head" },
      h("div", { class: "title-row" }, h("h2", {}, job.name), statusBadge(job.status)),
      h(
        "div",
        { class: "job-progress" },
        progressBar(job.steps_completed, job.steps_total, job.status),
        h("span", { class: "muted" }, `${job.steps_completed} / ${job.steps_total} step${job.steps_total === 1 ? "" : "s"}`),
      ),
      h("div", { class: "button-row", role: "group", "aria-label": "Job actions" }, actions, prioForm),
    );
  }

  bodyFor(job) {
    this.fields = this.fieldsFor(job);
    this.settings = this.settingsFor(job);
    return [
      this.fields,
      this.lastRendered.element,
      this.settings,
      keyValues("Metadata", job.metadata),
      this.blocklist.element,
      h(
        "section",
        { class: "details-section", "aria-labelledby": "tasks-title" },
        h("h3", { id: "tasks-title" }, "Tasks"),
        this.tasks.element,
      ),
      this.taskDetails.element,
    ];
  }

  fieldsFor(job) {
    const field = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
    const tag = job.worker_tag ? state.tags.get(job.worker_tag) : null;
    return h(
      "dl",
      { class: "fields" },
      field(
        "ID",
        h(
          "button",
          { type: "button", class: "copy", title: "Copy the job ID", onclick: () => copyText(job.id, "Job ID") },
          h("code", {}, job.id),
          h("span", { class: "copy-icon", "aria-hidden": "true" }),
        ),
      ),
      field("Type", ...typeLabel(job.type)),
      field("Created", absoluteTime(job.created)),
      field("Updated", absoluteTime(job.updated)),
      field("Activity", job.activity || h("span", { class: "muted" }, "–")),
      field(
        "Worker tag",
        job.worker_tag ? (tag ? tag.name : job.worker_tag) : h("span", { class: "muted" }, "any worker"),
      ),
      job.delete_requested_at ? field("Deletion", `requested ${absoluteTime(job.delete_requested_at)}`) : null,
    );
  }

  settingsFor(job) {
    const jobType = jobTypes.get(job.type);
    const { rows, hidden } = settingsToShow(jobType, job.settings, this.showAllSettings);
    const toggle = hidden
      ? h(
          "button",
          {
            type: "button",
            class: "btn small",
            id: "settings-show-all",
            "aria-pressed": String(this.showAllSettings),
            title: "Also list the settings this job type keeps for the submission or for itself",
            onclick: () => {
              this.showAllSettings = !this.showAllSettings;
              this.redrawSettings();
              document.getElementById("settings-show-all")?.focus();
            },
          },
          this.showAllSettings ? "Show fewer" : `Show all (${hidden} more)`,
        )
      : null;
    return h(
      "section",
      { class: "details-section job-settings", "aria-labelledby": "kv-settings" },
      h("div", { class: "section-title" }, h("h3", { id: "kv-settings" }, "Settings"), toggle),
      jobType
        ? null
        : h(
            "p",
            { class: "hint settings-note" },
            `This Manager does not know the job type ${job.type}: every setting is listed by its key.`,
          ),
      rows.length
        ? h(
            "dl",
            { class: "fields kv" },
            rows.map((row) => [
              h("dt", { title: row.title, "data-key": row.key }, row.label),
              h("dd", {}, shownValue(row.value)),
            ]),
          )
        : h("p", { class: "muted" }, hidden ? "No settings to show here." : "No settings."),
    );
  }

  // The actions take the job the header was drawn for: the header shows before the full job is loaded.
  async setStatus(job, action) {
    try {
      await api.setJobStatus(job.id, action.status, REASON);
      notify(`Job ${job.name}: ${action.label} requested.`, "success");
    } catch (err) {
      notify(`Job ${job.name}: ${action.label} refused: ${err.message}.`, "error");
    }
  }

  async setPriority(job, priority) {
    if (!Number.isInteger(priority) || priority < 0 || priority > 100) {
      notify("The priority is a whole number from 0 to 100.", "error");
      return;
    }
    try {
      await api.setJobPriority(job.id, priority);
      notify(`Job ${job.name}: priority set to ${priority}.`, "success");
    } catch (err) {
      notify(`Job ${job.name}: priority not changed: ${err.message}.`, "error");
    }
  }

  async deleteJob(job) {
    const ok = await confirmDialog(
      `Delete job ${job.name}?`,
      "The job, its tasks, their logs and its last rendered images are deleted. This cannot be undone.",
      "Delete job",
    );
    if (!ok) return;
    try {
      await api.deleteJob(job.id);
      notify(`Job ${job.name}: deletion requested.`, "success");
    } catch (err) {
      notify(`Job ${job.name} not deleted: ${err.message}.`, "error");
    }
  }
}

// The type's label, and its name beside it when they differ; just the name when the type is unknown.
function typeLabel(name) {
  const label = jobTypes.label(name);
  if (label === name) return [h("span", { class: "job-type" }, name)];
  return [h("span", { class: "job-type", title: name }, label), " ", h("code", { class: "muted" }, name)];
}

function shownValue(value) {
  return typeof value === "string" ? value : h("code", {}, JSON.stringify(value));
}

function keyValues(title, values) {
  const entries = Object.entries(values || {});
  const id = `kv-${title.toLowerCase()}`;
  return h(
    "section",
    { class: "details-section", "aria-labelledby": id },
    h("h3", { id }, title),
    entries.length
      ? h(
          "dl",
          { class: "fields kv" },
          entries
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([k, v]) => [
              h("dt", {}, k),
              h("dd", {}, shownValue(v)),
            ]),
        )
      : h("p", { class: "muted" }, `No ${title.toLowerCase()}.`),
  );
}
