// "Delete jobs last updated before …": a moment, how many jobs it takes (counted from the page's list by
// the Manager's rule) and how many of them are unfinished, and one request for all of them. The jobs then
// leave the list through the events.

import { api } from "./api.js";
import { h } from "./dom.js";
import { notify } from "./notify.js";
import { changes, state } from "./state.js";

// The Manager's rule: every job last updated at or before the moment, rounded up to whole seconds, except
// a job still being submitted. Any other status counts, queued and active ones too.
const NOT_MASS_DELETED = ["under-construction"];
// Jobs whose work is over; any other status deleted means work stopped and lost, so it is warned about.
const FINISHED = ["completed", "canceled", "failed"];
// The moment offered at first: jobs untouched for a week.
const DEFAULT_AGE_MS = 7 * 24 * 3600 * 1000;

const jobs = (n) => `${n} job${n === 1 ? "" : "s"}`;

/** "2 queued, 1 active": how many jobs have each status, statuses in alphabetical order. */
function countByStatus(list) {
  const byStatus = new Map();
  for (const job of list) byStatus.set(job.status, (byStatus.get(job.status) || 0) + 1);
  return [...byStatus]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, n]) => `${n} ${status}`)
    .join(", ");
}

/** A datetime-local value (local time, to the second) for a moment in milliseconds. */
function localValue(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

/** The jobs the Manager would delete for a moment (milliseconds since the epoch). */
export function jobsUpdatedUpTo(moment, all = state.jobs.values()) {
  const upTo = Math.ceil(moment / 1000) * 1000;
  return [...all].filter((j) => !NOT_MASS_DELETED.includes(j.status) && Date.parse(j.updated) <= upTo);
}

/** "Warning: 2 of them are not finished (2 queued). …" for the unfinished part of the jobs to delete. */
function unfinishedWarning(unfinished, total) {
  const n = unfinished.length;
  const which =
    total === 1 ? "This job is" : n === total ? `All ${total} are` : `${n} of them ${n === 1 ? "is" : "are"}`;
  return (
    `Warning: ${which} not finished (${countByStatus(unfinished)}). Unfinished jobs are deleted all the same, ` +
    "with the work they have not done yet."
  );
}

export class MassDelete {
  constructor() {
    this.button = h(
      "button",
      {
        type: "button",
        class: "btn small",
        id: "mass-delete-open",
        title: "Delete every job, of any status, last updated before a moment you choose",
        onclick: () => this.open(),
      },
      "Delete old jobs…",
    );
    this.input = h("input", { type: "datetime-local", step: "1", id: "mass-delete-before", required: true });
    this.count = h("p", { class: "mass-delete-count", role: "status", "aria-live": "polite" });
    this.warning = h("p", { class: "mass-delete-warning", role: "alert", hidden: true });
    this.ok = h("button", { value: "ok", class: "btn danger", id: "mass-delete-ok" }, "Delete");
    this.dialog = h(
      "dialog",
      { class: "confirm mass-delete", "aria-labelledby": "mass-delete-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "mass-delete-title" }, "Delete jobs of any status last updated before…"),
        h(
          "p",
          { class: "mass-delete-rule" },
          "Every job whose last update is at or before this moment (to the second) is deleted with its tasks, " +
            "logs and last rendered images. Jobs of any status are included: not only finished ones, but " +
            "queued, active and paused ones too. Only jobs still being submitted are kept. " +
            "This cannot be undone.",
        ),
        h("label", { for: "mass-delete-before", class: "token-label" }, "Last updated before"),
        this.input,
        this.count,
        this.warning,
        h("div", { class: "dialog-buttons" }, h("button", { value: "cancel", class: "btn" }, "Cancel"), this.ok),
      ),
    );
    this.input.addEventListener("input", () => this.recount());
    this.dialog.addEventListener("close", () => {
      if (this.dialog.returnValue === "ok") this.run();
    });
    for (const kind of ["job", "job-removed", "reset"]) {
      changes.addEventListener(kind, () => this.dialog.open && this.recount());
    }
    document.body.append(this.dialog);
  }

  moment() {
    const ms = this.input.value ? new Date(this.input.value).getTime() : NaN;
    return Number.isNaN(ms) ? null : ms;
  }

  open() {
    if (!this.input.value) this.input.value = localValue(Date.now() - DEFAULT_AGE_MS);
    this.dialog.returnValue = "";
    this.recount();
    this.dialog.showModal();
    this.input.focus();
  }

  recount() {
    const moment = this.moment();
    if (moment === null) {
      this.count.textContent = "Choose a date and time.";
      this.warning.hidden = true;
      this.ok.disabled = true;
      return;
    }
    const chosen = jobsUpdatedUpTo(moment);
    this.count.textContent = chosen.length
      ? `${jobs(chosen.length)} would be deleted (${countByStatus(chosen)}).`
      : "No job was last updated before then.";
    const unfinished = chosen.filter((j) => !FINISHED.includes(j.status));
    this.warning.hidden = unfinished.length === 0;
    this.warning.textContent = unfinished.length ? unfinishedWarning(unfinished, chosen.length) : "";
    this.count.dataset.count = String(chosen.length);
    this.ok.disabled = chosen.length === 0;
    this.ok.textContent = chosen.length ? `Delete ${jobs(chosen.length)}` : "Delete";
  }

  async run() {
    const moment = this.moment();
    if (moment === null) return;
    try {
      await api.massDeleteJobs(new Date(moment).toISOString());
      notify(`Jobs last updated before ${new Date(moment).toLocaleString()}: deletion requested.`, "success");
    } catch (err) {
      if (err.status === 416) notify("No job was last updated before then; nothing deleted.", "error");
      else notify(`Jobs not deleted: ${err.message}.`, "error");
    }
  }
}
