// The details pane of one worker: fields, tag toggles, removal.

import { api } from "./api.js";
import { absoluteTime, fill, h, refill, relativeTimeElement } from "./dom.js";
import { confirmDialog, copyText, notify } from "./notify.js";
import { SleepScheduleSection } from "./sleep-schedule.js";
import { state } from "./state.js";
import { statusBadge, workerStatusCell } from "./statuses.js";

// A burst of worker events (a status change and its acknowledgement) costs one re-fetch.
const REFETCH_DELAY_MS = 250;
// The shown worker is re-read this often: its task and last-seen time change without worker events.
const POLL_MS = 5000;

export class WorkerDetails {
  constructor() {
    this.workerId = null;
    this.detail = null;
    this.timer = null;
    this.element = h("div", { class: "details" });
    this.sleepSchedule = new SleepScheduleSection();
    this.show(null);
    setInterval(() => {
      if (this.detail && this.element.isConnected && document.visibilityState === "visible") this.refresh();
    }, POLL_MS);
  }

  show(workerId) {
    if (workerId === this.workerId && this.detail) return;
    this.workerId = workerId;
    this.detail = null;
    if (!workerId) {
      fill(
        this.element,
        h(
          "div",
          { class: "placeholder" },
          h("p", {}, "Select a worker to see its details."),
          h(
            "p",
            { class: "muted" },
            "Ctrl-click (⌘-click) adds a worker to the selection, Shift-click selects a range.",
          ),
        ),
      );
      return;
    }
    const summary = state.workers.get(workerId);
    if (summary) this.renderDetail({ ...summary, pending: true });
    this.refresh();
  }

  refresh() {
    if (!this.workerId) return;
    const workerId = this.workerId;
    api.worker(workerId).then(
      (detail) => {
        if (workerId !== this.workerId) return;
        this.detail = detail;
        this.renderDetail(detail);
      },
      (err) => {
        if (workerId !== this.workerId) return;
        fill(
          this.element,
          h(
            "div",
            { class: "placeholder" },
            h(
              "p",
              {},
              err.status === 404
                ? "This worker does not exist (any more)."
                : `Could not load the worker: ${err.message}`,
            ),
          ),
        );
      },
    );
  }

  /** A live update of the summary: show it now, fetch the rest shortly. */
  workerChanged(summary) {
    if (this.detail) this.renderDetail({ ...this.detail, ...summary, status_change: summary.status_change });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFETCH_DELAY_MS);
  }

  tagsChanged() {
    if (this.detail) this.refresh();
  }

  renderDetail(w) {
    const field = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
    const copyable = (value, what) =>
      h(
        "button",
        {
          type: "button",
          class: "copy",
          id: `copy-${what.toLowerCase().replace(/\W+/g, "-")}`,
          title: `Copy the ${what.toLowerCase()}`,
          onclick: () => copyText(value, what),
        },
        h("code", {}, value),
        h("span", { class: "copy-icon", "aria-hidden": "true" }),
      );
    const task = w.task
      ? h(
          "a",
          { href: `#/jobs/${encodeURIComponent(w.task.job_id)}/${encodeURIComponent(w.task.id)}` },
          w.task.name,
          " ",
          statusBadge(w.task.status),
        )
      : h("span", { class: "muted" }, "none yet");
    refill(
      this.element,
      h(
        "header",
        { class: "details-head" },
        h("h2", {}, w.name),
        h("div", { class: "head-status" }, workerStatusCell(w)),
      ),
      h(
        "dl",
        { class: "fields" },
        field("ID", copyable(w.id, "Worker ID")),
        field("Name", w.name),
        field("Status", workerStatusCell(w)),
        field(
          "Last seen",
          relativeTimeElement(w.last_seen),
          w.last_seen ? h("span", { class: "muted" }, ` · ${absoluteTime(w.last_seen)}`) : null,
        ),
        field("Version", w.version || "–"),
        field("Address", w.ip_address ? copyable(w.ip_address, "Address") : w.pending ? "…" : "–"),
        field("Platform", w.platform || (w.pending ? "…" : "–")),
        field(
          "Task types",
          (w.supported_task_types || []).map((t) => h("span", { class: "chip-static" }, t)),
        ),
        field(w.task && w.task.status === "active" ? "Current task" : "Last task", w.pending ? "…" : task),
        w.can_restart ? field("Can restart", "yes") : null,
      ),
      w.pending ? null : this.tagsSection(w),
      w.pending ? null : this.sleepSchedule.update(w),
      w.pending ? null : this.removeSection(w),
    );
  }

  tagsSection(w) {
    const mine = new Set((w.tags || []).map((t) => t.id));
    const tags = [...state.tags.values()].sort((a, b) => a.name.localeCompare(b.name));
    const hint = mine.size
      ? "This worker only runs jobs with one of its tags, and jobs without a tag."
      : "Without tags this worker only runs jobs that have no tag.";
    const list = tags.length
      ? h(
          "ul",
          { class: "toggles" },
          tags.map((tag) => {
            const input = h("input", {
              type: "checkbox",
              role: "switch",
              id: `tag-${tag.id}`,
              checked: mine.has(tag.id),
            });
            input.addEventListener("change", () => this.setTag(w, tag, input.checked, input));
            return h(
              "li",
              {},
              h(
                "label",
                { for: `tag-${tag.id}`, class: "switch" },
                input,
                h("span", { class: "track", "aria-hidden": "true" }),
                h("span", {}, tag.name),
              ),
              tag.description ? h("span", { class: "muted" }, tag.description) : null,
            );
          }),
        )
      : h(
          "p",
          { class: "muted" },
          "There are no tags yet. ",
          h("a", { href: "#/tags" }, "Create one on the Tags tab"),
          ".",
        );
    return h(
      "section",
      { class: "details-section", "aria-labelledby": "worker-tags-title" },
      h("h3", { id: "worker-tags-title" }, "Tags"),
      h("p", { class: "hint" }, hint),
      list,
    );
  }

  async setTag(w, tag, on, input) {
    const ids = new Set((w.tags || []).map((t) => t.id));
    if (on) ids.add(tag.id);
    else ids.delete(tag.id);
    input.disabled = true;
    try {
      await api.setWorkerTags(w.id, [...ids]);
      notify(`Worker ${w.name}: tag ${tag.name} ${on ? "added" : "removed"}.`, "success");
      this.refresh();
    } catch (err) {
      input.checked = !on;
      notify(`Worker ${w.name}: tags not changed: ${err.message}.`, "error");
    } finally {
      input.disabled = false;
    }
  }

  removeSection(w) {
    const button = h("button", { type: "button", class: "btn danger", id: "worker-remove" }, `Remove ${w.name}…`);
    button.addEventListener("click", async () => {
      const ok = await confirmDialog(
        `Remove worker ${w.name}?`,
        "The Manager forgets this worker and queues its task again. A running worker process is not told: it is refused from then on and has to register anew. Shut the worker down first.",
        "Remove worker",
      );
      if (!ok) return;
      try {
        await api.deleteWorker(w.id);
        notify(`Worker ${w.name} removed.`, "success");
      } catch (err) {
        notify(`Worker ${w.name} not removed: ${err.message}.`, "error");
      }
    });
    return h(
      "section",
      { class: "details-section", "aria-labelledby": "worker-remove-title" },
      h("h3", { id: "worker-remove-title" }, "Maintenance"),
      h(
        "p",
        { class: "hint" },
        "Removing a worker is for machines that left the farm. Shut the worker down first; a worker that is still running cannot take tasks after removal until it registers again.",
      ),
      button,
    );
  }
}
