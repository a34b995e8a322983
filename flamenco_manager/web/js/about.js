// The About box: which Manager this is, this program's version, and the Flamenco release it presents.

import { api } from "./api.js";
import { fill, h } from "./dom.js";

let dialog = null;

function field(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

/** "3.7 (flamenco-farm 0.1.0)" → "flamenco-farm 0.1.0": the Manager's version names Flamenco's release first. */
function ownVersion(version) {
  const inner = /\(([^)]+)\)\s*$/.exec(version || "");
  return inner ? inner[1] : version || "unknown";
}

async function showAbout() {
  if (!dialog) {
    dialog = h("dialog", { class: "confirm about", id: "about-dialog", "aria-labelledby": "about-title" });
    document.body.append(dialog);
  }
  const body = h("div", { class: "about-body" }, h("p", { class: "muted" }, "Loading…"));
  fill(
    dialog,
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "about-title" }, "About this Manager"),
      body,
      h("div", { class: "dialog-buttons" }, h("button", { value: "close", class: "btn" }, "Close")),
    ),
  );
  dialog.showModal();
  try {
    const v = await api.version();
    fill(
      body,
      h(
        "dl",
        { class: "fields" },
        field("Manager", v.name || "–"),
        field("Version", ownVersion(v.version)),
        field("Presents itself as", `Flamenco ${v.shortversion}`),
        field("Build", h("code", {}, v.git || "–")),
      ),
      h(
        "p",
        { class: "muted" },
        "Blender's Flamenco add-on submits to this Manager when its own version matches the Flamenco release above.",
      ),
    );
  } catch (err) {
    fill(body, h("p", {}, `Could not ask the Manager: ${err.message}`));
  }
}

/** Wire the header's About button. */
export function installAbout() {
  document.getElementById("about-button")?.addEventListener("click", showAbout);
}
