// The Jobs tab: the jobs table with progress, and the selected job's details.

import { compactTime, absoluteTime, fill, h, perFrame } from "./dom.js";
import { JobDetails } from "./job-details.js";
import { JobSelectionPane } from "./job-selection.js";
import { MassDelete } from "./mass-delete.js";
import { link, navigate, notFound, replaceLink } from "./router.js";
import { changes, state } from "./state.js";
import { JOB_STATUSES, progressBar, statusBadge } from "./statuses.js";
import { ItemTable, StatusFilter, TextFilter, countLabel } from "./table.js";

// Newest first; a job keeps its place while it runs.
const newestFirst = (a, b) => (b.created || "").localeCompare(a.created || "") || a.id.localeCompare(b.id);

function selectHint() {
  return h(
    "div",
    { class: "placeholder" },
    h("p", {}, "Select a job to see its settings, tasks and logs."),
    h("p", { class: "muted" }, "j and k move through the list, / filters it, ? lists every key."),
  );
}

export class JobsView {
  constructor() {
    this.visible = false;
    this.dirty = true;
    this.filter = new StatusFilter("Filter jobs by status", JOB_STATUSES, () => this.applyFilter(), {
      hideEmpty: true,
    });
    this.nameFilter = new TextFilter("Filter jobs by name", () => this.applyFilter());
    this.table = new ItemTable({
      className: "jobs-grid",
      label: "Jobs",
      compare: newestFirst,
      emptyText: "No jobs match. Submit a job from Blender or through the API and it appears here.",
      columns: [
        {
          label: "Status",
          className: "col-status",
          cell: (j) => [
            statusBadge(j.status),
            j.delete_requested_at ? h("span", { class: "tag-deleting" }, "deleting") : null,
          ],
        },
        { label: "Name", className: "col-name", cell: (j) => h("span", { title: j.name }, j.name) },
        { label: "Type", className: "col-type", cell: (j) => j.type },
        { label: "Prio", className: "col-num", cell: (j) => String(j.priority) },
        {
          label: "Progress",
          className: "col-progress",
          cell: (j) => progressBar(j.steps_completed, j.steps_total, j.status),
        },
        {
          label: "Updated",
          className: "col-time",
          cell: (j) => h("time", { datetime: j.updated, title: absoluteTime(j.updated) }, compactTime(j.updated)),
        },
      ],
      multi: true,
      onSelect: ({ ids }) => this.selectionChanged(ids),
    });
    // "Select all shown": every job the filters let through, or none.
    this.selectAll = h("input", {
      type: "checkbox",
      class: "select-all",
      "aria-label": "Select all shown jobs",
      title: "Select every job shown (the filters apply), or none",
    });
    this.selectAll.addEventListener("change", () => {
      const shown = this.table.visibleIds();
      const ids = this.selectAll.checked ? shown : [];
      this.table.setSelection(ids, ids.includes(this.table.active) ? this.table.active : (ids[0] ?? null));
      this.table.emitSelect();
    });
    this.table.table.querySelector(".grid-head > div")?.prepend(this.selectAll);
    this.multi = new JobSelectionPane();
    this.massDelete = new MassDelete();
    this.details = new JobDetails();
    this.missing = h("div", { class: "details", hidden: true });
    this.count = h("span", { class: "count-label" });
    this.element = h(
      "section",
      { class: "view two-pane jobs", "aria-label": "Jobs" },
      h(
        "div",
        { class: "pane list-pane" },
        h(
          "div",
          { class: "toolbar secondary" },
          this.filter.element,
          this.nameFilter.element,
          this.count,
          this.massDelete.button,
        ),
        this.table.element,
      ),
      h(
        "aside",
        { class: "pane details-pane", "aria-label": "Job details" },
        this.details.element,
        this.missing,
        this.multi.element,
      ),
    );
    const apply = perFrame((updates) => this.applyUpdates(updates));
    changes.addEventListener("job", (e) => {
      if (this.visible) apply(e.detail);
      else this.dirty = true;
      if (e.detail.job.id === this.details.jobId) this.details.jobChanged(e.detail.job, e.detail.refreshTasks);
      if (this.table.selected.has(e.detail.job.id) && this.isMulti()) this.showMulti();
    });
    changes.addEventListener("job-removed", (e) => {
      if (this.visible) {
        this.removing = true;
        try {
          this.table.remove(e.detail);
        } finally {
          this.removing = false;
        }
        this.afterChange();
      } else this.dirty = true;
      if (this.details.jobId === e.detail) this.details.show(null, null);
    });
    changes.addEventListener("reset", () => {
      this.dirty = true;
      if (this.visible) this.render();
      this.details.refresh();
    });
  }

