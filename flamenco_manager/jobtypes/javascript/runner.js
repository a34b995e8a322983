// The job-script engine: one long-lived Node process driven by the Manager over stdin/stdout.
//
// Protocol (one JSON object per line):
//   first line in:  {"prelude": "<prelude.js source>", "platform": "linux"}
//   first line out: {"ready": true, "version": "v20.1.0", "inspector": true}
//   then in:  {"id": 1, "op": "describe"|"compile", "filename": "x.js", "source": "...",
//              "job": "<job JSON>"|null, "timeLimit": 5, "memoryMib": 256}
//   then out: {"id": 1, "payload": <JSON made inside the sandbox>, "location": {...}|null}
//          or {"id": 1, "problem": {"message": "...", "line": 3, "column": 7}}
//
// Rules this file keeps:
// - Requests run one at a time, each in a NEW worker thread (with V8 heap limits) that creates a
//   NEW vm context. The context gets source text and primitives only; results leave it only as a
//   string made by the prelude's JSON.stringify, checked with typeof here.
// - This main thread owns the limits: it terminates the worker when the time is up or when the
//   process's resident memory grows past the memory limit (ArrayBuffers live outside the V8 heap).
// - One spare worker is started ahead of time so a request does not wait for a thread to boot.
"use strict";

const readline = require("node:readline");
const { Worker } = require("node:worker_threads");

// How often the main thread samples resident memory while a script runs: often enough that a
// script filling memory at several GB/s overshoots the limit by tens of MiB at most.
const MEMORY_SAMPLE_MS = 5;
// A result larger than this is refused (a job of 100,000 tasks stays well below it).
const MAX_PAYLOAD_CHARS = 64 * 1024 * 1024;
// print()/alert() output kept per run; past either figure one "output truncated" line ends it.
const MAX_OUTPUT_LINES = 200;
const MAX_OUTPUT_BYTES = 64 * 1024;
// The main thread's own stop comes this much after the time limit: vm's timeout stops synchronous
// code at the limit first (the path every time-limit test then takes), and terminating the worker
// is the backstop for whatever vm's timeout cannot interrupt.
const TERMINATE_AFTER_LIMIT_MS = 250;
// Young-generation size of a worker's heap: V8's default for a 64-bit process.
const YOUNG_GENERATION_MIB = 16;
// A worker's V8 heap may grow to this many times the memory limit: the resident-memory watchdog
// stops a growing script first, with a clear message, and V8's own limit is only the backstop
// (running out of heap can abort the whole process rather than just the worker).
const HEAP_LIMIT_FACTOR = 2;
// "use strict"; is put before each script on its first line: Flamenco compiles scripts in strict mode.
const STRICT_PREFIX = '"use strict";';

