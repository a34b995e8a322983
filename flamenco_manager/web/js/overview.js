// The farm overview for a wall screen: big current numbers and live charts of the last hour, drawn from the
// Manager's samples (GET /api/v3/farm-history, then one /farm-history event per new sample), never from the
// lists of workers and jobs, so it costs the same on a farm of five workers or five hundred.
//
// For tests and benchmarks the root (#overview-view) says how far it got: data-ready="1" once the charts
// were drawn from the fetched history, data-updates counting the live samples drawn since, data-samples
// the samples held, data-state "collecting" or "charts".

import { call } from "./api.js";
import { TimeChart, hhmm, hhmmss } from "./charts.js";
import { h } from "./dom.js";
import { EventStream } from "./events.js";
import { WORKER_STATUSES } from "./statuses.js";

// Fewer samples than this is too little to read a trend from: the view says it is collecting.
const MIN_SAMPLES = 3;
// The charts show this many samples' worth of time: the last hour at the Manager's 10 s interval (a
// shorter interval, set for tests, shows a shorter stretch at the same density).
const SAMPLES_SHOWN = 360;
// Completed tasks are counted per minute of wall-clock time.
const MINUTE = 60;
const KEPT =
  "The Manager keeps this history in its memory: reloading the page keeps it, restarting the Manager starts it afresh.";

const TILES = [
  ["working", "Working", "s-active", "Awake workers running a task"],
  ["idle", "Idle", "s-awake", "Awake workers without a task"],
  ["asleep", "Asleep", "s-asleep", "Workers asleep"],
  ["offline", "Offline", "s-offline", "Workers offline (and in error, if any)"],
  ["queued", "Queued tasks", "s-queued", "Tasks waiting for a worker"],
  ["jobs", "Active jobs", "s-active", "Jobs with tasks being worked on"],
];

function seconds(iso) {
  return Date.parse(iso) / 1000;
}

function tipLines(title, rows) {
  return [
    h("div", { class: "ov-tip-time" }, title),
    ...rows.map(([cls, label, value]) =>
      h("div", { class: "ov-tip-row" }, h("span", { class: `ov-swatch ${cls}` }), `${label} `, h("strong", {}, value)),
    ),
  ];
}

