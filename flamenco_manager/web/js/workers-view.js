// The Workers tab: filterable multi-select table, Worker Actions, details pane.

import { api } from "./api.js";
import { fill, h, perFrame, relativeTimeElement } from "./dom.js";
import { link, navigate, notFound, replaceLink } from "./router.js";
import { SelectAllBox, plural, selectAllShown, selectionList } from "./selection.js";
import { changes, state } from "./state.js";
import { ItemTable, StatusFilter, TextFilter, countLabel } from "./table.js";
import { WORKER_STATUSES, statusBadge, workerStatusCell } from "./statuses.js";
import { WorkerActionsBar } from "./worker-actions.js";
import { WorkerDetails } from "./worker-details.js";

// The list is re-read this often while shown, for last-seen times (they change without events).
const LIST_POLL_MS = 15000;

// One collator for every comparison: localeCompare with options builds a new one per call, which made
// sorting a selection of a few hundred workers cost tens of milliseconds per update.
const NAMES = new Intl.Collator(undefined, { numeric: true });
const byName = (a, b) => NAMES.compare(a.name, b.name) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class WorkersView {
  constructor() {
    this.visible = false;
    this.dirty = true;
    this.filter = new StatusFilter("Filter workers by status", WORKER_STATUSES, () => this.applyFilter());
    this.nameFilter = new TextFilter("Filter workers by name", () => this.applyFilter());
    this.selectAll = new SelectAllBox("Select all shown workers", () => this.toggleAll());
    this.table = new ItemTable({
      className: "workers-grid",
      label: "Workers",
      multi: true,
      compare: byName,
      emptyText: "No workers match. Workers appear here once they have registered with this Manager.",
      columns: [
        { label: this.selectAll.element, className: "col-select", cell: selectMark, key: () => "" },
        { label: "Status", className: "col-status", cell: workerStatusCell, key: statusKey },
        { label: "Name", className: "col-name", cell: (w) => w.name, key: (w) => w.name },
        { label: "Version", className: "col-version", cell: (w) => w.version || "–", key: (w) => w.version },
        {
          label: "Last seen",
          className: "col-seen",
          cell: (w) => relativeTimeElement(w.last_seen),
          key: (w) => w.last_seen,
        },
      ],
      onSelect: ({ active }) => this.selectionChanged(active),
    });
    this.actions = new WorkerActionsBar(() => this.selectedWorkers());
    this.details = new WorkerDetails();
    this.missing = h("div", { class: "details", hidden: true });
    this.several = h("div", { class: "details several-selected", hidden: true });
    this.missingId = null;
    // the check mark of a row adds it to or takes it from the selection, like Ctrl-click
    this.table.tbody.addEventListener(
      "click",
      (event) => {
        const row = event.target.closest(".grid-row[data-id]");
        if (!row || !event.target.closest(".col-select") || event.shiftKey) return;
        event.stopPropagation();
        this.table.choose(row.dataset.id, { toggle: true });
      },
      { capture: true },
    );
    this.count = h("span", { class: "count-label" });
    this.element = h(
      "section",
      { class: "view two-pane", "aria-label": "Workers" },
      h(
        "div",
        { class: "pane list-pane" },
        h("div", { class: "toolbar" }, this.actions.element),
        h("div", { class: "toolbar secondary" }, this.filter.element, this.nameFilter.element, this.count),
        this.table.element,
      ),
      h(
        "aside",
        { class: "pane details-pane", "aria-label": "Worker details" },
        this.details.element,
        this.several,
        this.missing,
      ),
    );
    const apply = perFrame((workers) => this.applyUpdates(workers));
    changes.addEventListener("worker", (e) => (this.visible ? apply(e.detail) : (this.dirty = true)));
    changes.addEventListener("worker-removed", (e) => {
      if (!this.visible) return void (this.dirty = true);
      this.table.remove(e.detail);
      this.afterChange();
      if (this.details.workerId === e.detail) this.details.show(null);
    });
    changes.addEventListener("reset", () => {
      this.dirty = true;
      if (this.visible) this.render();
    });
    changes.addEventListener("tags", () => this.visible && this.details.tagsChanged());
    setInterval(() => this.visible && document.visibilityState === "visible" && this.poll(), LIST_POLL_MS);
  }

  async poll() {
    let workers;
    try {
      workers = await api.workers();
    } catch {
      return;
    }
    const changed = [];
    for (const worker of workers) {
      const old = state.workers.get(worker.id);
      if (old && old.last_seen === worker.last_seen && old.status === worker.status) continue;
      state.workers.set(worker.id, worker);
      changed.push(worker);
    }
    if (changed.length) this.applyUpdates(changed);
  }

  selectedWorkers() {
    return [...this.table.selected].map((id) => state.workers.get(id)).filter(Boolean);
  }

  render() {
    const start = performance.now();
    this.dirty = false;
    this.table.setItems([...state.workers.values()], () => {
      this.table.setSelection([...this.table.selected], this.table.active);
      this.afterChange();
      performance.measure("render:workers", { start, end: performance.now() });
      if (!performance.getEntriesByName("first-render:workers").length) performance.mark("first-render:workers");
    });
    this.afterChange();
    this.details.refresh();
  }

  applyUpdates(workers) {
    const start = performance.now();
    const latest = new Map(workers.map((w) => [w.id, w]));
    for (const worker of latest.values()) {
      if (state.workers.get(worker.id) !== worker) continue;
      this.table.upsert(worker);
      if (worker.id === this.details.workerId) this.details.workerChanged(worker);
    }
    this.afterChange();
    performance.measure("apply:workers", { start, end: performance.now() });
  }

  afterChange() {
    this.filter.setCounts(state.workers.values());
    this.actions.refresh();
    this.syncSelection();
    const total = state.workers.size;
    const shown = this.table.visibleIds().length;
    this.count.textContent = countLabel(shown, total, "worker");
  }

  applyFilter() {
    this.table.setFilter((w) => this.filter.accepts(w.status) && this.nameFilter.accepts(w.name));
    this.afterChange();
  }

  selectionChanged(active) {
    this.showMissing(null);
    this.details.show(this.table.selected.size > 1 ? null : active);
    navigate(link("workers", active));
    this.actions.refresh();
    this.syncSelection();
  }

  /** The header box selects every worker the filters show, or clears the selection when all are. */
  toggleAll() {
    const ids = selectAllShown(this.table.visibleIds(), this.table.selected);
    const active = ids.includes(this.table.active) ? this.table.active : (ids[0] ?? null);
    this.table.setSelection(ids, active);
    this.selectionChanged(active);
  }

  /** The header box and the details pane follow the selection: one worker's details, or a summary of several. */
  syncSelection() {
    const selected = this.selectedWorkers().sort(byName);
    this.selectAll.sync(this.table.visibleIds(), this.table.selected);
    const several = selected.length > 1 && !this.missingId;
    this.several.hidden = !several;
    this.details.element.hidden = several || Boolean(this.missingId);
    if (!several) return void this.several.replaceChildren();
    const counts = new Map();
    for (const w of selected) counts.set(w.status, (counts.get(w.status) || 0) + 1);
    fill(
      this.several,
      h("div", { class: "details-head" }, h("h2", {}, `${plural(selected.length, "worker")} selected`)),
      h(
        "div",
        { class: "several-body" },
        h(
          "p",
          { class: "muted" },
          [...counts].map(([status, n]) => `${n} ${status}`).join(", "),
          ". Worker Actions apply to all of them; Ctrl-click (⌘-click) a worker to leave it out.",
        ),
        selectionList(selected, (w) => [statusBadge(w.status), " ", w.name]),
      ),
    );
  }

  show(params) {
    const wasVisible = this.visible;
    this.visible = true;
    if (this.dirty) this.render();
    const wanted = params[0] || null;
    // the list is complete and kept current, so an unknown ID needs no request to the Manager
    if (wanted && !state.workers.has(wanted)) {
      this.table.setSelection([], null);
      this.details.show(null);
      this.showMissing(wanted);
      this.actions.refresh();
      return;
    }
    this.showMissing(null);
    if (wanted && wanted !== this.table.active) {
      this.table.setSelection([wanted], wanted);
      this.table.rows.get(wanted)?.scrollIntoView({ block: "center" });
      this.details.show(wanted);
      this.actions.refresh();
    } else if (!wanted && this.table.active) {
      if (wasVisible) {
        // back to the address without a selection
        this.table.setSelection([], null);
        this.details.show(null);
        this.actions.refresh();
      } else {
        // back on the tab: the selection is kept, and the address says so
        replaceLink(link("workers", this.table.active));
        this.details.show(this.table.selected.size > 1 ? null : this.table.active);
      }
    }
    this.syncSelection();
  }

  showMissing(id) {
    this.missingId = id;
    this.missing.hidden = !id;
    fill(this.missing, id ? notFound("worker", id) : null);
    this.syncSelection();
  }

  hide() {
    this.visible = false;
  }
}

/** What the status cell shows: it is rebuilt only when this changes. */
function statusKey(worker) {
  const change = worker.status_change;
  return change ? `${worker.status} ${change.status} ${Boolean(change.is_lazy)}` : worker.status;
}

/** The check mark of a row; its look follows the row's aria-selected, so it needs no updates. */
function selectMark() {
  return h("span", { class: "select-mark", "aria-hidden": "true" });
}
