// A task's log: the tail on opening, then new lines live from the job's event stream. It follows the end
// while the user is there; scrolled up, it holds still and counts what arrived. The whole log downloads.

import { api } from "./api.js";
import { h } from "./dom.js";

// Lines kept on the page; older ones drop off the top (the download has them all) so a huge log stays fast.
export const MAX_LOG_LINES = 5000;
// What the Manager's logtail answers at most (its LOG_TAIL_BYTES): a tail this long starts mid-log.
const LOG_TAIL_BYTES = 2048;
// Pixels from the bottom that still count as "at the end" (rounding of scroll positions).
const AT_END_SLACK_PX = 4;
// Where the wrapping choice is remembered between visits.
const WRAP_KEY = "flamenco.taskLog.wrap";

// No such task: the Manager answers 404, or 400 for an ID that cannot be one.
const isMissing = (err) => err.status === 404 || err.status === 400;

function savedWrap() {
  try {
    return localStorage.getItem(WRAP_KEY) !== "off";
  } catch {
    return true;
  }
}

export class TaskLog {
  constructor() {
    this.taskId = null;
    this.pending = null; // chunks that arrive while the tail is being read
    this.following = true;
    this.unseen = 0;
    this.info = null; // TaskLogInfo, once the log exists
    this.infoRequest = null;

    this.pre = h("pre", {
      class: "log",
      tabindex: "0",
      role: "log",
      "aria-label": "Task log",
      "aria-live": "off", // a busy log would otherwise be read out line by line
      hidden: true,
      onscroll: () => this.scrolled(),
    });
    this.none = h("p", { class: "log-none muted" }, "No log yet");
    this.problem = h("p", { class: "log-problem", hidden: true });
    this.truncated = h(
      "p",
      { class: "log-truncated muted", hidden: true },
      "Earlier lines are not shown; download the log for all of it.",
    );
    this.paused = h(
      "button",
      {
        type: "button",
        class: "log-paused",
        hidden: true,
        title: "Scroll to the newest line and follow the log again",
        onclick: () => this.jumpToEnd(),
      },
    );
    this.wrap = h("input", { type: "checkbox", class: "log-wrap-toggle", onchange: () => this.setWrap() });
    this.wrap.checked = savedWrap();
    this.download = h(
      "a",
      { class: "btn log-download", hidden: true, title: "Download the whole log as a text file" },
      "Download log",
    );
    this.element = h(
      "div",
      { class: "task-log" },
      h(
        "div",
        { class: "log-toolbar" },
        h("h4", {}, "Log ", h("span", { class: "muted" }, "(live)")),
        h("label", { class: "log-wrap" }, this.wrap, " Wrap lines"),
        this.download,
      ),
      this.problem,
      this.none,
      this.truncated,
      h("div", { class: "log-frame" }, this.pre, this.paused),
    );
    this.setWrap();
  }

  /** Show the log of another task (or none). */
  show(taskId) {
    this.taskId = taskId;
    this.clear();
    if (!taskId) return Promise.resolve();
    return this.reload();
  }

  clear() {
    this.pending = null;
    this.pre.replaceChildren();
    this.pre.hidden = true;
    this.none.hidden = false;
    this.problem.hidden = true;
    this.truncated.hidden = true;
    this.download.hidden = true;
    this.info = null;
    this.infoRequest = null;
    this.following = true;
    this.unseen = 0;
    this.updatePaused();
  }

