// The Manager's public API (/api/v3); everything the page does goes through here.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The Manager may require an access token (its `api_token` setting); the page then asks for it once and
// keeps it for the browser session in a cookie, which the event stream and log links carry too.
const TOKEN_COOKIE = "flamenco_api_token";
// Attempts per call when the token is refused (a mistyped token gets asked for again).
const TOKEN_ATTEMPTS = 3;
let tokenPrompt = null;
let pendingToken = null;

export function whenTokenNeeded(prompt) {
  tokenPrompt = prompt;
}

function obtainToken(message) {
  // Many calls may be refused at once; they all wait for one answer.
  if (!pendingToken) pendingToken = tokenPrompt(message).finally(() => (pendingToken = null));
  return pendingToken;
}

export async function call(method, path, body, attempt = 1) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`/api/v3${path}`, init);
  } catch (err) {
    throw new ApiError(0, `the Manager could not be reached (${err.message})`);
  }
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  const raw = await resp.text();
  let data = raw;
  if (type.includes("json") && raw) {
    try {
      data = JSON.parse(raw);
    } catch {
      data = raw;
    }
  }
  if (!resp.ok) {
    const message = data && typeof data === "object" && data.message ? data.message : resp.statusText;
    if (resp.status === 401 && tokenPrompt && attempt <= TOKEN_ATTEMPTS) {
      const token = await obtainToken(message);
      if (token) {
        document.cookie = `${TOKEN_COOKIE}=${token}; path=/; SameSite=Strict`;
        return call(method, path, body, attempt + 1);
      }
    }
    throw new ApiError(resp.status, message);
  }
  return data;
}

const id = encodeURIComponent;

export const api = {
  version: () => call("GET", "/version"),
  farmStatus: () => call("GET", "/status"),

  workers: async () => (await call("GET", "/worker-mgt/workers")).workers,
  worker: (workerId) => call("GET", `/worker-mgt/workers/${id(workerId)}`),
  deleteWorker: (workerId) => call("DELETE", `/worker-mgt/workers/${id(workerId)}`),
  setWorkerStatus: (workerId, status, isLazy) =>
    call("POST", `/worker-mgt/workers/${id(workerId)}/setstatus`, { status, is_lazy: isLazy }),
  // Ours: one request for many workers, answered {applied: [id], refused: [{id, code, message}]}.
  setStatusOfWorkers: (workerIds, status, isLazy) =>
    call("POST", "/worker-mgt/workers/setstatus", { workers: workerIds, status, is_lazy: isLazy }),
  setWorkerTags: (workerId, tagIds) => call("POST", `/worker-mgt/workers/${id(workerId)}/settags`, { tag_ids: tagIds }),

  tags: async () => (await call("GET", "/worker-mgt/tags")).tags,
  createTag: (name, description) => call("POST", "/worker-mgt/tags", { name, description }),
  updateTag: (tagId, name, description) => call("PUT", `/worker-mgt/tag/${id(tagId)}`, { name, description }),
  deleteTag: (tagId) => call("DELETE", `/worker-mgt/tag/${id(tagId)}`),

  jobs: async () => (await call("GET", "/jobs")).jobs,
  jobTypes: async () => (await call("GET", "/jobs/types")).job_types,
  job: (jobId) => call("GET", `/jobs/${id(jobId)}`),
  jobTasks: async (jobId) => (await call("GET", `/jobs/${id(jobId)}/tasks`)).tasks,
  setJobStatus: (jobId, status, reason) => call("POST", `/jobs/${id(jobId)}/setstatus`, { status, reason }),
  setJobPriority: (jobId, priority) => call("POST", `/jobs/${id(jobId)}/setpriority`, { priority }),
  deleteJob: (jobId) => call("DELETE", `/jobs/${id(jobId)}`),
  massDeleteJobs: (lastUpdatedMax) => call("DELETE", "/jobs/mass-delete", { last_updated_max: lastUpdatedMax }),
  jobBlocklist: (jobId) => call("GET", `/jobs/${id(jobId)}/blocklist`),
  removeFromJobBlocklist: (jobId, entries) => call("DELETE", `/jobs/${id(jobId)}/blocklist`, entries),
  jobLastRendered: (jobId) => call("GET", `/jobs/${id(jobId)}/last-rendered`),
  globalLastRendered: () => call("GET", "/jobs/last-rendered"),

  task: (taskId) => call("GET", `/tasks/${id(taskId)}`),
  setTaskStatus: (taskId, status, reason) => call("POST", `/tasks/${id(taskId)}/setstatus`, { status, reason }),
  taskLogTail: async (taskId) => (await call("GET", `/tasks/${id(taskId)}/logtail`)) || "",
  // TaskLogInfo (where the whole log is, and its size), or null while the task has no log yet.
  taskLogInfo: (taskId) => call("GET", `/tasks/${id(taskId)}/log`),
};
