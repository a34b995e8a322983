// Hand-drawn SVG time charts for the farm overview: time along x (local HH:MM), counts up y.
// A chart is drawn whole once (and again when its size or its y scale changes); after that a new point is
// appended to each layer's path and the plot is shifted left, so a live update rewrites a few attributes
// and never reads the layout.

const SVG = "http://www.w3.org/2000/svg";
// Room for the axis labels around the plot, in pixels.
const PAD = { left: 44, right: 12, top: 12, bottom: 24 };
// Horizontal grid lines with a label each.
const Y_TICKS = 4;
// The x axis gets at most this many time labels; steps are whole wall-clock intervals.
const MAX_X_TICKS = 7;
const TIME_STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600];
// Columns narrower than this (in pixels) are drawn without a gap between them.
const GAP_FROM = 4;

export const hhmm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
export const hhmmss = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  return el;
}

/** The y axis' top: a multiple of a 1-2-5 step, at or above `n`, with Y_TICKS steps. */
export function niceMax(n) {
  if (n <= Y_TICKS) return Y_TICKS;
  const raw = n / Y_TICKS;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return step * Y_TICKS;
}

const round = (v) => Math.round(v * 10) / 10;
let clipCount = 0;

/**
 * One chart. `layers`: [{key, cls, label}] drawn as "columns" (stacked, one column per point, spanning
 * [t - dur, t]), as an "area" (the first layer, filled) with "line"s on top, per `kind`.
 * Points: {t (seconds), dur (seconds), v: {key: number}}, oldest first; the chart keeps its own list.
 */
export class TimeChart {
  constructor({ kind, layers, label, describe }) {
    this.kind = kind;
    this.layers = layers;
    this.describe = describe;
    this.points = [];
    this.windowSec = 3600;
    this.end = Date.now() / 1000;
    this.width = 0;
    this.height = 0;
    this.yMax = Y_TICKS;
    this.origin = 0;
    this.k = 1;
    this.inspected = -1;
    const clipId = `ov-clip-${++clipCount}`;
    this.clipRect = svg("rect", { x: 0, y: 0, width: 0, height: 0 });
    this.grid = svg("g", { class: "ov-grid" });
    this.xAxis = svg("g", { class: "ov-xaxis" });
    this.shift = svg("g", { class: "ov-shift" });
    this.paths = layers.map((layer) => {
      const shape = kind === "columns" ? "col" : layer.kind || kind;
      const path = svg("path", { class: `ov-layer ov-${shape} ${layer.cls}` });
      this.shift.append(path);
      return path;
    });
    this.plot = svg("g", { class: "ov-plot", "clip-path": `url(#${clipId})` });
    this.plot.append(this.shift);
    this.cursor = svg("line", { class: "ov-cursor", visibility: "hidden" });
    const defs = svg("defs");
    const clip = svg("clipPath", { id: clipId });
    clip.append(this.clipRect);
    defs.append(clip);
    this.svg = svg("svg", { class: "ov-svg", role: "img", "aria-label": label });
    this.svg.append(defs, this.grid, this.xAxis, this.plot, this.cursor);
    this.tip = document.createElement("div");
    this.tip.className = "ov-tip";
    this.tip.hidden = true;
    this.element = document.createElement("div");
    this.element.className = "ov-plotbox";
    this.element.append(this.svg, this.tip);
    this.svg.addEventListener("pointermove", (e) => this.inspectAt(e.offsetX));
    this.svg.addEventListener("pointerleave", () => this.inspect(-1));
  }

  get plotW() {
    return Math.max(0, this.width - PAD.left - PAD.right);
  }

  get plotH() {
    return Math.max(0, this.height - PAD.top - PAD.bottom);
  }

  get start() {
    return this.end - this.windowSec;
  }

  /** The box was laid out at a new size (from a ResizeObserver: no layout read here). */
  resize(width, height) {
    if (width === this.width && height === this.height) return;
    this.width = width;
    this.height = height;
    this.draw();
  }

  /** Replace every point and draw the chart whole. */
  setPoints(points, end, windowSec) {
    this.points = points.slice();
    this.end = end;
    this.windowSec = windowSec;
    this.draw();
  }

  /** A newer point (or, with `replaceLast`, a new value of the newest one); the window ends at `end`. */
  push(point, end, replaceLast = false) {
    if (replaceLast && this.points.length) this.points[this.points.length - 1] = point;
    else this.points.push(point);
    this.end = end;
    let dropped = 0;
    while (dropped < this.points.length && this.points[dropped].t <= this.start) dropped++;
    if (dropped) this.points.splice(0, dropped);
    if (!this.drawable()) return;
    if (niceMax(this.maxValue()) !== this.yMax) {
      this.draw(); // the scale changed: every point moves
      return;
    }
    for (let i = 0; i < dropped; i++) this.segments.forEach((segs) => segs.shift());
    const segs = this.segmentsOf(point);
    this.segments.forEach((layerSegs, l) => {
      if (replaceLast && layerSegs.length) layerSegs[layerSegs.length - 1] = segs[l];
      else layerSegs.push(segs[l]);
    });
    this.render();
    if (this.inspected >= 0) this.inspect(Math.min(this.inspected, this.points.length - 1));
  }

  drawable() {
    return this.plotW > 0 && this.plotH > 0;
  }

  maxValue() {
    let max = 0;
    for (const p of this.points) {
      let value = 0;
      for (const layer of this.layers) {
        const v = p.v[layer.key] || 0;
        value = this.kind === "columns" ? value + v : Math.max(value, v);
      }
      if (value > max) max = value;
    }
    return max;
  }

  y(value) {
    return round(PAD.top + this.plotH - (value / this.yMax) * this.plotH);
  }

