// Page-wide keys: move through the shown list, open the details, jump to the filter, and a list of the keys.
// Keys typed into a text box, a menu or an open dialog are theirs alone.

import { h } from "./dom.js";
import { tables } from "./table.js";

const KEYS = [
  ["j", "↓", "Select the next row"],
  ["k", "↑", "Select the previous row"],
  ["Enter", null, "Open the selected row's details"],
  ["/", null, "Filter the list by name"],
  ["Esc", null, "Leave the filter, close this list"],
  ["?", null, "Show these keys"],
];
// Controls that take keys themselves; the page's keys wait while one of them has the focus.
const TYPING = "input, textarea, select, [contenteditable=''], [contenteditable='true']";
// Controls that use the arrow keys or Enter themselves.
const OWN_KEYS = "a, button, summary, pre, [role='menu'], [role='listbox']";

let helpDialog = null;

function help() {
  if (!helpDialog) {
    helpDialog = h(
      "dialog",
      { class: "confirm keys-help", id: "keys-help", "aria-labelledby": "keys-help-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "keys-help-title" }, "Keyboard"),
        h(
          "dl",
          { class: "keys" },
          KEYS.map(([key, other, what]) => [
            h("dt", {}, h("kbd", {}, key), other ? [" ", h("kbd", {}, other)] : null),
            h("dd", {}, what),
          ]),
        ),
        h("p", { class: "muted" }, "Keys are ignored while typing in a text box."),
        h("div", { class: "dialog-buttons" }, h("button", { value: "close", class: "btn" }, "Close")),
      ),
    );
    document.body.append(helpDialog);
  }
  if (!helpDialog.open) helpDialog.showModal();
}

/** The table holding the focus, else the list of the view on screen. */
function currentTable() {
  const shown = [...tables].filter((t) => t.element.isConnected && t.element.offsetParent !== null);
  return (
    shown.find((t) => t.element.contains(document.activeElement)) ||
    shown.find((t) => t.element.closest(".list-pane")) ||
    null
  );
}

function move(step) {
  const table = currentTable();
  if (!table) return;
  table.move(step);
  if (!table.element.contains(document.activeElement)) table.element.focus({ preventScroll: true });
}

/** Enter: the details of the selected row get the focus (and come into view on a narrow screen). */
function open() {
  const table = currentTable();
  if (!table) return;
  if (!table.active) return table.move(1);
  const inJob = table.element.closest(".details-pane");
  const details = inJob
    ? inJob.querySelector(".task-details")
    : table.element.closest(".two-pane")?.querySelector(".details-pane");
  if (!details) return;
  if (!details.hasAttribute("tabindex")) details.setAttribute("tabindex", "-1");
  details.focus({ preventScroll: true });
  details.scrollIntoView({ block: "nearest" });
}

function focusFilter() {
  const filter = document.querySelector("#view .list-pane .text-filter");
  if (!filter || filter.offsetParent === null) return false;
  filter.focus();
  filter.select();
  return true;
}

function keydown(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  if (document.querySelector("dialog[open]")) return; // a dialog's own keys; Escape closes it
  const target = event.target instanceof Element ? event.target : document.body;
  if (target.closest(TYPING)) {
    if (event.key === "Escape" && target.matches(".text-filter")) {
      event.preventDefault();
      const table = currentTable();
      if (table) table.element.focus({ preventScroll: true });
      else target.blur();
    }
    return;
  }
  const ownKeys = Boolean(target.closest(OWN_KEYS));
  let handled = true;
  switch (event.key) {
    case "j":
      move(1);
      break;
    case "k":
      move(-1);
      break;
    case "ArrowDown":
    case "ArrowUp":
      if (ownKeys) return;
      move(event.key === "ArrowDown" ? 1 : -1);
      break;
    case "Enter":
      if (ownKeys) return;
      open();
      break;
    case "/":
      handled = focusFilter();
      break;
    case "?":
      help();
      break;
    default:
      handled = false;
  }
  if (handled) event.preventDefault();
}

export function installKeyboard() {
  document.addEventListener("keydown", keydown);
}