// ---------------------------------------------------------------------------------------------
// The worker thread. This function is turned into source text; it shares nothing with this file.
function workerMain() {
  "use strict";
  const { parentPort, workerData } = require("node:worker_threads");
  const vm = require("node:vm");
  const crypto = require("node:crypto");
  const STRICT_PREFIX = workerData.strictPrefix;
  // A script that threw something other than an Error runs once more with the debugger on, to find
  // where; only when this much time is left before the deadline, and ending this much before it.
  const RERUN_MIN_MS = 50;
  const RERUN_MARGIN_MS = 100;
  // The re-run may take twice the first run plus this long: pausing on exceptions is slow, and a
  // failing script should not always use up its whole time limit just to be located.
  const RERUN_EXTRA_MS = 1000;

  // Errors made by this thread's own code are of this thread's realm; a script holding one could
  // reach this realm's Function constructor. The process runs with code generation from strings
  // disallowed outside the sandbox and with frozen built-ins (so this realm's stack formatter
  // cannot be installed either); without the frozen built-ins, the formatter is locked here.
  if (!Object.isFrozen(Error)) {
    Object.defineProperty(Error, "prepareStackTrace", { value: undefined, writable: false, configurable: false });
  }

  // The debugger (where the permission model allows it): pausing on every exception is slow, so it
  // is only switched on for the re-run that locates a thrown string.
  let debuggerSession = null;
  let currentFile = null;
  let lastThrow = null; // where the last exception in the script was thrown
  if (workerData.inspector) {
    try {
      const inspector = require("node:inspector");
      const session = new inspector.Session();
      session.connect();
      const urls = new Map();
      session.on("Debugger.scriptParsed", (m) => urls.set(m.params.scriptId, m.params.url));
      session.on("Debugger.paused", (m) => {
        const p = m.params;
        if (p.reason === "exception" || p.reason === "promiseRejection") {
          for (const frame of p.callFrames) {
            if (urls.get(frame.location.scriptId) === currentFile) {
              lastThrow = { line: frame.location.lineNumber + 1, column: frame.location.columnNumber + 1 };
              break;
            }
          }
        }
        session.post("Debugger.resume");
      });
      debuggerSession = session;
    } catch {
      debuggerSession = null;
    }
  }

  // A new context with Flamenco's globals. A null-prototype sandbox object: no object of this
  // realm stands behind the context's global. eval and new Function are allowed, as goja allows
  // them: they compile in the sandbox's realm. WebAssembly is not (goja has none; its memory
  // would live outside the V8 heap).
  function makeSandbox() {
    const context = vm.createContext(Object.create(null), {
      name: "job script",
      codeGeneration: { strings: true, wasm: false },
      microtaskMode: "afterEvaluate",
    });
    let hostRequest = null;
    // import() is refused with an error made inside the sandbox (Node's own would be of this realm).
    const refuseImport = () => {
      throw hostRequest("importError");
    };
    const compile = (source, filename) => new vm.Script(source, { filename, importModuleDynamically: refuseImport });
    const install = compile(workerData.prelude, "flamenco:prelude.js").runInContext(context);
    hostRequest = install(
      JSON.stringify({
        uuidBase: crypto.randomUUID().replace(/-/g, ""),
        platform: workerData.platform,
        maxOutputLines: workerData.maxOutputLines,
        maxOutputBytes: workerData.maxOutputBytes,
        memoryMib: workerData.memoryMib,
        maxBufferBytes: workerData.memoryMib * 1024 * 1024,
      }),
    );
    return { context, compile, hostRequest };
  }
  const sandbox = makeSandbox(); // made while this worker waits as the spare

  const fixColumn = (line, column) => (line === 1 && column != null ? Math.max(1, column - STRICT_PREFIX.length) : column);
  // vm's timeout error is made in the context that was running: the sandbox's realm, so not an
  // instance of this realm's Error. Its `code` is read as an own data property (no script getter runs).
  const isTimeout = (e) => {
    if (e === null || (typeof e !== "object" && typeof e !== "function")) return false;
    try {
      const code = Reflect.getOwnPropertyDescriptor(e, "code");
      return code !== undefined && "value" in code && code.value === "ERR_SCRIPT_EXECUTION_TIMEOUT";
    } catch {
      return false;
    }
  };
  const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // Without a debugger, a thrown string is located when exactly one `throw` in the source throws a
  // literal that gives it: a quoted string, or a template whose ${...} parts may stand for anything.
  function findLiteralThrow(source, message) {
    const found = [];
    for (const q of ['"', "'"]) {
      const re = new RegExp("\\bthrow\\s*" + q + escapeRegExp(message) + q, "g");
      for (const m of source.matchAll(re)) found.push(m.index);
    }
    for (const m of source.matchAll(/\bthrow\s*`/g)) {
      const pattern = templatePattern(source, m.index + m[0].length);
      if (pattern !== null && pattern.test(message)) found.push(m.index);
    }
    if (found.length !== 1) return null;
    const before = source.slice(0, found[0]);
    const line = before.split("\n").length;
    return { line, column: found[0] - before.lastIndexOf("\n") };
  }

  const TEMPLATE_ESCAPES = { n: "\n", t: "\t", r: "\r" };
  // A regular expression for the strings a template literal (starting at `i`, after its backtick)
  // can produce; null when the template does not end.
  function templatePattern(source, i) {
    let pattern = "";
    let literal = "";
    while (i < source.length) {
      const c = source[i];
      if (c === "`") return new RegExp("^" + pattern + escapeRegExp(literal) + "$");
      if (c === "\\") {
        const next = source[i + 1] || "";
        literal += TEMPLATE_ESCAPES[next] || next;
        i += 2;
      } else if (c === "$" && source[i + 1] === "{") {
        pattern += escapeRegExp(literal) + "[\\s\\S]*?";
        literal = "";
        let depth = 1;
        i += 2;
        while (i < source.length && depth > 0) {
          if (source[i] === "{") depth++;
          else if (source[i] === "}") depth--;
          i++;
        }
      } else {
        literal += c;
        i++;
      }
    }
    return null;
  }

  function syntaxProblem(e) {
    // Node puts "file:line", the source line and a caret line before the message.
    const lines = String(e && e.stack).split("\n");
    const where = /:(\d+)$/.exec(lines[0]);
    const line = where ? Number(where[1]) : null;
    const caret = line !== null && lines[2] !== undefined ? lines[2].indexOf("^") : -1;
    return { message: `${e.name}: ${e.message}`, line, column: caret >= 0 ? fixColumn(line, caret + 1) : null };
  }

  // Runs the script, then the call, in `box` until `deadline` (ms since the epoch):
  // {payload} (the prelude's JSON text), {timeout: true} or {problem}.
  function runIn(box, req, deadline) {
    const remainingMs = () => Math.max(1, Math.ceil(deadline - Date.now()));
    let script;
    try {
      script = box.compile(STRICT_PREFIX + req.source, req.filename);
    } catch (e) {
      return { problem: syntaxProblem(e) };
    }
    let payload;
    try {
      script.runInContext(box.context, { timeout: remainingMs(), displayErrors: false });
    } catch (thrown) {
      if (isTimeout(thrown)) return { timeout: true };
      payload = box.hostRequest("thrown", thrown, req.filename);
    }
    if (payload === undefined) {
      const call = `__flamencoRun(${JSON.stringify(req.op)}, ${JSON.stringify(req.filename)}, ${JSON.stringify(req.job || "")})`;
      try {
        payload = box.compile(call, "flamenco:run.js").runInContext(box.context, {
          timeout: remainingMs(),
          displayErrors: false,
        });
      } catch (thrown) {
        if (isTimeout(thrown)) return { timeout: true };
        return { problem: { message: "the sandbox failed to run the script", line: null, column: null } };
      }
    }
    if (typeof payload !== "string") {
      return { problem: { message: "the sandbox returned no result", line: null, column: null } };
    }
    return { payload };
  }

  const thrownOf = (payload) => {
    if (!payload.startsWith('{"thrown":')) return null;
    try {
      return JSON.parse(payload).thrown;
    } catch {
      return null;
    }
  };

  // Where a thrown non-Error came from: the script runs once more in a new context, with the
  // debugger pausing on every exception; its location counts if it throws the same text again.
  function debugRerun(req, deadline, message, firstRunMs) {
    deadline = Math.min(deadline - RERUN_MARGIN_MS, Date.now() + 2 * firstRunMs + RERUN_EXTRA_MS);
    if (debuggerSession === null || deadline - Date.now() < RERUN_MIN_MS) return null;
    lastThrow = null;
    currentFile = req.filename;
    try {
      debuggerSession.post("Debugger.enable");
      debuggerSession.post("Debugger.setPauseOnExceptions", { state: "all" });
      const again = runIn(makeSandbox(), req, deadline);
      const thrown = again.payload === undefined ? null : thrownOf(again.payload);
      return thrown && !thrown.located && thrown.message === message ? lastThrow : null;
    } catch {
      return null;
    } finally {
      try {
        debuggerSession.post("Debugger.disable");
      } catch {
        // the reply goes out without a location
      }
    }
  }

  function handle(req) {
    const started = Date.now();
    const first = runIn(sandbox, req, req.deadline);
    if (first.payload === undefined) return first;
    const thrown = thrownOf(first.payload);
    let location = null;
    if (thrown) {
      // The prelude located Error objects itself; anything else needs the debugger or the source.
      const where = thrown.located
        ? thrown
        : debugRerun(req, req.deadline, thrown.message, Date.now() - started) ||
          findLiteralThrow(req.source, thrown.message);
      if (where) location = { line: where.line, column: fixColumn(where.line, where.column) };
    }
    return { payload: first.payload, location };
  }

  parentPort.once("message", (req) => {
    let reply;
    try {
      reply = handle(req);
    } catch (e) {
      reply = { problem: { message: `the sandbox failed: ${e && e.message}`, line: null, column: null } };
    }
    parentPort.postMessage(reply);
  });
  parentPort.postMessage({ ready: true });
}

// ---------------------------------------------------------------------------------------------
// The main thread.
const WORKER_SOURCE = `"use strict";(${workerMain.toString()})();`;
let prelude = null;
let platform = "linux";
let inspectorAvailable = false;

function inspectorWorks() {
  // Checked once: the permission model (when on) refuses the inspector.
  try {
    const inspector = require("node:inspector");
    const session = new inspector.Session();
    session.connect();
    session.disconnect();
    return true;
  } catch {
    return false;
  }
}

class Sandbox {
  constructor(memoryMib) {
    this.memoryMib = memoryMib;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      stdout: false,
      stderr: false,
      workerData: {
        prelude,
        platform,
        inspector: inspectorAvailable,
        strictPrefix: STRICT_PREFIX,
        maxOutputLines: MAX_OUTPUT_LINES,
        maxOutputBytes: MAX_OUTPUT_BYTES,
        memoryMib,
      },
      resourceLimits: {
        maxOldGenerationSizeMb: memoryMib * HEAP_LIMIT_FACTOR,
        maxYoungGenerationSizeMb: YOUNG_GENERATION_MIB,
      },
    });
    this.events = [];
    this.listener = null;
    const push = (event) => (this.listener ? this.listener(event) : this.events.push(event));
    this.worker.on("message", (m) => push({ kind: "message", m }));
    this.worker.on("error", (e) => push({ kind: "error", e }));
    this.worker.on("exit", (code) => push({ kind: "exit", code }));
  }

  listen(fn) {
    this.listener = fn;
    for (const event of this.events.splice(0)) fn(event);
  }

  discard() {
    this.worker.terminate().catch(() => {});
  }
}

