// Small DOM helpers: element building and time formatting.

/** Build an element: h("td", {class: "x", onclick: fn}, child, "text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of an element. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Replace the children, keeping keyboard focus (and a typed value) on the control with the same id. */
export function refill(el, ...children) {
  const active = document.activeElement;
  const focusedId = active && active.id && el.contains(active) ? active.id : null;
  const typed = focusedId && active.tagName === "INPUT" && active.type !== "checkbox" ? active.value : null;
  fill(el, ...children);
  if (!focusedId) return el;
  const again = document.getElementById(focusedId);
  if (again && el.contains(again)) {
    if (typed !== null) again.value = typed;
    again.focus({ preventScroll: true });
  }
  return el;
}

const UNITS = [
  [60, "s", 1],
  [3600, "min", 60],
  [86400, "h", 3600],
  [Infinity, "d", 86400],
];

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago"; "" for no time. */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 5) return "just now";
  for (const [limit, unit, size] of UNITS) {
    if (seconds < limit) return `${Math.floor(seconds / size)} ${unit} ago`;
  }
  return "";
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const SHORT_TIME = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const SHORT_DATE = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});

/** Absolute local time for tooltips and detail fields. */
export function absoluteTime(iso) {
  return iso ? DATE_TIME.format(new Date(iso)) : "";
}

/** Compact time for table cells: the time of day today, else the date. */
export function compactTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? SHORT_TIME.format(date) : SHORT_DATE.format(date);
}

/** A <time> element whose text is kept relative by refreshRelativeTimes(). */
export function relativeTimeElement(iso) {
  const el = h("time", { class: "rel-time", datetime: iso || "", title: absoluteTime(iso) });
  el.textContent = iso ? relativeTime(iso) : "never";
  return el;
}

/** Update every relative time on the page; cheap enough to run each second. */
export function refreshRelativeTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time.rel-time")) {
    const iso = el.getAttribute("datetime");
    const text = iso ? relativeTime(iso, now) : "never";
    if (el.textContent !== text) el.textContent = text;
  }
}

/** Call fn at most once per animation frame, with every argument collected since the last call. */
export function perFrame(fn) {
  let pending = null;
  return (item) => {
    if (pending === null) {
      pending = [];
      requestAnimationFrame(() => {
        const batch = pending;
        pending = null;
        fn(batch);
      });
    }
    pending.push(item);
  };
}
