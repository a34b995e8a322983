// A keyed list in grid layout: full render once, then per-row patches; click/ctrl/shift selection and
// arrow keys. Rows are block boxes, not table rows, so the browser skips the layout of rows out of view.

import { h } from "./dom.js";

// Rows built before the first paint, then per animation frame: enough to fill a screen at once, small
// enough that no frame of a long list takes more than a few milliseconds.
const FIRST_ROWS = 80;
const ROWS_PER_FRAME = 150;
// Cells whose text may be cut at the column's width; the full text is their tooltip.
const TOOLTIP_COLUMNS = ["col-name", "col-worker"];

/** "1 job", "2 jobs"; with a shown part, "1 of 2 jobs". */
export function countLabel(shown, total, noun) {
  const nouns = total === 1 ? noun : `${noun}s`;
  return shown === total ? `${total} ${nouns}` : `${shown} of ${total} ${nouns}`;
}

/** Every table made, for the page-wide keyboard (the one in focus, or the list of the shown view). */
export const tables = new Set();

/**
 * columns: [{label, className, cell(item) -> node|string|array}]
 * key(item) -> id; compare(a, b) for the order; options.multi allows several selected rows.
 * onSelect({ids, active}) is called when the user changes the selection.
 */
export class ItemTable {
  constructor({
    label,
    className,
    columns,
    compare,
    multi = false,
    onSelect = () => {},
    emptyText = "Nothing here yet.",
  }) {
    this.columns = columns;
    this.compare = compare;
    this.multi = multi;
    this.onSelect = onSelect;
    this.items = new Map();
    this.rows = new Map();
    this.selected = new Set();
    this.anchor = null;
    this.active = null;
    this.filter = () => true;
    this.generation = 0;
    this.tbody = h("div", { class: "grid-body", role: "rowgroup" });
    this.empty = h("div", { class: "table-empty", hidden: true }, emptyText);
    const head = h(
      "div",
      { class: "grid-head", role: "row" },
      columns.map((c) => h("div", { role: "columnheader", class: c.className }, c.label)),
    );
    this.table = h(
      "div",
      { class: `grid ${className}`, role: "grid", "aria-label": label, "aria-multiselectable": multi ? "true" : null },
      head,
      this.tbody,
    );
    this.element = h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `${label}, use the arrow keys to move` },
      this.table,
      this.empty,
    );
    tables.add(this);
    this.tbody.addEventListener("click", (event) => this.clicked(event));
    this.element.addEventListener("keydown", (event) => this.keyed(event));
  }

  /**
   * Replace every row; used for the first render and after a re-fetch. Long lists are built a chunk
   * per frame so the page stays responsive; onRendered() runs once every row is in place.
   */
  setItems(items, onRendered = () => {}) {
    this.items = new Map(items.map((item) => [item.id, item]));
    const sorted = [...this.items.values()].sort(this.compare);
    const generation = ++this.generation;
    this.rows = new Map();
    this.tbody.replaceChildren();
    for (const id of [...this.selected]) if (!this.items.has(id)) this.selected.delete(id);
    let next = 0;
    const buildChunk = (size) => {
      if (generation !== this.generation) return;
      const frag = document.createDocumentFragment();
      for (const end = Math.min(sorted.length, next + size); next < end; next++) {
        const item = this.items.get(sorted[next].id);
        if (!item || this.rows.has(item.id)) continue; // removed, or inserted by a live update meanwhile
        const row = this.buildRow(item);
        this.rows.set(item.id, row);
        frag.append(row);
      }
      this.tbody.append(frag);
      this.syncEmpty();
      if (next < sorted.length) requestAnimationFrame(() => buildChunk(ROWS_PER_FRAME));
      else {
        this.rows.get(this.active)?.scrollIntoView({ block: "nearest" });
        onRendered();
      }
    };
    buildChunk(FIRST_ROWS);
  }

  buildRow(item) {
    const row = h("div", {
      class: "grid-row",
      role: "row",
      "data-id": item.id,
      "aria-selected": this.selected.has(item.id) ? "true" : "false",
    });
    for (const column of this.columns) row.append(this.buildCell(column, item));
    row.hidden = !this.filter(item);
    if (this.active === item.id) row.classList.add("active");
    return row;
  }

  buildCell(column, item) {
    const cell = h("div", { role: "gridcell", class: column.className }, column.cell(item));
    if (TOOLTIP_COLUMNS.includes(column.className) && !cell.querySelector("[title]")) {
      cell.title = cell.textContent;
    }
    return cell;
  }

  /**
   * Insert or patch one item; moves the row when its sort position changed. An existing row keeps its
   * element and only the cells that differ are rebuilt: a column with key(item) is left alone while its
   * key stays the same (many rows change at once when an action covers a selection).
   */
  upsert(item) {
    const old = this.items.get(item.id);
    this.items.set(item.id, item);
    const previous = this.rows.get(item.id);
    if (!previous || !old) {
      if (previous) previous.remove();
      const row = this.buildRow(item);
      this.rows.set(item.id, row);
      this.insertSorted(item, row);
      this.syncEmpty();
      return;
    }
    this.columns.forEach((column, index) => {
      if (column.key && column.key(old) === column.key(item)) return;
      previous.children[index].replaceWith(this.buildCell(column, item));
    });
    if (this.compare(old, item) !== 0) {
      previous.remove();
      this.insertSorted(item, previous);
    }
    const hidden = !this.filter(item);
    if (previous.hidden !== hidden) {
      previous.hidden = hidden;
      this.syncEmpty();
    }
  }

  insertSorted(item, row) {
    for (const other of this.tbody.children) {
      const otherItem = this.items.get(other.dataset.id);
      if (otherItem && this.compare(item, otherItem) < 0) {
        other.before(row);
        return;
      }
    }
    this.tbody.append(row);
  }

  remove(id) {
    this.items.delete(id);
    const row = this.rows.get(id);
    if (row) row.remove();
    this.rows.delete(id);
    if (this.selected.delete(id) || this.active === id) {
      if (this.active === id) this.active = null;
      this.emitSelect();
    }
    this.syncEmpty();
  }

  setFilter(filter) {
    this.filter = filter;
    for (const [id, row] of this.rows) row.hidden = !filter(this.items.get(id));
    this.syncEmpty();
  }

  syncEmpty() {
    let visible = false;
    for (const row of this.rows.values()) {
      if (!row.hidden) {
        visible = true;
        break;
      }
    }
    this.empty.hidden = visible;
  }

  visibleIds() {
    return [...this.tbody.children].filter((row) => !row.hidden).map((row) => row.dataset.id);
  }

  /** Select rows from code (a deep link, a re-render); does not call onSelect. */
  setSelection(ids, active = ids[ids.length - 1] ?? null) {
    this.selected = new Set(ids.filter((id) => this.items.has(id)));
    this.active = active && this.items.has(active) ? active : null;
    if (this.anchor === null || !this.selected.has(this.anchor)) this.anchor = this.active;
    for (const [id, row] of this.rows) {
      row.setAttribute("aria-selected", this.selected.has(id) ? "true" : "false");
      row.classList.toggle("active", id === this.active);
    }
  }

  emitSelect() {
    this.setSelection([...this.selected], this.active);
    this.onSelect({ ids: [...this.selected], active: this.active });
  }

  clicked(event) {
    const row = event.target.closest(".grid-row[data-id]");
    if (!row || event.target.closest("a, button, input")) return;
    this.choose(row.dataset.id, { toggle: event.ctrlKey || event.metaKey, range: event.shiftKey });
    if (event.shiftKey) window.getSelection()?.removeAllRanges();
  }

  choose(id, { toggle = false, range = false } = {}) {
    if (this.multi && range && this.anchor && this.items.has(this.anchor)) {
      const order = this.visibleIds();
      const [a, b] = [order.indexOf(this.anchor), order.indexOf(id)].sort((x, y) => x - y);
      const span = a >= 0 && b >= 0 ? order.slice(a, b + 1) : [id];
      this.selected = new Set(toggle ? [...this.selected, ...span] : span);
      this.active = id;
    } else if (this.multi && toggle) {
      if (this.selected.has(id)) {
        this.selected.delete(id);
        this.active = this.selected.size ? [...this.selected].at(-1) : null;
      } else {
        this.selected.add(id);
        this.active = id;
      }
      this.anchor = id;
    } else {
      this.selected = new Set([id]);
      this.active = id;
      this.anchor = id;
    }
    this.emitSelect();
  }

  keyed(event) {
    if (event.target !== this.element) return;
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    event.preventDefault();
    this.move(event.key === "ArrowDown" ? 1 : -1, { range: event.shiftKey });
  }

  /** Select the next (1) or previous (-1) visible row, or the first when none is active; scrolls it into view. */
  move(step, { range = false } = {}) {
    const order = this.visibleIds();
    if (order.length === 0) return;
    const here = order.indexOf(this.active);
    const next = here < 0 ? 0 : Math.max(0, Math.min(order.length - 1, here + step));
    if (order[next] !== this.active || here < 0) this.choose(order[next], { range });
    this.rows.get(order[next])?.scrollIntoView({ block: "nearest" });
  }
}