let spare = null;

function takeSandbox(memoryMib) {
  let sandbox = spare;
  spare = null;
  if (!sandbox || sandbox.memoryMib !== memoryMib) {
    if (sandbox) sandbox.discard();
    sandbox = new Sandbox(memoryMib);
  }
  return sandbox;
}

function formatSeconds(s) {
  return String(Number(s));
}

function run(req) {
  return new Promise((resolve) => {
    const sandbox = takeSandbox(req.memoryMib);
    const limitBytes = req.memoryMib * 1024 * 1024;
    const baseRss = process.memoryUsage.rss();
    let done = false;
    const finish = (reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(watch);
      sandbox.discard();
      resolve(reply);
    };
    const problem = (message) => finish({ problem: { message, line: null, column: null } });
    const timeProblem = () => problem(`stopped after ${formatSeconds(req.timeLimit)} s (time limit)`);
    const memoryProblem = () => problem(`stopped: used more than ${req.memoryMib} MiB (memory limit)`);
    const deadline = Date.now() + req.timeLimit * 1000;
    const timer = setTimeout(timeProblem, req.timeLimit * 1000 + TERMINATE_AFTER_LIMIT_MS);
    const watch = setInterval(() => {
      if (process.memoryUsage.rss() - baseRss > limitBytes) memoryProblem();
    }, MEMORY_SAMPLE_MS);
    sandbox.listen((event) => {
      if (event.kind === "message") {
        const m = event.m;
        if (m && m.ready === true) {
          sandbox.worker.postMessage({
            op: req.op,
            filename: req.filename,
            source: req.source,
            job: req.job,
            deadline,
          });
        } else if (m && m.timeout) {
          timeProblem();
        } else if (m && m.problem) {
          finish({ problem: m.problem });
        } else if (m && typeof m.payload === "string") {
          if (m.payload.includes("\n")) {
            // JSON.stringify never writes a raw newline: this payload did not come from the prelude.
            problem("the sandbox returned a malformed result");
          } else if (m.payload.length > MAX_PAYLOAD_CHARS) {
            problem(`the script's result is too large (${m.payload.length} characters)`);
          } else {
            finish({ payload: m.payload, location: m.location || null });
          }
        } else {
          problem("the sandbox sent an unexpected message");
        }
      } else if (event.kind === "error") {
        const e = event.e;
        if (e && e.code === "ERR_WORKER_OUT_OF_MEMORY") memoryProblem();
        else problem(`the script engine failed: ${e && e.message}`);
      } else {
        problem(`the sandbox stopped unexpectedly (exit code ${event.code})`);
      }
    });
  });
}

