// Several selected jobs: what they are, and Pause / Cancel / Requeue / Delete for all of them at once.
//
// An action applies to the selected jobs whose status allows it, and its button says how many those are
// ("Pause 2 of 5"): a mixed selection (some running, some done) still gets its work done in one go, and
// the count tells beforehand who is left out. The button is disabled when no selected job allows it.

import { api } from "./api.js";
import { h, fill } from "./dom.js";
import { confirmDialog, notify } from "./notify.js";
import { JOB_ACTIONS, JOB_DELETABLE_FROM } from "./statuses.js";

const REASON = "requested from the web UI";

const jobs = (n) => `${n} job${n === 1 ? "" : "s"}`;

/** The actions offered for a selection: the job status actions and Delete, each with who may take it. */
const ACTIONS = [
  ...JOB_ACTIONS.map((a) => ({
    id: a.id,
    label: a.label,
    verb: a.label.toLowerCase(),
    done: { pause: "paused", cancel: "canceled", requeue: "requeued" }[a.id] || a.id,
    help: a.help,
    accepts: (job) => a.from.includes(job.status),
    run: (job) => api.setJobStatus(job.id, a.status, REASON),
  })),
  {
    id: "delete",
    label: "Delete",
    verb: "delete",
    done: "deleted",
    danger: true,
    help: "The jobs, their tasks, logs and last rendered images are deleted. This cannot be undone.",
    accepts: (job) => JOB_DELETABLE_FROM.includes(job.status) && !job.delete_requested_at,
    run: (job) => api.deleteJob(job.id),
  },
];

export class JobSelectionPane {
  constructor() {
    this.jobs = [];
    this.title = h("h2", {});
    this.buttons = h("div", { class: "button-row", role: "group", "aria-label": "Actions for the selected jobs" });
    this.summary = h("ul", { class: "selection-summary" });
    this.element = h(
      "div",
      { class: "details multi-selection", hidden: true },
      h("header", { class: "details-head" }, this.title, this.buttons),
      h("section", { class: "details-section" }, h("h3", {}, "By status"), this.summary),
      h("p", { class: "muted pad" }, "Ctrl-click (Cmd-click) adds or removes a job, Shift-click selects a range."),
    );
  }

  /** Show the given selected jobs (objects from the page's state). */
  show(selected) {
    this.jobs = selected;
    this.title.textContent = `${jobs(selected.length)} selected`;
    fill(
      this.buttons,
      ACTIONS.map((action) => {
        const valid = selected.filter(action.accepts).length;
        return h(
          "button",
          {
            type: "button",
            class: action.danger ? "btn danger" : "btn",
            "data-action": action.id,
            "data-count": String(valid),
            disabled: valid === 0,
            title: valid ? action.help : `None of the selected jobs can be ${action.done} now`,
            onclick: () => this.run(action),
          },
          valid === selected.length ? `${action.label} ${valid}` : `${action.label} ${valid} of ${selected.length}`,
          action.danger ? "…" : "",
        );
      }),
    );
    const byStatus = new Map();
    for (const job of selected) byStatus.set(job.status, (byStatus.get(job.status) || 0) + 1);
    fill(
      this.summary,
      [...byStatus].sort(([a], [b]) => a.localeCompare(b)).map(([status, n]) => h("li", {}, `${status}: ${n}`)),
    );
  }

  async run(action) {
    const targets = this.jobs.filter(action.accepts);
    if (!targets.length) return;
    const left = this.jobs.length - targets.length;
    const ok = await confirmDialog(
      `${action.label} ${jobs(targets.length)}?`,
      [
        action.help,
        left
          ? `${jobs(left)} of the selection cannot be ${action.done} now and ${left === 1 ? "stays as it is" : "stay as they are"}.`
          : "",
      ]
        .filter(Boolean)
        .join(" "),
      `${action.label} ${jobs(targets.length)}`,
    );
    if (!ok) return;
    const results = await Promise.allSettled(targets.map((job) => action.run(job)));
    let failed = 0;
    results.forEach((result, i) => {
      if (result.status === "rejected") {
        failed++;
        notify(`Job ${targets[i].name}: ${action.verb} refused: ${result.reason.message}.`, "error");
      }
    });
    const done = targets.length - failed;
    if (failed) notify(`${action.label}: ${jobs(done)} requested, ${failed} refused.`, "error");
    else notify(`${action.label}: ${jobs(done)} requested.`, "success");
  }
}
