// A worker's sleep schedule on its details pane: shown, switched on and off, edited with checks at each field.
//
// Days are seven toggle buttons (one click a day, nothing to misspell, the week readable at a glance) kept in
// step with Flamenco's text form ("mo tu we"), which stays editable for typing or pasting.

import { call } from "./api.js";
import { h, fill } from "./dom.js";
import { notify } from "./notify.js";

export const DAYS = [
  ["mo", "Mon", "Monday"],
  ["tu", "Tue", "Tuesday"],
  ["we", "Wed", "Wednesday"],
  ["th", "Thu", "Thursday"],
  ["fr", "Fri", "Friday"],
  ["sa", "Sat", "Saturday"],
  ["su", "Sun", "Sunday"],
];
const DAY_CODES = DAYS.map(([code]) => code);
// The Manager's own rule for a time of day: H:MM or HH:MM, 24-hour.
const TIME = /^([01]?\d|2[0-3]):([0-5]\d)$/;
// The schedule has no events of its own (another page may change it): re-read it at most this often while shown.
const REREAD_MS = 5000;

const scheduleApi = {
  get: (workerId) => call("GET", `/worker-mgt/workers/${encodeURIComponent(workerId)}/sleep-schedule`),
  set: (workerId, schedule) =>
    call("POST", `/worker-mgt/workers/${encodeURIComponent(workerId)}/sleep-schedule`, schedule),
};

/** Day codes in week order from Flamenco's text form; `unknown` lists the words that are no day. */
export function parseDays(text) {
  const found = new Set();
  const unknown = [];
  for (const word of text.toLowerCase().split(/[\s,]+/).filter(Boolean)) {
    const code = word.slice(0, 2);
    if (DAY_CODES.includes(code)) found.add(code);
    else unknown.push(word);
  }
  return { codes: DAY_CODES.filter((c) => found.has(c)), unknown };
}

/** "HH:MM" or "" (empty: the start or end of the day); `error` explains a time that is none. */
export function parseTime(text, which) {
  const value = text.trim();
  if (!value) return { value: "" };
  if (which === "end" && value === "24:00") return { value: "" };
  const match = TIME.exec(value);
  if (!match) {
    const example = which === "end" ? "18:00" : "09:00";
    return { error: `“${value}” is not a time of day: use 24-hour HH:MM, e.g. ${example}.` };
  }
  return { value: `${match[1].padStart(2, "0")}:${match[2]}` };
}

/** The schedule a form's texts describe, or per-field errors (days, start, end). */
export function checkSchedule({ days, start, end, active }) {
  const errors = {};
  const parsedDays = parseDays(days);
  if (parsedDays.unknown.length) {
    const words = parsedDays.unknown.map((w) => `“${w}”`).join(", ");
    const verb = parsedDays.unknown.length === 1 ? "is not a day" : "are not days";
    errors.days = `${words} ${verb}: use mo tu we th fr sa su.`;
  }
  const from = parseTime(start, "start");
  const until = parseTime(end, "end");
  if (from.error) errors.start = from.error;
  if (until.error) errors.end = until.error;
  if (!from.error && !until.error) {
    const a = from.value || "00:00";
    const b = until.value || "24:00";
    if (b === a) errors.end = `The end is the start (${a}): the worker would never sleep.`;
    else if (b < a) {
      errors.end = `The end (${b}) is before the start (${a}): a sleep period stays within one day, 00:00 to 24:00.`;
    }
  }
  if (Object.keys(errors).length) return { errors };
  return {
    schedule: {
      is_active: active,
      days_of_week: parsedDays.codes.join(" "),
      start_time: from.value,
      end_time: until.value,
    },
  };
}

function daysLabel(days) {
  const { codes } = parseDays(days || "");
  if (!codes.length || codes.length === 7) return "every day";
  return codes.map((c) => DAYS.find(([code]) => code === c)[1]).join(", ");
}

const FIELD_OF = { days_of_week: "days", start_time: "start", end_time: "end" };

export class SleepScheduleSection {
  constructor() {
    this.workerId = null;
    this.workerName = "";
    this.schedule = undefined; // undefined: not read yet; null: the worker has none
    this.loadError = "";
    this.readAt = 0;
    this.form = null; // the open editor's controls, or null
    this.element = h("section", {
      class: "details-section sleep-schedule",
      id: "sleep-schedule",
      "aria-labelledby": "sleep-schedule-title",
    });
  }

  /** The section for this worker (called on every render of the details); re-reads the schedule when due. */
  update(worker) {
    this.workerName = worker.name;
    if (worker.id !== this.workerId) {
      this.workerId = worker.id;
      this.schedule = undefined;
      this.loadError = "";
      this.form = null;
      this.render();
      this.read();
    } else if (!this.form && Date.now() - this.readAt > REREAD_MS) {
      this.read();
    }
    return this.element;
  }

