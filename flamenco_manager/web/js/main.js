// Start-up: first fetch, the event stream, the router and the header.

import { installAbout } from "./about.js";
import { api, whenTokenNeeded } from "./api.js";
import { fill, refreshRelativeTimes } from "./dom.js";
import { EventStream } from "./events.js";
import { jobTypes } from "./job-types.js";
import { JobsView } from "./jobs-view.js";
import { LastRenderedView } from "./last-rendered.js";
import { installKeyboard } from "./keyboard.js";
import { notify } from "./notify.js";
import { OverviewView } from "./overview.js";
import { announce, jobFromEvent, state, workerFromEvent } from "./state.js";
import { TagsView } from "./tags-view.js";
import { WorkersView } from "./workers-view.js";

// How often relative times ("12 s ago") are rewritten.
const RELATIVE_TIME_TICK_MS = 1000;

const views = {
  jobs: new JobsView(),
  workers: new WorkersView(),
  tags: new TagsView(),
  "last-rendered": new LastRenderedView(),
  overview: new OverviewView(),
};
let current = null;

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const name = views[parts[0]] ? parts[0] : "jobs";
  return { name, params: parts.slice(1) };
}

function route() {
  const { name, params } = parseRoute();
  const view = views[name];
  if (current !== view) {
    if (current) current.hide();
    current = view;
    fill(document.getElementById("view"), view.element);
    for (const tab of document.querySelectorAll(".tabs a")) {
      tab.setAttribute("aria-current", tab.dataset.tab === name ? "page" : "false");
    }
    document.title = `${view.title || `${name[0].toUpperCase()}${name.slice(1)}`} · Flamenco Manager`;
  }
  view.show(params);
}

function showFarmStatus(status) {
  state.farmStatus = status;
  const el = document.getElementById("farm-status");
  el.dataset.status = status;
  el.querySelector(".value").textContent = status;
}

function showConnection(streamState) {
  const el = document.getElementById("connection");
  el.dataset.state = streamState;
  el.textContent = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…" }[streamState];
  el.title =
    streamState === "live"
      ? "Receiving live updates from the Manager"
      : "Waiting for the Manager; the page re-fetches everything once it is back";
}

async function fetchAll() {
  // Without the job types the jobs still show, under their type names.
  const types = jobTypes.refresh().catch(() => {});
  const [workers, jobs, tags, farm] = await Promise.all([api.workers(), api.jobs(), api.tags(), api.farmStatus()]);
  await types;
  state.workers = new Map(workers.map((w) => [w.id, w]));
  state.jobs = new Map(jobs.map((j) => [j.id, j]));
  state.tags = new Map(tags.map((t) => [t.id, t]));
  showFarmStatus(farm.status);
  announce("reset");
}

async function refetch() {
  try {
    await fetchAll();
  } catch (err) {
    notify(`Could not refresh: ${err.message}`, "error");
  }
}

function startStream() {
  return new EventStream(
    { topics: "workers,jobs,status,workertags,lifecycle" },
    {
      "/workers": (event) => {
        if (event.deleted_at) {
          state.workers.delete(event.id);
          announce("worker-removed", event.id);
        } else {
          const worker = workerFromEvent(event);
          state.workers.set(worker.id, worker);
          announce("worker", worker);
        }
      },
      "/jobs": (event) => {
        if (event.was_deleted) {
          state.jobs.delete(event.id);
          announce("job-removed", event.id);
        } else {
          const old = state.jobs.get(event.id);
          // A new job of a type not known here: the Manager has job types this page has not fetched.
          if (!old && !jobTypes.has(event.type)) jobTypes.refresh().catch(() => {});
          const job = jobFromEvent(event, old);
          state.jobs.set(job.id, job);
          announce("job", { job, refreshTasks: event.refresh_tasks });
        }
      },
      "/workertags": (event) => {
        if (event.was_deleted) state.tags.delete(event.tag.id);
        else state.tags.set(event.tag.id, event.tag);
        announce("tags");
      },
      "/status": (event) => showFarmStatus(event.status),
      "/lifecycle": (event) => {
        if (event.type === "manager-shutdown") notify("The Manager is shutting down.", "error");
      },
    },
    { onState: showConnection, onReconnect: refetch },
  );
}

function askForToken(message) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  // The first question needs no error line; a refused token does.
  document.getElementById("token-problem").textContent = /not valid/.test(message) ? message : "";
  input.value = "";
  dialog.returnValue = "";
  dialog.showModal();
  input.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? input.value.trim() : null), {
      once: true,
    });
  });
}

async function start() {
  whenTokenNeeded(askForToken);
  try {
    await api.farmStatus(); // asks for the access token first, when the Manager wants one
  } catch (err) {
    notify(`Could not reach the Manager: ${err.message}`, "error");
  }
  api.version().then(
    (v) => {
      // Flamenco's release (what the add-on checks) and this Manager's own version and build.
      document.getElementById("version").textContent = v.version;
      document.getElementById("version").title = `Flamenco ${v.shortversion} compatible; build ${v.git}`;
    },
    () => {},
  );
  window.addEventListener("hashchange", route);
  installKeyboard();
  installAbout();
  startStream();
  try {
    await fetchAll();
  } catch (err) {
    notify(`Could not load the farm: ${err.message}`, "error");
  }
  route();
  setInterval(() => refreshRelativeTimes(document.getElementById("view")), RELATIVE_TIME_TICK_MS);
}

start();
