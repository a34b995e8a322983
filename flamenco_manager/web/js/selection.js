// Multi-select helpers that know nothing of workers or jobs: a "select all shown" checkbox, the rule it
// applies, counted wording and a short list of what is selected. Lists of any kind can use them.

import { h } from "./dom.js";

/** "1 worker", "3 workers". */
export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * The selection after the "select all shown" box is used: every shown ID when not all of them are
 * selected yet, else none. Selected items a filter hides are dropped either way, so an action never
 * reaches something the user cannot see.
 */
export function selectAllShown(shownIds, selectedIds) {
  const selected = new Set(selectedIds);
  const all = shownIds.length > 0 && shownIds.every((id) => selected.has(id));
  return all ? [] : [...shownIds];
}

/** A header checkbox selecting every shown row; checked, unchecked or mixed to match the selection. */
export class SelectAllBox {
  /** onToggle() is called when the user clicks it; the owner then changes the selection and calls sync(). */
  constructor(label, onToggle) {
    this.input = h("input", { type: "checkbox", class: "select-all", "aria-label": label, title: label });
    this.input.addEventListener("click", (event) => {
      event.stopPropagation();
      onToggle();
    });
    this.element = this.input;
  }

  /** Show whether none, some or all of the shown IDs are selected. */
  sync(shownIds, selectedIds) {
    const selected = new Set(selectedIds);
    const picked = shownIds.filter((id) => selected.has(id)).length;
    this.input.checked = shownIds.length > 0 && picked === shownIds.length;
    this.input.indeterminate = picked > 0 && picked < shownIds.length;
    this.input.disabled = shownIds.length === 0;
  }
}

// Names listed by name in a summary; the rest are counted.
const SUMMARY_NAMES = 8;

/** A short list of selected items: up to a few entries, then "and N more". item(x) gives one entry's nodes. */
export function selectionList(items, item, { limit = SUMMARY_NAMES, className = "selection-list" } = {}) {
  const shown = items.slice(0, limit);
  return h(
    "ul",
    { class: className },
    shown.map((x) => h("li", {}, item(x))),
    items.length > limit ? h("li", { class: "muted" }, `and ${items.length - limit} more`) : null,
  );
}