  render() {
    const start = performance.now();
    this.dirty = false;
    this.table.setItems([...state.jobs.values()], () => {
      if (this.isMulti()) {
        // re-fetched: jobs gone meanwhile have left the selection
        this.table.setSelection([...this.table.selected], this.table.active);
        if (this.table.selected.size) this.showMulti();
        else {
          this.multi.element.hidden = true;
          if (this.visible) this.show([]);
        }
      } else this.table.setSelection(this.details.jobId ? [this.details.jobId] : [], this.details.jobId);
      this.afterChange();
      performance.measure("render:jobs", { start, end: performance.now() });
      if (!performance.getEntriesByName("first-render:jobs").length) performance.mark("first-render:jobs");
    });
    this.afterChange();
  }

  applyUpdates(updates) {
    const start = performance.now();
    const seen = new Set();
    for (const { job } of updates.reverse()) {
      if (seen.has(job.id) || state.jobs.get(job.id) !== job) continue;
      seen.add(job.id);
      this.table.upsert(job);
    }
    this.afterChange();
    performance.measure("apply:jobs", { start, end: performance.now() });
  }

  afterChange() {
    this.filter.setCounts(state.jobs.values());
    const total = state.jobs.size;
    const shown = this.table.visibleIds().length;
    this.count.textContent = countLabel(shown, total, "job");
    this.syncSelectAll();
  }

  syncSelectAll() {
    const shown = this.table.visibleIds();
    const picked = shown.filter((id) => this.table.selected.has(id)).length;
    this.selectAll.checked = shown.length > 0 && picked === shown.length;
    this.selectAll.indeterminate = picked > 0 && picked < shown.length;
  }

  /** The selection pane is shown (several jobs were selected; deletions may since have left fewer). */
  isMulti() {
    return !this.multi.element.hidden;
  }

  /** A click, Ctrl/Cmd-click or Shift-click changed the selection: one job is a link, several a summary. */
  selectionChanged(ids) {
    this.syncSelectAll();
    // jobs of a selection going away leave the rest selected, without opening one of them
    if (ids.length > 1 || (this.removing && this.isMulti() && ids.length > 0)) {
      this.showMulti();
      // several jobs have no link of their own; the address stops naming the one that was selected
      replaceLink("#/jobs");
      return;
    }
    this.multi.element.hidden = true;
    const target = link("jobs", ids[0] ?? null);
    // already the address (e.g. "#/jobs" after several were selected): no hashchange comes, so show it here
    if (location.hash === target) this.show(ids);
    else navigate(target);
  }

  showMulti() {
    this.details.show(null, null);
    this.missing.hidden = true;
    this.details.element.hidden = true;
    this.multi.element.hidden = false;
    this.multi.show([...this.table.selected].map((id) => state.jobs.get(id)).filter(Boolean));
  }

  applyFilter() {
    this.table.setFilter((j) => this.filter.accepts(j.status) && this.nameFilter.accepts(j.name));
    this.afterChange();
  }

  show(params) {
    this.visible = true;
    if (this.dirty) this.render();
    const [jobId = null, taskId = null] = params;
    this.multi.element.hidden = true;
    // the list is complete and kept current, so an unknown ID needs no request to the Manager
    if (jobId && !state.jobs.has(jobId)) {
      this.showNote(notFound("job", jobId));
      return;
    }
    if (!jobId) {
      this.details.show(null, null);
      // the details pane has its own hint once it let go of a job; before that it is empty
      this.showNote(this.details.element.querySelector(".placeholder") ? null : selectHint());
      this.table.setSelection([], null);
      this.syncSelectAll();
      return;
    }
    this.showNote(null);
    this.table.setSelection([jobId], jobId);
    this.syncSelectAll();
    if (jobId !== this.details.jobId) this.table.rows.get(jobId)?.scrollIntoView({ block: "nearest" });
    this.details.show(jobId, taskId);
  }

  /** Something in place of the job's details (a hint, "not found"), or the details again (null). */
  showNote(note) {
    this.missing.hidden = !note;
    this.details.element.hidden = Boolean(note);
    fill(this.missing, note);
    if (note) {
      this.table.setSelection([], null);
      this.details.show(null, null);
    }
  }

  hide() {
    this.visible = false;
    this.details.show(null, null);
  }
}
