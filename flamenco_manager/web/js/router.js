// Deep links: the hash names the view and what is selected in it (#/jobs/<job>/<task>, #/workers/<worker>),
// so a pasted link opens the same selection and back/forward move between selections.

import { h } from "./dom.js";

/** The hash of a view and its selection path, e.g. link("jobs", jobId, taskId). */
export function link(view, ...ids) {
  return `#/${[view, ...ids.filter(Boolean)].map(encodeURIComponent).join("/")}`;
}

/** Go to a hash as a new history entry (back returns to the previous selection); no-op when already there. */
export function navigate(hash) {
  if (location.hash !== hash) location.hash = hash;
}

/** Point the address at a hash without a history entry (a selection the page restored by itself). */
export function replaceLink(hash) {
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

/** The quiet answer of a link naming something this Manager does not have. */
export function notFound(what, id) {
  return h(
    "div",
    { class: "placeholder not-found", role: "status" },
    h("p", {}, `${what[0].toUpperCase()}${what.slice(1)} not found.`),
    h("p", { class: "muted" }, "No ", what, " has the ID ", h("code", {}, id), "; it may have been deleted."),
  );
}