  /** Read the tail again (on opening, and after the event stream reconnected). */
  async reload() {
    const taskId = this.taskId;
    if (!taskId) return;
    const pending = [];
    this.pending = pending;
    try {
      const [tail, info] = await Promise.all([api.taskLogTail(taskId), this.loadInfo(true)]);
      if (taskId !== this.taskId) return;
      this.pre.replaceChildren();
      this.unseen = 0;
      this.following = true;
      let text = tail;
      // The tail starts at a byte offset, so mid-line when the log is longer: drop that partial line.
      const tailBytes = new TextEncoder().encode(tail).length;
      const cut = Boolean(info) && tailBytes >= LOG_TAIL_BYTES && info.size > tailBytes;
      if (cut) text = text.slice(text.indexOf("\n") + 1);
      this.truncated.hidden = !cut;
      this.problem.hidden = true;
      this.add(text);
    } catch (err) {
      if (taskId === this.taskId && !isMissing(err)) {
        this.problem.textContent = `Could not load the log: ${err.message}`;
        this.problem.hidden = false;
      }
    } finally {
      if (this.pending === pending) this.pending = null;
      if (taskId === this.taskId && this.pending === null) {
        // a chunk may already be in the tail when it was written while the tail was read
        const shown = this.pre.textContent;
        for (const chunk of pending) if (!shown.includes(chunk)) this.add(chunk);
      }
    }
  }

  /** A chunk of this task's log from the event stream. */
  event(text) {
    if (this.pending) this.pending.push(text);
    else this.add(text);
    if (!this.info && !this.infoRequest) this.loadInfo(false);
  }

  /** Where the whole log is (TaskLogInfo); the download link appears once there is one. */
  loadInfo(rethrow) {
    const taskId = this.taskId;
    const request = api.taskLogInfo(taskId).then(
      (info) => {
        if (taskId === this.taskId && request === this.infoRequest) {
          this.infoRequest = null;
          this.setInfo(info);
        }
        return info;
      },
      (err) => {
        if (request === this.infoRequest) this.infoRequest = null;
        if (rethrow) throw err;
        return null;
      },
    );
    this.infoRequest = request;
    return request;
  }

  setInfo(info) {
    this.info = info;
    this.download.hidden = !info;
    if (!info) return;
    this.download.href = info.url;
    this.download.download = info.url.split("/").pop() || `task-${info.task_id}.txt`;
  }

  add(text) {
    if (!text) return;
    const lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    if (!lines.length) return;
    const kept = lines.length > MAX_LOG_LINES ? lines.slice(lines.length - MAX_LOG_LINES) : lines;
    const fragment = document.createDocumentFragment();
    for (const line of kept) fragment.append(`${line}\n`);
    this.pre.hidden = false;
    this.none.hidden = true;
    this.pre.append(fragment);
    this.trim();
    if (this.following) {
      this.scrollToEnd();
    } else {
      this.unseen += lines.length;
      this.updatePaused();
    }
  }

  /** Drop the oldest lines beyond the limit, keeping what the user looks at in place. */
  trim() {
    const excess = this.pre.childNodes.length - MAX_LOG_LINES;
    if (excess <= 0) return;
    const before = this.pre.scrollHeight;
    const range = document.createRange();
    range.setStartBefore(this.pre.firstChild);
    range.setEndAfter(this.pre.childNodes[excess - 1]);
    range.deleteContents();
    this.truncated.hidden = false;
    if (!this.following) this.pre.scrollTop -= before - this.pre.scrollHeight;
  }

  atEnd() {
    return this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - AT_END_SLACK_PX;
  }

  scrolled() {
    if (this.pre.hidden) return;
    const atEnd = this.atEnd();
    if (atEnd === this.following) return;
    this.following = atEnd;
    if (atEnd) this.unseen = 0;
    this.updatePaused();
  }

  scrollToEnd() {
    this.pre.scrollTop = this.pre.scrollHeight;
  }

  jumpToEnd() {
    this.following = true;
    this.unseen = 0;
    this.scrollToEnd();
    this.updatePaused();
    this.pre.focus({ preventScroll: true });
  }

  updatePaused() {
    this.paused.hidden = this.following;
    const count = this.unseen === 1 ? " — 1 new line" : this.unseen ? ` — ${this.unseen} new lines` : "";
    this.paused.textContent = `Paused${count} · Jump to end ↓`;
  }

  setWrap() {
    const wrap = this.wrap.checked;
    this.pre.classList.toggle("nowrap", !wrap);
    try {
      localStorage.setItem(WRAP_KEY, wrap ? "on" : "off");
    } catch {
      // storage may be unavailable (private mode); the choice then lasts for this page only
    }
    if (this.following) this.scrollToEnd();
  }
}
