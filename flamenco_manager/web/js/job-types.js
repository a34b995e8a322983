// The Manager's job types (labels and setting definitions), and how the job details show settings.
//
// Rules kept here:
// - The list is fetched with the farm, and fetched again when a job of a type not in it appears: the
//   Manager accepts jobs of known types only, so such a job means the list here is out of date (job-type
//   scripts were added or reloaded). Requests that come while a fetch is under way share one more fetch.
// - A type still missing after a fetch is not asked for again until the next fetch: old jobs of a removed
//   job type must not make every redraw ask the Manager.
// - Settings are shown as Flamenco's web app shows them: only those the job type defines whose `visible`
//   is absent, "visible" or "web" ("hidden" and "submission" ones are for the add-on), each labelled with
//   its `label` or a label made from its key, its `description` as the tooltip. "Show all" lists every
//   setting by key; a job whose type the Manager does not know shows every setting by key.

import { api } from "./api.js";
import { announce } from "./state.js";

let known = new Map();
let missing = new Set();
let inFlight = null;
let queued = null;

async function load() {
  const types = await api.jobTypes();
  known = new Map(types.map((t) => [t.name, t]));
  missing = new Set();
  announce("jobtypes");
}

export const jobTypes = {
  /** The job type as the Manager last described it, or null. */
  get(name) {
    return known.get(name) || null;
  },

  has(name) {
    return known.has(name);
  },

  /** The type's label, or its name when the Manager does not know it (yet). */
  label(name) {
    return known.get(name)?.label || name;
  },

  /** Fetch the list again; a call while a fetch is under way gets one fetch after it. */
  refresh() {
    if (!inFlight) {
      inFlight = load().finally(() => (inFlight = null));
      return inFlight;
    }
    if (!queued) {
      queued = inFlight
        .catch(() => {})
        .then(() => {
          queued = null;
          return jobTypes.refresh();
        });
    }
    return queued;
  },

  /** The job type, fetching the list once when the name is new; null when the Manager does not know it. */
  async ensure(name) {
    if (!known.has(name) && !missing.has(name)) {
      try {
        await jobTypes.refresh();
      } catch {
        // shown as unknown; the next new job or reconnect fetches again
      }
      if (!known.has(name)) missing.add(name);
    }
    return known.get(name) || null;
  },
};

/** A label from a setting key, as Flamenco makes one: each word capitalised, "_" as a space. */
export function labelFromKey(key) {
  return key
    .replace(/\p{L}+/gu, (word) => word.charAt(0).toUpperCase() + word.slice(1).toLowerCase())
    .replaceAll("_", " ");
}

// The `visible` values that put a setting in the web app's listing (absent counts as "visible").
const SHOWN_ON_THE_WEB = new Set([undefined, null, "visible", "web"]);

/**
 * The job's settings to list, sorted by key: {key, label, title, value}. `all` lists every setting,
 * `hidden` counts those the job type keeps out of the web app's listing.
 */
export function settingsToShow(jobType, settings, all) {
  const definitions = new Map((jobType?.settings || []).map((s) => [s.key, s]));
  const rows = [];
  let hidden = 0;
  for (const key of Object.keys(settings || {}).sort((a, b) => a.localeCompare(b))) {
    const definition = definitions.get(key);
    const shown = jobType && definition && SHOWN_ON_THE_WEB.has(definition.visible);
    if (!shown) hidden += 1;
    if (!shown && !(all || !jobType)) continue;
    rows.push({
      key,
      label: shown && !all ? definition.label || labelFromKey(key) : key,
      title: definition?.description || key,
      value: settings[key],
    });
  }
  return { rows, hidden: jobType ? hidden : 0 };
}