  x(t) {
    return round((t - this.origin) * this.k);
  }

  /** The path pieces of one point, one per layer, in the shifted group's coordinates. */
  segmentsOf(p) {
    if (this.kind === "columns") {
      const x0 = this.x(p.t - p.dur);
      const full = p.dur * this.k;
      const w = round(full >= GAP_FROM ? full - 1 : full);
      let below = 0;
      return this.layers.map((layer) => {
        const v = p.v[layer.key] || 0;
        if (!v) return "";
        const seg = `M${x0},${this.y(below + v)}h${w}V${this.y(below)}h${-w}Z`;
        below += v;
        return seg;
      });
    }
    const x = this.x(p.t);
    return this.layers.map((layer) => `${x},${this.y(p.v[layer.key] || 0)}`);
  }

  /** Everything from the points: axes, grid and every layer. */
  draw() {
    if (!this.drawable()) return;
    this.svg.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.k = this.plotW / this.windowSec;
    this.origin = this.start;
    this.yMax = niceMax(this.maxValue());
    this.clipRect.setAttribute("x", PAD.left);
    this.clipRect.setAttribute("y", 0);
    this.clipRect.setAttribute("width", this.plotW);
    this.clipRect.setAttribute("height", this.height);
    this.drawGrid();
    this.segments = this.layers.map(() => []);
    for (const p of this.points) {
      this.segmentsOf(p).forEach((seg, l) => this.segments[l].push(seg));
    }
    this.render();
  }

  drawGrid() {
    const parts = [];
    for (let i = 0; i <= Y_TICKS; i++) {
      const value = (this.yMax / Y_TICKS) * i;
      const y = this.y(value);
      parts.push(
        svg("line", { x1: PAD.left, x2: PAD.left + this.plotW, y1: y, y2: y, class: i ? "" : "ov-base" }),
        Object.assign(svg("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }), {
          textContent: String(value),
        }),
      );
    }
    this.grid.replaceChildren(...parts);
  }

  /** The paths from the segments, the shift of the plot and the time labels of the current window. */
  render() {
    const baseY = this.y(0);
    this.segments.forEach((segs, l) => {
      const layer = this.layers[l];
      let d = "";
      if (this.kind === "columns") d = segs.join("");
      else if (segs.length && (layer.kind || this.kind) === "area") {
        const first = segs[0].split(",")[0];
        const last = segs[segs.length - 1].split(",")[0];
        d = `M${first},${baseY}L${segs.join("L")}L${last},${baseY}Z`;
      } else if (segs.length) d = `M${segs.join("L")}`;
      this.paths[l].setAttribute("d", d);
    });
    const dx = round(PAD.left - (this.start - this.origin) * this.k);
    this.shift.setAttribute("transform", `translate(${dx},0)`);
    this.drawTimeAxis();
  }

  drawTimeAxis() {
    const step = TIME_STEPS.find((s) => this.windowSec / s <= MAX_X_TICKS) || TIME_STEPS[TIME_STEPS.length - 1];
    // Wall-clock steps in local time: an offset of +5:45 still puts labels on whole local minutes.
    const offset = new Date(this.end * 1000).getTimezoneOffset() * 60;
    const first = Math.ceil((this.start - offset) / step) * step + offset;
    const parts = [];
    const y = PAD.top + this.plotH;
    for (let t = first; t <= this.end; t += step) {
      const x = round(PAD.left + (t - this.start) * this.k);
      parts.push(
        svg("line", { x1: x, x2: x, y1: y, y2: y + 4 }),
        Object.assign(svg("text", { x, y: y + 16, "text-anchor": "middle" }), {
          textContent: hhmm.format(new Date(t * 1000)),
        }),
      );
    }
    this.xAxis.replaceChildren(...parts);
  }

  // Inspecting one point: a cursor line and a tooltip with its values (pointer or arrow keys).

  inspectAt(offsetX) {
    if (!this.points.length || !this.drawable()) return;
    const t = this.start + (offsetX - PAD.left) / this.k;
    let lo = 0;
    let hi = this.points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.points[mid].t < t) lo = mid + 1;
      else hi = mid;
    }
    const next = this.points[lo];
    const before = this.points[lo - 1];
    const columns = this.kind === "columns";
    const pick = !before || columns || Math.abs(next.t - t) < Math.abs(t - before.t) ? lo : lo - 1;
    this.inspect(columns && next.t - next.dur > t ? -1 : pick);
  }

  /** Show point `index` (-1: none); keys move it with `step`. */
  inspect(index) {
    this.inspected = index;
    const p = this.points[index];
    if (!p) {
      this.inspected = -1;
      this.cursor.setAttribute("visibility", "hidden");
      this.tip.hidden = true;
      return;
    }
    const t = this.kind === "columns" ? p.t - p.dur / 2 : p.t;
    const x = round(PAD.left + (t - this.start) * this.k);
    for (const [name, value] of [
      ["x1", x],
      ["x2", x],
      ["y1", PAD.top],
      ["y2", PAD.top + this.plotH],
    ])
      this.cursor.setAttribute(name, value);
    this.cursor.setAttribute("visibility", "visible");
    this.tip.replaceChildren(...this.describe(p));
    this.tip.hidden = false;
    const right = x > this.width / 2;
    this.tip.style.left = right ? "" : `${x + 10}px`;
    this.tip.style.right = right ? `${this.width - x + 10}px` : "";
  }

  step(delta) {
    if (!this.points.length) return;
    const from = this.inspected < 0 ? (delta < 0 ? this.points.length : -1) : this.inspected;
    this.inspect(Math.max(0, Math.min(this.points.length - 1, from + delta)));
  }
}