/** A text box narrowing a table to the items whose name contains the typed text (any case). */
export class TextFilter {
  constructor(label, onChange) {
    this.text = "";
    this.element = h("input", {
      type: "search",
      class: "text-filter",
      placeholder: "Filter by name  /",
      "aria-label": label,
      title: `${label} (press / to get here, Escape to leave)`,
      autocomplete: "off",
      spellcheck: "false",
    });
    this.element.addEventListener("input", () => {
      this.text = this.element.value.trim().toLowerCase();
      onChange();
    });
  }

  accepts(name) {
    return !this.text || (name || "").toLowerCase().includes(this.text);
  }
}

/** Toggle buttons filtering a table by status; none pressed shows everything. */
export class StatusFilter {
  constructor(label, statuses, onChange, { hideEmpty = false } = {}) {
    this.statuses = statuses;
    this.hideEmpty = hideEmpty;
    this.onChange = onChange;
    this.wanted = new Set();
    this.counts = new Map();
    this.buttons = new Map();
    this.element = h("div", { class: "status-filter", role: "group", "aria-label": label });
    for (const status of statuses) {
      const count = h("span", { class: "count" }, "0");
      const button = h(
        "button",
        { type: "button", class: `chip s-${status}`, "aria-pressed": "false", title: `Show only ${status} (toggle)` },
        h("span", { class: "dot", "aria-hidden": "true" }),
        h("span", {}, status),
        count,
      );
      button.addEventListener("click", () => this.toggle(status));
      this.buttons.set(status, { button, count });
      this.element.append(button);
    }
  }

  toggle(status) {
    if (this.wanted.has(status)) this.wanted.delete(status);
    else this.wanted.add(status);
    this.buttons.get(status).button.setAttribute("aria-pressed", String(this.wanted.has(status)));
    this.onChange();
  }

  accepts(status) {
    return this.wanted.size === 0 || this.wanted.has(status);
  }

  /** Show how many items have each status; statuses nobody has are dimmed unless pressed. */
  setCounts(items) {
    const counts = new Map();
    for (const item of items) counts.set(item.status, (counts.get(item.status) || 0) + 1);
    for (const [status, { button, count }] of this.buttons) {
      const n = counts.get(status) || 0;
      count.textContent = String(n);
      const empty = n === 0 && !this.wanted.has(status);
      button.classList.toggle("none", empty);
      button.hidden = empty && this.hideEmpty;
    }
  }
}
