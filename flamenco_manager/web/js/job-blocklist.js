// A job's blocklist: the workers that failed too many of its tasks of one type and get no more of them,
// with a way to let a worker (or all of them) try again.

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { notify } from "./notify.js";

const byWorkerThenType = (a, b) =>
  (a.worker_name || a.worker_id).localeCompare(b.worker_name || b.worker_id, undefined, { numeric: true }) ||
  a.task_type.localeCompare(b.task_type);

export class JobBlocklist {
  constructor() {
    this.jobId = null;
    this.entries = [];
    this.generation = 0;
    this.clearAll = h(
      "button",
      {
        type: "button",
        class: "btn small",
        id: "blocklist-clear-all",
        hidden: true,
        title: "Let every listed worker take this job's tasks again",
        onclick: () => this.remove(this.entries),
      },
      "Clear all",
    );
    this.list = h("div", { class: "blocklist-body" });
    this.element = h(
      "section",
      { class: "details-section job-blocklist", "aria-labelledby": "blocklist-title" },
      h("div", { class: "section-title" }, h("h3", { id: "blocklist-title" }, "Blocklist"), this.clearAll),
      this.list,
    );
  }

  /** Follow another job (null: none); its details call refresh() once they are loaded. */
  show(jobId) {
    this.jobId = jobId;
    this.entries = [];
    fill(this.list, h("p", { class: "muted" }, "Loading…"));
    this.clearAll.hidden = true;
  }

  async refresh() {
    const jobId = this.jobId;
    const generation = ++this.generation;
    if (!jobId) return;
    try {
      const entries = await api.jobBlocklist(jobId);
      if (jobId !== this.jobId || generation !== this.generation) return;
      this.draw(entries || []);
    } catch (err) {
      if (jobId !== this.jobId || generation !== this.generation) return;
      fill(this.list, h("p", { class: "muted" }, `Could not load the blocklist: ${err.message}`));
    }
  }

  draw(entries) {
    this.entries = [...entries].sort(byWorkerThenType);
    this.clearAll.hidden = this.entries.length === 0;
    if (!this.entries.length) {
      fill(this.list, h("p", { class: "muted" }, "No worker is blocklisted for this job."));
      return;
    }
    fill(
      this.list,
      h(
        "table",
        { class: "blocklist-table", "aria-label": "Blocklisted workers" },
        h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Task type"), h("th", {}, ""))),
        h(
          "tbody",
          {},
          this.entries.map((entry) => {
            const name = entry.worker_name || entry.worker_id;
            return h(
              "tr",
              { "data-worker": entry.worker_id, "data-task-type": entry.task_type },
              h("td", {}, h("a", { href: `#/workers/${encodeURIComponent(entry.worker_id)}` }, name)),
              h("td", {}, h("code", {}, entry.task_type)),
              h(
                "td",
                {},
                h(
                  "button",
                  {
                    type: "button",
                    class: "btn small",
                    title: `Let ${name} take this job's ${entry.task_type} tasks again`,
                    "aria-label": `Remove ${name} (${entry.task_type}) from the blocklist`,
                    onclick: () => this.remove([entry]),
                  },
                  "Remove",
                ),
              ),
            );
          }),
        ),
      ),
    );
  }

  async remove(entries) {
    const jobId = this.jobId;
    if (!jobId || !entries.length) return;
    const body = entries.map((e) => ({ worker_id: e.worker_id, task_type: e.task_type }));
    try {
      await api.removeFromJobBlocklist(jobId, body);
      const what =
        entries.length === 1
          ? `${entries[0].worker_name || entries[0].worker_id} may take ${entries[0].task_type} tasks again`
          : `${entries.length} entries removed`;
      notify(`Blocklist: ${what}.`, "success");
    } catch (err) {
      notify(`Blocklist not changed: ${err.message}.`, "error");
    }
    if (jobId === this.jobId) await this.refresh();
  }
}
