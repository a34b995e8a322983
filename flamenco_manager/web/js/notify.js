// Notifications in the corner: one line each, errors stay longer.

import { h } from "./dom.js";

const SHOW_MS = 6000;
const SHOW_ERROR_MS = 12000;
const MAX_SHOWN = 8;

export function notify(message, kind = "info") {
  const box = document.getElementById("toasts");
  const close = h("button", { class: "toast-close", type: "button", "aria-label": "Dismiss notification" }, "×");
  const toast = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : null },
    h("span", { class: "toast-text" }, message),
    close,
  );
  close.addEventListener("click", () => toast.remove());
  box.append(toast);
  while (box.children.length > MAX_SHOWN) box.firstElementChild.remove();
  setTimeout(() => toast.remove(), kind === "error" ? SHOW_ERROR_MS : SHOW_MS);
}

/** Ask for confirmation in a modal dialog; resolves true when the user confirms. */
export function confirmDialog(title, body, okLabel = "OK") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-body").textContent = body;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Copy text to the clipboard and say so. */
export async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    notify(`${what} copied to the clipboard.`);
  } catch {
    notify(`Could not copy the ${what.toLowerCase()}; select it and copy by hand.`, "error");
  }
}