  async read() {
    const workerId = this.workerId;
    this.readAt = Date.now();
    try {
      const schedule = await scheduleApi.get(workerId);
      if (workerId !== this.workerId) return;
      const changed = JSON.stringify(schedule) !== JSON.stringify(this.schedule) || this.loadError;
      this.schedule = schedule;
      this.loadError = "";
      if (changed && !this.form) this.render();
    } catch (err) {
      if (workerId !== this.workerId) return;
      this.loadError = `Could not read the sleep schedule: ${err.message}.`;
      if (!this.form) this.render();
    }
  }

  render() {
    if (this.form) return;
    const s = this.schedule;
    const title = h("h3", { id: "sleep-schedule-title" }, "Sleep schedule");
    if (s === undefined) {
      fill(this.element, title, h("p", { class: "muted" }, this.loadError || "Reading the schedule…"));
      return;
    }
    const edit = h(
      "button",
      { type: "button", class: "btn small", id: "sleep-edit", onclick: () => this.openEditor() },
      s ? "Edit" : "Add a sleep schedule",
    );
    if (!s) {
      fill(
        this.element,
        title,
        h("p", { id: "sleep-none" }, "No sleep schedule."),
        h(
          "p",
          { class: "hint" },
          "A schedule sends this worker to sleep at set hours of chosen days and wakes it afterwards.",
        ),
        this.loadError ? h("p", { class: "field-error", role: "alert" }, this.loadError) : null,
        edit,
      );
      return;
    }
    const toggle = h("input", { type: "checkbox", role: "switch", id: "sleep-active-toggle", checked: s.is_active });
    toggle.addEventListener("change", () => this.setActive(toggle));
    const field = (label, id, value) => [h("dt", {}, label), h("dd", { id }, value)];
    fill(
      this.element,
      h(
        "div",
        { class: "section-title" },
        title,
        h(
          "label",
          { class: "switch", for: "sleep-active-toggle" },
          toggle,
          h("span", { class: "track", "aria-hidden": "true" }),
          h("span", {}, "Enabled"),
        ),
      ),
      h(
        "dl",
        { class: `fields kv sleep-fields${s.is_active ? "" : " inactive"}` },
        field("Status", "sleep-status", s.is_active ? "Enabled" : "Disabled"),
        field("Days", "sleep-days-shown", daysLabel(s.days_of_week)),
        field("Hours", "sleep-hours-shown", `${s.start_time || "00:00"} – ${s.end_time || "24:00"}`),
      ),
      h(
        "p",
        { class: "hint" },
        "Times are the Manager's local time. At the start the worker is sent to sleep, at the end it is woken. A status set by hand holds until the schedule's next start, end or midnight.",
      ),
      h(
        "p",
        { class: "field-error", id: "sleep-toggle-error", role: "alert", hidden: !this.loadError },
        this.loadError,
      ),
      h("div", { class: "button-row" }, edit),
    );
  }

  async setActive(toggle) {
    const on = toggle.checked;
    const schedule = { ...this.schedule, is_active: on };
    const errorLine = this.element.querySelector("#sleep-toggle-error");
    toggle.disabled = true;
    try {
      await scheduleApi.set(this.workerId, schedule);
      this.schedule = schedule;
      notify(`Worker ${this.workerName}: sleep schedule ${on ? "enabled" : "disabled"}.`, "success");
      this.render();
    } catch (err) {
      toggle.checked = !on;
      errorLine.textContent = `Not ${on ? "enabled" : "disabled"}: ${err.message}.`;
      errorLine.hidden = false;
    } finally {
      toggle.disabled = false;
    }
  }