export class OverviewView {
  constructor() {
    this.title = "Overview";
    this.visible = false;
    this.stream = null;
    this.samples = [];
    this.interval = 10;
    this.span = 3600;
    this.loaded = false;
    this.buffered = [];
    this.updates = 0;
    this.ready = false;

    const workerLayers = WORKER_STATUSES.map((s) => ({ key: s, cls: `ov-s-${s}`, label: s }));
    this.workersChart = new TimeChart({
      kind: "columns",
      layers: workerLayers,
      label: "Workers by status over the last hour",
      describe: (p) =>
        tipLines(
          hhmmss.format(new Date(p.t * 1000)),
          workerLayers.filter((l) => p.v[l.key]).map((l) => [l.cls, l.label, p.v[l.key]]),
        ),
    });
    this.completedChart = new TimeChart({
      kind: "columns",
      layers: [{ key: "completed", cls: "ov-completed", label: "completed" }],
      label: "Tasks completed per minute over the last hour",
      describe: (p) => {
        const from = hhmm.format(new Date((p.t - p.dur) * 1000));
        return tipLines(`${from} (one minute)`, [["ov-completed", "completed", p.v.completed]]);
      },
    });
    this.queueChart = new TimeChart({
      kind: "area",
      layers: [
        { key: "queued", cls: "ov-queued", label: "queued", kind: "area" },
        { key: "active", cls: "ov-active", label: "active", kind: "line" },
      ],
      label: "Queued and active tasks over the last hour",
      describe: (p) =>
        tipLines(hhmmss.format(new Date(p.t * 1000)), [
          ["ov-queued", "queued", p.v.queued],
          ["ov-active", "active", p.v.active],
        ]),
    });
    this.charts = [this.workersChart, this.completedChart, this.queueChart];

    this.tiles = new Map();
    const tiles = TILES.map(([key, label, cls, help]) => {
      const value = h("span", { class: "ov-tile-value" }, "–");
      const note = h("span", { class: "ov-tile-note" });
      this.tiles.set(key, { value, note });
      return h(
        "div",
        { class: `ov-tile ${cls}`, title: help, dataset: { tile: key } },
        value,
        h("span", { class: "ov-tile-label" }, h("span", { class: "dot", "aria-hidden": "true" }), label),
        note,
      );
    });
    this.legends = new Map();
    this.collecting = h(
      "p",
      { class: "ov-collecting", role: "status" },
      "Collecting data — the Manager keeps the last hour. ",
      h("span", { class: "muted" }, "The charts fill in as samples arrive."),
    );
    this.subtitle = h("p", { class: "ov-subtitle muted", title: KEPT }, "Last hour");
    this.element = h(
      "section",
      {
        class: "view overview-view",
        id: "overview-view",
        "aria-label": "Farm overview",
        dataset: { updates: "0", state: "loading" },
      },
      h("header", { class: "ov-head" }, h("h2", {}, "Farm overview"), this.subtitle),
      h("div", { class: "ov-tiles", role: "group", "aria-label": "Current numbers" }, tiles),
      this.collecting,
      h(
        "div",
        { class: "ov-charts" },
        this.figure("workers", "Workers by status", this.workersChart, workerLayers),
        this.figure("completed", "Tasks completed per minute", this.completedChart, this.completedChart.layers),
        this.figure("queue", "Queued tasks", this.queueChart, this.queueChart.layers),
      ),
      h("p", { class: "ov-footnote muted" }, KEPT),
    );

    // Sizes come from the layout after it happened; drawing never asks for them.
    this.resizer = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const chart = this.charts.find((c) => c.element === entry.target);
        const { width, height } = entry.contentRect;
        if (chart && width > 0 && height > 0) chart.resize(Math.round(width), Math.round(height));
      }
      this.markReady();
    });
    for (const chart of this.charts) this.resizer.observe(chart.element);
  }

  figure(name, title, chart, layers) {
    const legend = h(
      "ul",
      { class: "ov-legend" },
      layers.map((layer) => {
        const value = h("strong", {}, "–");
        this.legends.set(`${name}:${layer.key}`, value);
        return h(
          "li",
          { dataset: { key: layer.key } },
          h("span", { class: `ov-swatch ${layer.cls}`, "aria-hidden": "true" }),
          `${layer.label} `,
          value,
        );
      }),
    );
    const fig = h(
      "figure",
      {
        class: `ov-chart ov-chart-${name}`,
        tabindex: "0",
        "aria-label": `${title}; left and right arrow keys step through the samples`,
        onkeydown: (e) => this.chartKey(e, chart),
        onblur: () => chart.inspect(-1),
      },
      h("figcaption", {}, h("span", { class: "ov-chart-title" }, title), legend),
      chart.element,
    );
    return fig;
  }

  chartKey(event, chart) {
    const steps = { ArrowLeft: -1, ArrowRight: 1, Home: -Infinity, End: Infinity };
    if (event.key === "Escape") {
      chart.inspect(-1);
    } else if (event.key in steps) {
      const step = steps[event.key];
      if (Number.isFinite(step)) chart.step(step);
      else chart.inspect(step < 0 ? 0 : chart.points.length - 1);
    } else return;
    event.preventDefault();
  }

  show() {
    if (this.visible) return;
    this.visible = true;
    this.stream = new EventStream(
      { topics: "farm-history" },
      { "/farm-history": (sample) => this.live(sample) },
      { onReconnect: () => this.refresh() },
    );
    this.refresh();
  }

  hide() {
    this.visible = false;
    if (this.stream) this.stream.close();
    this.stream = null;
    this.loaded = false;
    this.buffered = [];
  }

  async refresh() {
    const asked = (this.asked = (this.asked || 0) + 1);
    this.loaded = false;
    let history;
    try {
      history = await call("GET", "/farm-history");
    } catch {
      return; // what is shown stays; a reconnect fetches again
    }
    if (asked !== this.asked || !this.visible) return;
    this.interval = history.interval;
    this.span = history.span;
    this.samples = history.samples;
    this.loaded = true;
    this.drawAll();
    // Samples announced while the history was on its way, newer than what it held.
    const last = this.samples.length ? seconds(this.samples[this.samples.length - 1].time) : -Infinity;
    const waiting = this.buffered.filter((s) => seconds(s.time) > last);
    this.buffered = [];
    for (const sample of waiting) this.live(sample);
  }

  get windowSec() {
    return Math.min(this.span, SAMPLES_SHOWN * this.interval);
  }

  get end() {
    return this.samples.length ? seconds(this.samples[this.samples.length - 1].time) : Date.now() / 1000;
  }

  workerPoint(s) {
    return { t: seconds(s.time), dur: this.interval, v: s.workers };
  }

  queuePoint(s) {
    return { t: seconds(s.time), dur: this.interval, v: { queued: s.tasks_queued, active: s.tasks_active } };
  }

  /** Completions per wall-clock minute; a point's time is the end of its minute. */
  minutePoints(samples) {
    const points = [];
    for (const s of samples) {
      const t = seconds(s.time);
      const end = Math.floor(t / MINUTE) * MINUTE + MINUTE;
      const last = points[points.length - 1];
      if (last && last.t === end) last.v.completed += s.tasks_completed;
      else points.push({ t: end, dur: MINUTE, v: { completed: s.tasks_completed } });
    }
    return points;
  }

  drawAll() {
    const end = this.end;
    const start = end - this.windowSec;
    const shown = this.samples.filter((s) => seconds(s.time) > start);
    this.workersChart.setPoints(
      shown.map((s) => this.workerPoint(s)),
      end,
      this.windowSec,
    );
    this.completedChart.setPoints(this.minutePoints(shown), end, this.windowSec);
    this.queueChart.setPoints(
      shown.map((s) => this.queuePoint(s)),
      end,
      this.windowSec,
    );
    this.showNumbers();
    this.markReady();
  }

  /** One new sample from the event stream: appended to every chart. */
  live(sample) {
    if (!this.loaded) {
      this.buffered.push(sample);
      return;
    }
    const t = seconds(sample.time);
    if (this.samples.length && t <= seconds(this.samples[this.samples.length - 1].time)) return;
    this.samples.push(sample);
    const start = t - Math.max(this.span, this.windowSec);
    let old = 0;
    while (old < this.samples.length && seconds(this.samples[old].time) < start) old++;
    if (old) this.samples.splice(0, old);

    this.workersChart.push(this.workerPoint(sample), t);
    this.queueChart.push(this.queuePoint(sample), t);
    const minuteEnd = Math.floor(t / MINUTE) * MINUTE + MINUTE;
    const lastMinute = this.completedChart.points[this.completedChart.points.length - 1];
    if (lastMinute && lastMinute.t === minuteEnd) {
      const point = { t: minuteEnd, dur: MINUTE, v: { completed: lastMinute.v.completed + sample.tasks_completed } };
      this.completedChart.push(point, t, true);
    } else {
      this.completedChart.push({ t: minuteEnd, dur: MINUTE, v: { completed: sample.tasks_completed } }, t);
    }
    this.showNumbers();
    if (this.ready) {
      this.updates += 1;
      this.element.dataset.updates = String(this.updates);
    }
  }

  /** The big numbers, the legends' values and the collecting note, from the newest sample. */
  showNumbers() {
    const s = this.samples[this.samples.length - 1];
    const collecting = this.samples.length < MIN_SAMPLES;
    this.element.dataset.state = collecting ? "collecting" : "charts";
    this.element.dataset.samples = String(this.samples.length);
    this.collecting.hidden = !collecting;
    const minutes = Math.round(this.windowSec / 60);
    const every = `a sample every ${this.interval} s`;
    this.subtitle.textContent = `Last ${minutes} minutes, ${every} · ${this.samples.length} samples`;
    if (!s) return;
    const w = s.workers;
    const awake = w.awake || 0;
    const set = (key, value, note = "") => {
      const tile = this.tiles.get(key);
      tile.value.textContent = String(value);
      tile.note.textContent = note;
    };
    set("working", s.workers_working);
    set("idle", Math.max(0, awake - s.workers_working));
    set("asleep", w.asleep || 0);
    set("offline", w.offline || 0, w.error ? `${w.error} in error` : "");
    set("queued", s.tasks_queued);
    set("jobs", s.jobs_active, s.jobs_queued ? `${s.jobs_queued} queued` : "");
    for (const status of WORKER_STATUSES) this.legend("workers", status, w[status] || 0);
    const minute = this.completedChart.points[this.completedChart.points.length - 1];
    this.legend("completed", "completed", minute ? minute.v.completed : 0);
    this.legend("queue", "queued", s.tasks_queued);
    this.legend("queue", "active", s.tasks_active);
  }

  legend(chart, key, value) {
    const el = this.legends.get(`${chart}:${key}`);
    if (el) el.textContent = String(value);
  }

  /** data-ready once every chart has been drawn from the fetched history at its laid-out size. */
  markReady() {
    if (this.ready || !this.loaded || !this.charts.every((c) => c.drawable())) return;
    this.ready = true;
    this.element.dataset.ready = "1";
  }
}
