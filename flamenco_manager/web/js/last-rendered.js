// Last rendered images: the latest image of one job (in its details) and of the whole farm (its own tab).
// The Manager turns each image a worker reports into JPEG thumbnails and announces them on /last-rendered.

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { EventStream } from "./events.js";
import { changes, state } from "./state.js";

// Thumbnail sizes the Manager writes (JobLastRenderedImageInfo.suffixes): the largest for the farm-wide
// tab, the middle one in a job's details.
export const FULL = "last-rendered.jpg";
export const SMALL = "last-rendered-small.jpg";
const NOTHING = "Nothing rendered yet";
// Every update gets its own URL: the Manager overwrites the files under the same names.
let version = 0;

/** One image slot: shows the given thumbnail, or a quiet text when there is none or it does not load. */
export class LastRenderedImage {
  constructor(suffix, label) {
    this.suffix = suffix;
    this.label = label;
    this.info = null;
    this.element = h("div", { class: "last-rendered" });
    this.set(null);
  }

  /** info: a JobLastRenderedImageInfo, or null for none. */
  set(info) {
    this.info = info;
    const url = imageUrl(info, this.suffix);
    if (!url) {
      this.showNothing();
      return;
    }
    // The new image is shown once loaded, so the previous one stays until then and nothing shows broken.
    const img = h("img", { class: "last-rendered-img", alt: this.label, "data-base": info.base });
    img.addEventListener("load", () => {
      if (this.pending === img) fill(this.element, img);
    });
    img.addEventListener("error", () => {
      if (this.pending === img) this.showNothing();
    });
    this.pending = img;
    img.src = url;
  }

  showNothing() {
    this.pending = null;
    fill(this.element, h("p", { class: "last-rendered-none muted" }, NOTHING));
  }
}

function imageUrl(info, suffix) {
  if (!info || typeof info.base !== "string" || !Array.isArray(info.suffixes) || !info.suffixes.length) return null;
  const chosen = info.suffixes.includes(suffix) ? suffix : info.suffixes[0];
  version += 1;
  return `${info.base}/${chosen}?v=${Date.now()}-${version}`;
}

// The global answer names no job; the Manager keeps a job's images in a directory named by the job's id.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function jobIdFromBase(base) {
  const last = String(base || "")
    .split("/")
    .pop();
  return UUID.test(last) ? last.toLowerCase() : null;
}

/** The "Last Rendered" tab: the farm's most recent image, with a link to its job; live while shown. */
export class LastRenderedView {
  constructor() {
    this.title = "Last Rendered";
    this.visible = false;
    this.stream = null;
    this.jobId = null;
    this.image = new LastRenderedImage(FULL, "The farm's last rendered image");
    this.jobLine = h("p", { class: "last-rendered-job" });
    this.element = h(
      "section",
      { class: "view last-rendered-view", "aria-label": "Last Rendered" },
      h("header", { class: "last-rendered-head" }, h("h2", {}, "Last Rendered"), this.jobLine),
      this.image.element,
    );
    changes.addEventListener("job", (e) => {
      if (this.visible && e.detail.job.id === this.jobId) this.drawJob();
    });
    changes.addEventListener("job-removed", (e) => {
      if (this.visible && e.detail === this.jobId) this.refresh();
    });
    changes.addEventListener("reset", () => this.visible && this.drawJob());
  }

  show() {
    if (this.visible) return;
    this.visible = true;
    // A stream of its own while the tab is shown, closed when another tab is chosen.
    this.stream = new EventStream(
      { topics: "last-rendered" },
      { "/last-rendered": (event) => this.update(event.job_id, event.thumbnail) },
      { onReconnect: () => this.refresh() },
    );
    this.refresh();
  }

  hide() {
    this.visible = false;
    if (this.stream) this.stream.close();
    this.stream = null;
  }

  async refresh() {
    const asked = (this.asked = (this.asked || 0) + 1);
    let info;
    try {
      info = await api.globalLastRendered();
    } catch {
      return; // what is shown stays; the next event or reconnect fetches again
    }
    if (asked !== this.asked || !this.visible) return;
    this.update(info ? jobIdFromBase(info.base) : null, info);
  }

  update(jobId, info) {
    this.asked = (this.asked || 0) + 1; // an event is newer than any answer still on its way
    this.jobId = info ? jobId : null;
    this.drawJob();
    this.image.set(info);
  }

  drawJob() {
    if (!this.jobId) {
      fill(this.jobLine);
      return;
    }
    const job = state.jobs.get(this.jobId);
    const href = `#/jobs/${encodeURIComponent(this.jobId)}`;
    fill(this.jobLine, "From job ", h("a", { href, class: "last-rendered-link" }, job ? job.name : this.jobId));
  }
}

/** The image part of a job's details; JobDetails feeds it the job and its /last-rendered events. */
export class JobLastRendered {
  constructor() {
    this.jobId = null;
    this.image = new LastRenderedImage(SMALL, "The job's last rendered image");
    this.element = h(
      "section",
      { class: "details-section job-last-rendered", "aria-labelledby": "last-rendered-title" },
      h("h3", { id: "last-rendered-title" }, "Last Rendered"),
      this.image.element,
    );
  }

  show(jobId) {
    if (jobId === this.jobId) return;
    this.jobId = jobId;
    this.image.set(null);
    if (jobId) this.refresh();
  }

  async refresh() {
    const jobId = this.jobId;
    const asked = (this.asked = (this.asked || 0) + 1);
    let info;
    try {
      info = await api.jobLastRendered(jobId);
    } catch {
      return; // what is shown stays; the next event or reconnect fetches again
    }
    if (jobId !== this.jobId || asked !== this.asked) return;
    this.image.set(info);
  }

  event(event) {
    if (event.job_id !== this.jobId) return;
    this.asked = (this.asked || 0) + 1;
    this.image.set(event.thumbnail);
  }
}