  openEditor() {
    const s = this.schedule || { is_active: true, days_of_week: "", start_time: "", end_time: "" };
    const errorLine = (id) => h("p", { class: "field-error", id, role: "alert", hidden: true });
    const days = h("input", {
      type: "text",
      id: "sleep-days",
      value: s.days_of_week,
      placeholder: "every day",
      autocomplete: "off",
      spellcheck: "false",
      "aria-describedby": "sleep-days-help sleep-days-error",
    });
    const dayButtons = DAYS.map(([code, short, long]) =>
      h(
        "button",
        {
          type: "button",
          class: "chip day",
          id: `sleep-day-${code}`,
          dataset: { day: code },
          title: long,
          "aria-pressed": "false",
        },
        short,
      ),
    );
    const timeInput = (id, value, placeholder) =>
      h("input", {
        type: "text",
        id,
        value,
        placeholder,
        inputmode: "numeric",
        autocomplete: "off",
        class: "time-input",
        "aria-describedby": `${id}-error sleep-time-help`,
      });
    const start = timeInput("sleep-start", s.start_time, "00:00");
    const end = timeInput("sleep-end", s.end_time, "24:00");
    const active = h("input", { type: "checkbox", role: "switch", id: "sleep-active", checked: s.is_active });
    const save = h("button", { type: "submit", class: "btn primary", id: "sleep-save" }, "Save schedule");
    const cancel = h("button", { type: "button", class: "btn", id: "sleep-cancel" }, "Cancel");
    const form = h(
      "form",
      { class: "sleep-form", novalidate: true, "aria-label": "Edit the sleep schedule" },
      h(
        "div",
        { class: "sleep-field" },
        h("span", { class: "sleep-label", id: "sleep-days-label" }, "Days"),
        h("div", { class: "day-toggles", role: "group", "aria-labelledby": "sleep-days-label" }, dayButtons),
        h("label", { for: "sleep-days", class: "sr-only" }, "Days as text"),
        days,
        h("p", { class: "hint", id: "sleep-days-help" }, "Two letters a day (mo tu we th fr sa su); none: every day."),
        errorLine("sleep-days-error"),
      ),
      h(
        "div",
        { class: "sleep-times" },
        h(
          "div",
          { class: "sleep-field" },
          h("label", { for: "sleep-start", class: "sleep-label" }, "Start"),
          start,
          errorLine("sleep-start-error"),
        ),
        h(
          "div",
          { class: "sleep-field" },
          h("label", { for: "sleep-end", class: "sleep-label" }, "End"),
          end,
          errorLine("sleep-end-error"),
        ),
      ),
      h(
        "p",
        { class: "hint", id: "sleep-time-help" },
        "24-hour HH:MM in the Manager's local time; empty start: 00:00, empty end: 24:00.",
      ),
      h(
        "label",
        { class: "switch", for: "sleep-active" },
        active,
        h("span", { class: "track", "aria-hidden": "true" }),
        h("span", {}, "Enabled"),
      ),
      errorLine("sleep-form-error"),
      h("div", { class: "button-row" }, cancel, save),
    );
    this.form = { form, days, dayButtons, start, end, active, save, shown: new Set() };

    const syncButtons = () => {
      const { codes } = parseDays(days.value);
      for (const button of dayButtons) {
        button.setAttribute("aria-pressed", String(codes.includes(button.dataset.day)));
      }
    };
    for (const button of dayButtons) {
      button.addEventListener("click", () => {
        const { codes, unknown } = parseDays(days.value);
        const on = new Set(codes);
        if (on.has(button.dataset.day)) on.delete(button.dataset.day);
        else on.add(button.dataset.day);
        days.value = [...DAY_CODES.filter((c) => on.has(c)), ...unknown].join(" ");
        syncButtons();
        this.check(["days"]);
      });
    }
    days.addEventListener("input", () => {
      syncButtons();
      this.check(["days"], true);
    });
    days.addEventListener("change", () => this.check(["days"]));
    for (const [input, which] of [
      [start, "start"],
      [end, "end"],
    ]) {
      // While typing only a shown error is re-checked; leaving the field checks it (and tidies "9:00").
      input.addEventListener("input", () => this.check(["start", "end"], true));
      input.addEventListener("change", () => {
        const parsed = parseTime(input.value, which);
        if (!parsed.error && input.value.trim() !== "24:00") input.value = parsed.value;
        this.check(["start", "end"]);
      });
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.closeEditor();
      }
    });
    cancel.addEventListener("click", () => this.closeEditor());
    syncButtons();
    fill(this.element, h("h3", { id: "sleep-schedule-title" }, "Sleep schedule"), form);
    dayButtons[0].focus();
  }

  closeEditor() {
    this.form = null;
    this.render();
    this.element.querySelector("#sleep-edit")?.focus();
    this.read();
  }

  /** Show or clear the errors of these fields; `onlyShown` re-checks only fields already showing one. */
  check(fields, onlyShown = false) {
    const f = this.form;
    if (!f) return {}; // a field left as the editor closes
    const result = checkSchedule({
      days: f.days.value,
      start: f.start.value,
      end: f.end.value,
      active: f.active.checked,
    });
    const errors = result.errors || {};
    for (const name of fields) {
      if (onlyShown && !f.shown.has(name) && !(name === "end" && f.shown.has("start"))) continue;
      this.fieldError(name, errors[name] || "");
    }
    return result;
  }

  fieldError(name, message) {
    const f = this.form;
    const line = this.element.querySelector(`#sleep-${name}-error`);
    line.textContent = message;
    line.hidden = !message;
    const input = name === "form" ? null : f[name];
    if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
    if (message) f.shown.add(name);
    else f.shown.delete(name);
  }

  async save() {
    const f = this.form;
    this.fieldError("form", "");
    const result = this.check(["days", "start", "end"]);
    if (!result.schedule) {
      const first = ["days", "start", "end"].find((name) => result.errors[name]);
      f[first].focus();
      return;
    }
    const workerId = this.workerId;
    f.save.disabled = true;
    try {
      await scheduleApi.set(workerId, result.schedule);
    } catch (err) {
      if (workerId !== this.workerId || f !== this.form) return;
      f.save.disabled = false;
      // The Manager names the field first ("start_time: …"); show its word next to that field.
      const match = /^(\w+): (.*)$/s.exec(err.message);
      const name = match && FIELD_OF[match[1]];
      if (err.status === 400 && name) {
        this.fieldError(name, `The Manager refused this: ${match[2]}.`);
        f[name].focus();
      } else {
        this.fieldError("form", `Not saved: ${err.message}.`);
      }
      return;
    }
    if (workerId !== this.workerId || f !== this.form) return;
    this.schedule = result.schedule;
    notify(`Worker ${this.workerName}: sleep schedule saved.`, "success");
    this.closeEditor();
  }
}