function write(obj, rawPayload) {
  // The payload is JSON text made by the sandbox's own JSON.stringify: it is spliced in as is.
  let line = JSON.stringify(obj);
  if (rawPayload !== undefined) line = `${line.slice(0, -1)},"payload":${rawPayload}}`;
  process.stdout.write(`${line}\n`);
}

const queue = [];
let busy = false;

async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length > 0) {
    const req = queue.shift();
    let reply;
    try {
      reply = await run(req);
    } catch (e) {
      reply = { problem: { message: `the script engine failed: ${e && e.message}`, line: null, column: null } };
    }
    if (reply.payload !== undefined) {
      write({ id: req.id, location: reply.location }, reply.payload);
    } else {
      write({ id: req.id, problem: reply.problem });
    }
    // Warm the next sandbox while the Manager is busy with this answer.
    if (!spare) spare = new Sandbox(req.memoryMib);
  }
  busy = false;
}

function onLine(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    process.stderr.write("ignoring a request that is not JSON\n");
    return;
  }
  if (prelude === null) {
    prelude = String(msg.prelude);
    platform = String(msg.platform || "linux");
    inspectorAvailable = inspectorWorks();
    spare = new Sandbox(Number(msg.memoryMib) || 256);
    write({ ready: true, version: process.version, inspector: inspectorAvailable });
    return;
  }
  queue.push(msg);
  drain();
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", onLine);
rl.on("close", () => process.exit(0));
