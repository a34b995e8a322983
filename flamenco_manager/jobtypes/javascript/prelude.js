// Flamenco's job-script globals, evaluated inside every fresh sandbox context.
//
// This file is a function expression: runner.js evaluates it in a new `vm` context and calls the
// result once with a JSON string (its settings). Everything a job script can touch is created here,
// inside the context, from this source text. The function installs the globals and one locked
// entry point, `__flamencoRun(op, filename, jobJSON)`, which returns a JSON string.
//
// The built-ins used after the job script has run are captured first, so a script that replaces
// `JSON.stringify` or `Array.prototype.push` only spoils its own result.
(function installFlamencoGlobals(settingsJSON) {
  "use strict";

  const G = globalThis;
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const ObjectCreate = Object.create;
  const ObjectKeys = Object.keys;
  const defineProperty = Object.defineProperty;
  const freeze = Object.freeze;
  const isArray = Array.isArray;
  const apply = Reflect.apply;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const DateCtor = Date;
  const MapCtor = Map;
  const WeakMapCtor = WeakMap;
  const StringCtor = String;
  const NumberCtor = Number;
  const BigIntCtor = BigInt;
  const mathTrunc = Math.trunc;
  const isFiniteNumber = Number.isFinite;
  const strTrim = String.prototype.trim;
  const strSlice = String.prototype.slice;
  const strSplit = String.prototype.split;
  const strReplaceAll = String.prototype.replaceAll;
  const strCharCodeAt = String.prototype.charCodeAt;
  const strPadStart = String.prototype.padStart;
  const strIndexOf = String.prototype.indexOf;
  const strLastIndexOf = String.prototype.lastIndexOf;
  const mapGet = Map.prototype.get;
  const mapSet = Map.prototype.set;
  const mapHas = Map.prototype.has;
  const weakGet = WeakMap.prototype.get;
  const weakSet = WeakMap.prototype.set;
  const dateGetTime = Date.prototype.getTime;
  const arrSort = Array.prototype.sort;
  const errorToString = Error.prototype.toString;

  const settings = JSONparse(settingsJSON);
  const MAX_OUTPUT_LINES = settings.maxOutputLines;
  const MAX_OUTPUT_BYTES = settings.maxOutputBytes;

  const call = (fn, self, ...args) => apply(fn, self, args);
  const arrPush = Array.prototype.push;
  const push = (arr, value) => {
    apply(arrPush, arr, [value]);
  };
  const lockGlobal = (name, value) => {
    defineProperty(G, name, { __proto__: null, value, writable: false, enumerable: false, configurable: false });
  };
  const setGlobal = (name, value) => {
    defineProperty(G, name, { __proto__: null, value, writable: true, enumerable: false, configurable: true });
  };
  const method = (obj, name, fn) => {
    defineProperty(obj, name, { __proto__: null, value: fn, writable: true, enumerable: false, configurable: true });
  };

  // ---- stack frames: recorded by our own prepareStackTrace, never handed to the script ----
  // Only primitives (file, line, column) are kept; CallSite objects stay inside this function.
  const framesOf = new WeakMapCtor();
  function prepareStackTrace(error, callSites) {
    const frames = [];
    let text = "";
    try {
      text = call(errorToString, error);
    } catch {
      text = "Error";
    }
    for (let i = 0; i < callSites.length; i++) {
      const site = callSites[i];
      const file = site.getFileName();
      const line = site.getLineNumber();
      const column = site.getColumnNumber();
      const fn = site.getFunctionName();
      push(frames, { file: file == null ? "" : StringCtor(file), line, column });
      text += "\n    at " + (fn ? fn + " (" : "") + (file == null ? "<anonymous>" : file) + ":" + line + ":" + column + (fn ? ")" : "");
    }
    if (error !== null && (typeof error === "object" || typeof error === "function")) {
      call(weakSet, framesOf, error, frames);
    }
    return text;
  }
  // A script may neither install its own prepareStackTrace (to reach CallSite objects) nor swap the
  // Error constructor that the stack formatter consults.
  defineProperty(ErrorCtor, "prepareStackTrace", {
    __proto__: null, value: prepareStackTrace, writable: false, enumerable: false, configurable: false,
  });
  lockGlobal("Error", ErrorCtor);

  // ---- memory: what lives outside the V8 heap ----
  // ArrayBuffers are allocated (and filled) in one native step, which neither V8's heap limit nor
  // the runner's watchdog can interrupt: a single buffer larger than the memory limit is refused.
  // Goja (Flamenco's engine) has no WebAssembly, SharedArrayBuffer or Atomics; neither do we.
  const maxBufferBytes = settings.maxBufferBytes;
  const RangeErrorCtor = RangeError;
  const ProxyCtor = Proxy;
  const construct = Reflect.construct;
  const tooBig = (bytes) => {
    if (bytes > maxBufferBytes) {
      throw new RangeErrorCtor(
        "Array buffer allocation of " + bytes + " bytes is over the memory limit (" + settings.memoryMib + " MiB)",
      );
    }
  };
  const bufferByteLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength").get;
  const isBuffer = (value) => {
    try {
      call(bufferByteLength, value);
      return true;
    } catch {
      return false;
    }
  };
  function guardConstructor(name, bytesOf) {
    const original = G[name];
    const guarded = new ProxyCtor(original, {
      __proto__: null,
      construct(target, args, newTarget) {
        tooBig(bytesOf(args, target));
        return construct(target, args, newTarget);
      },
    });
    defineProperty(original.prototype, "constructor", {
      __proto__: null, value: guarded, writable: true, enumerable: false, configurable: true,
    });
    setGlobal(name, guarded);
  }
  guardConstructor("ArrayBuffer", (args) => {
    const options = args[1];
    const max = options != null && typeof options === "object" ? NumberCtor(options.maxByteLength) || 0 : 0;
    const length = NumberCtor(args[0]) || 0;
    return length > max ? length : max;
  });
  const typedArrayNames = ObjectKeys(Object.getOwnPropertyDescriptors(G));
  for (let i = 0; i < typedArrayNames.length; i++) {
    const name = typedArrayNames[i];
    const ctor = G[name];
    if (name === "Array" || typeof ctor !== "function" || !("BYTES_PER_ELEMENT" in ctor)) continue;
    guardConstructor(name, (args, target) => {
      const first = args[0];
      if (first === null || (typeof first !== "object" && typeof first !== "function")) {
        return (NumberCtor(first) || 0) * target.BYTES_PER_ELEMENT;
      }
      if (isBuffer(first)) return 0; // a view on an existing buffer
      return (NumberCtor(first.length) || 0) * target.BYTES_PER_ELEMENT;
    });
  }
  delete G.WebAssembly;
  delete G.SharedArrayBuffer;
  delete G.Atomics;

  // ---- output: print() and alert() ----
  const output = [];
  let outputBytes = 0;
  let outputTruncated = false;
  function formatArg(value) {
    if (typeof value === "string") return value;
    if (value !== null && typeof value === "object") {
      try {
        const json = JSONstringify(value);
        if (typeof json === "string") return json;
      } catch {
        // fall through to String()
      }
    }
    try {
      return StringCtor(value);
    } catch {
      return "[unprintable]";
    }
  }
  function emit(level, args) {
    if (outputTruncated) return;
    let text = "";
    for (let i = 0; i < args.length; i++) {
      text += (i ? " " : "") + formatArg(args[i]);
    }
    if (output.length >= MAX_OUTPUT_LINES || outputBytes + text.length > MAX_OUTPUT_BYTES) {
      outputTruncated = true;
      push(output, { level: "warning", text: "output truncated" });
      return;
    }
    outputBytes += text.length;
    push(output, { level, text });
  }
  setGlobal("print", function print(...args) {
    emit("info", args);
  });
  setGlobal("alert", function alert(...args) {
    emit("warning", args);
  });

  // ---- frames: Flamenco's frameChunker / frameCount ----
  // Go's strconv.ParseInt(s, 10, 64) after trimming whitespace, with its error texts.
  const INT64_MAX = BigIntCtor("9223372036854775807");
  function parseFrame(raw) {
    const s = call(strTrim, raw);
    const quoted = JSONstringify(s);
    const syntax = () => ({ error: "strconv.ParseInt: parsing " + quoted + ": invalid syntax" });
    if (s.length === 0) return syntax();
    let i = 0;
    let negative = false;
    if (s[0] === "+" || s[0] === "-") {
      negative = s[0] === "-";
      i = 1;
    }
    if (i >= s.length) return syntax();
    let value = BigIntCtor(0);
    for (; i < s.length; i++) {
      const c = call(strCharCodeAt, s, i);
      if (c < 48 || c > 57) return syntax();
      value = value * BigIntCtor(10) + BigIntCtor(c - 48);
      if (value > INT64_MAX + BigIntCtor(1)) {
        return { error: "strconv.ParseInt: parsing " + quoted + ": value out of range" };
      }
    }
    if ((!negative && value > INT64_MAX) || (negative && value > INT64_MAX + BigIntCtor(1))) {
      return { error: "strconv.ParseInt: parsing " + quoted + ": value out of range" };
    }
    return { value: NumberCtor(negative ? -value : value) };
  }
  function invalidRange(range, message, cause) {
    if (cause) return new ErrorCtor('invalid range "' + range + '":  ' + message + " (" + cause + ")");
    return new ErrorCtor('invalid range "' + range + '": ' + message);
  }
  function explodeFrames(rangeText) {
    const range = call(strReplaceAll, rangeText, "..", "-");
    const seen = new MapCtor();
    const parts = call(strSplit, range, ",");
    for (let p = 0; p < parts.length; p++) {
      const part = parts[p];
      const startEnd = call(strSplit, part, "-");
      if (startEnd.length === 1) {
        const frame = parseFrame(startEnd[0]);
        if (frame.error) throw invalidRange(range, part, frame.error);
        call(mapSet, seen, frame.value, true);
      } else if (startEnd.length === 2) {
        const start = parseFrame(startEnd[0]);
        const end = parseFrame(startEnd[1]);
        if (start.error || end.error) throw invalidRange(range, part, start.error || end.error);
        for (let f = start.value; f <= end.value; f++) call(mapSet, seen, f, true);
      } else {
        throw invalidRange(range, part);
      }
    }
    const frames = [];
    for (const key of call(Map.prototype.keys, seen)) push(frames, key);
    call(arrSort, frames, (a, b) => a - b);
    return frames;
  }
  function mergeFrames(frames) {
    const ranges = [];
    const add = (from, to) => {
      if (from === to) {
        push(ranges, StringCtor(from));
      } else if (from + 1 === to) {
        push(ranges, StringCtor(from));
        push(ranges, StringCtor(to));
      } else {
        push(ranges, from + "-" + to);
      }
    };
    let start = frames[0];
    let prev = frames[0];
    for (let i = 0; i < frames.length; i++) {
      if (frames[i] > prev + 1) {
        add(start, prev);
        start = frames[i];
      }
      prev = frames[i];
    }
    add(start, frames[frames.length - 1]);
    let text = "";
    for (let i = 0; i < ranges.length; i++) text += (i ? "," : "") + ranges[i];
    return text;
  }
  const toGoString = (value) => (value == null ? "" : StringCtor(value));
  const toGoInt = (value) => {
    const n = mathTrunc(NumberCtor(value));
    return isFiniteNumber(n) ? n : 0;
  };
  setGlobal("frameChunker", function frameChunker(frames, chunkSize) {
    const range = call(strTrim, toGoString(frames));
    if (range.length === 0) throw invalidRange(range, "empty range");
    const size = toGoInt(chunkSize);
    if (size < 1) throw new ErrorCtor("invalid chunk size, must be positive number: " + size);
    const all = explodeFrames(range);
    if (all.length === 0) throw invalidRange(range, "empty range");
    const chunks = [];
    for (let i = 0; i < all.length; i += size) {
      push(chunks, mergeFrames(call(Array.prototype.slice, all, i, i + size)));
    }
    return chunks;
  });
  setGlobal("frameCount", function frameCount(frames) {
    return explodeFrames(toGoString(frames)).length;
  });

  // ---- formatTimestampLocal(date): local time as YYYY-MM-DD_HHMMSS ----
  const pad = (n, width) => call(strPadStart, StringCtor(n), width, "0");
  setGlobal("formatTimestampLocal", function formatTimestampLocal(date) {
    if (!(date instanceof DateCtor)) {
      throw new TypeErrorCtor("formatTimestampLocal(date): date must be a Date");
    }
    if (!isFiniteNumber(call(dateGetTime, date))) {
      throw new TypeErrorCtor("formatTimestampLocal(date): invalid Date");
    }
    return (
      pad(date.getFullYear(), 4) + "-" + pad(date.getMonth() + 1, 2) + "-" + pad(date.getDate(), 2) + "_" +
      pad(date.getHours(), 2) + pad(date.getMinutes(), 2) + pad(date.getSeconds(), 2)
    );
  });

  // ---- shellSplit(str): github.com/google/shlex's Split ----
  setGlobal("shellSplit", function shellSplit(text) {
    const s = toGoString(text);
    const words = [];
    const START = 0, WORD = 1, ESCAPING = 2, ESCAPING_QUOTED = 3, QUOTING_ESCAPING = 4, QUOTING = 5, COMMENT = 6;
    let state = START;
    let value = "";
    let isComment = false;
    const finish = () => {
      if (!isComment) push(words, value);
      value = "";
      isComment = false;
      state = START;
    };
    for (let i = 0; i <= s.length; i++) {
      const eof = i === s.length;
      const c = eof ? "" : s[i];
      const space = c === " " || c === "\t" || c === "\r" || c === "\n";
      switch (state) {
        case START:
          if (eof || space) break;
          if (c === '"') state = QUOTING_ESCAPING;
          else if (c === "'") state = QUOTING;
          else if (c === "\\") state = ESCAPING;
          else if (c === "#") {
            isComment = true;
            state = COMMENT;
          } else {
            value += c;
            state = WORD;
          }
          break;
        case WORD:
          if (eof || space) finish();
          else if (c === '"') state = QUOTING_ESCAPING;
          else if (c === "'") state = QUOTING;
          else if (c === "\\") state = ESCAPING;
          else value += c;
          break;
        case ESCAPING:
          if (eof) throw new ErrorCtor("EOF found after escape character");
          value += c;
          state = WORD;
          break;
        case ESCAPING_QUOTED:
          if (eof) throw new ErrorCtor("EOF found after escape character");
          value += c;
          state = QUOTING_ESCAPING;
          break;
        case QUOTING_ESCAPING:
          if (eof) throw new ErrorCtor("EOF found when expecting closing quote");
          if (c === '"') state = WORD;
          else if (c === "\\") state = ESCAPING_QUOTED;
          else value += c;
          break;
        case QUOTING:
          if (eof) throw new ErrorCtor("EOF found when expecting closing quote");
          if (c === "'") state = WORD;
          else value += c;
          break;
        case COMMENT:
          if (eof || c === "\n") finish();
          else value += c;
          break;
      }
    }
    return words;
  });

  // ---- path: Flamenco's crosspath (backslashes count as slashes; Go's path package rules) ----
  const toSlash = (p) => call(strReplaceAll, p, "\\", "/");
  function goClean(p) {
    if (p === "") return ".";
    const rooted = p[0] === "/";
    const n = p.length;
    let out = rooted ? "/" : "";
    let r = rooted ? 1 : 0;
    let dotdot = rooted ? 1 : 0;
    while (r < n) {
      if (p[r] === "/") {
        r++;
      } else if (p[r] === "." && (r + 1 === n || p[r + 1] === "/")) {
        r++;
      } else if (p[r] === "." && p[r + 1] === "." && (r + 2 === n || p[r + 2] === "/")) {
        r += 2;
        if (out.length > dotdot) {
          let w = out.length - 1;
          while (w > dotdot && out[w] !== "/") w--;
          out = call(strSlice, out, 0, w);
        } else if (!rooted) {
          out += out.length > 0 ? "/.." : "..";
          dotdot = out.length;
        }
      } else {
        if ((rooted && out.length !== 1) || (!rooted && out.length !== 0)) out += "/";
        while (r < n && p[r] !== "/") out += p[r++];
      }
    }
    return out === "" ? "." : out;
  }
  function goBase(p) {
    if (p === "") return ".";
    while (p.length > 0 && p[p.length - 1] === "/") p = call(strSlice, p, 0, -1);
    const i = call(strLastIndexOf, p, "/");
    if (i >= 0) p = call(strSlice, p, i + 1);
    return p === "" ? "/" : p;
  }
  function goExt(p) {
    for (let i = p.length - 1; i >= 0 && p[i] !== "/"; i--) {
      if (p[i] === ".") return call(strSlice, p, i);
    }
    return "";
  }
  const pathModule = ObjectCreate(Object.prototype);
  method(pathModule, "basename", function basename(p) {
    return goBase(toSlash(toGoString(p)));
  });
  method(pathModule, "dirname", function dirname(p) {
    p = toGoString(p);
    if (p === "") return ".";
    const slashed = toSlash(p);
    const dir = call(strSlice, slashed, 0, call(strLastIndexOf, slashed, "/") + 1);
    if (dir === "") return ".";
    return dir.length > 1 ? call(strSlice, dir, 0, -1) : dir;
  });
  method(pathModule, "join", function join(...parts) {
    let joined = "";
    let any = false;
    for (let i = 0; i < parts.length; i++) {
      const part = toGoString(parts[i]);
      if (part === "") continue;
      joined += any ? "/" + part : part;
      any = true;
    }
    return any ? toSlash(goClean(joined)) : "";
  });
  method(pathModule, "stem", function stem(p) {
    const base = goBase(toSlash(toGoString(p)));
    return call(strSlice, base, 0, base.length - goExt(base).length);
  });

  // ---- process: what Flamenco's process module offers ----
  // cwd() is the engine's working directory, always "/" (it says nothing about the Manager).
  const processModule = ObjectCreate(Object.prototype);
  method(processModule, "cwd", function cwd() {
    return "/";
  });
  defineProperty(processModule, "platform", {
    __proto__: null, value: settings.platform, writable: true, enumerable: true, configurable: true,
  });

  // ---- author: tasks and commands (goja's lower-camel names of Flamenco's Go fields) ----
  const uuidBase = settings.uuidBase; // 32 random hex digits from the runner, one set per context
  let uuidCounter = 0;
  function newUUID() {
    uuidCounter = (uuidCounter + 1) % 0x100000000;
    const tail = call(strPadStart, uuidCounter.toString(16), 8, "0");
    const hex = call(strSlice, uuidBase, 0, 24) + tail;
    return (
      call(strSlice, hex, 0, 8) + "-" + call(strSlice, hex, 8, 12) + "-4" + call(strSlice, hex, 13, 16) + "-" +
      "89ab"[call(strCharCodeAt, hex, 16) % 4] + call(strSlice, hex, 17, 20) + "-" + call(strSlice, hex, 20, 32)
    );
  }
  const taskProto = ObjectCreate(Object.prototype);
  method(taskProto, "addCommand", function addCommand(command) {
    if (command == null || typeof command !== "object") {
      throw new TypeErrorCtor("task.addCommand(command): command must be an object from author.Command()");
    }
    push(this.commands, {
      name: toGoString(command.name),
      parameters: command.parameters == null ? {} : command.parameters,
      totalStepCount: toGoInt(command.totalStepCount),
    });
  });
  method(taskProto, "addDependency", function addDependency(task) {
    if (task == null || typeof task !== "object") {
      throw new TypeErrorCtor("task.addDependency(task): task must be an object from author.Task()");
    }
    push(this.dependencies, task);
  });
  // Go's field is UUID, which goja's mapper calls uUID; `uuid` reads and writes the same value.
  defineProperty(taskProto, "uuid", {
    __proto__: null,
    get() {
      return this.uUID;
    },
    set(value) {
      this.uUID = value;
    },
    enumerable: false,
    configurable: true,
  });
  const authorModule = ObjectCreate(Object.prototype);
  method(authorModule, "Task", function Task(name, type) {
    name = call(strTrim, toGoString(name));
    type = call(strTrim, toGoString(type));
    if (name === "") throw new ErrorCtor("author.Task(name, type): name is required");
    if (type === "") throw new ErrorCtor("author.Task(name, type): type is required");
    const task = ObjectCreate(taskProto);
    task.uUID = newUUID();
    task.name = name;
    task.type = type;
    task.priority = 50;
    task.commands = [];
    task.dependencies = [];
    return task;
  });
  method(authorModule, "Command", function Command(name, parameters, totalStepCount) {
    return {
      name: toGoString(name),
      parameters: parameters == null ? {} : parameters,
      totalStepCount: toGoInt(totalStepCount),
    };
  });

  setGlobal("author", authorModule);
  setGlobal("path", pathModule);
  setGlobal("process", processModule);
  const modules = { __proto__: null, author: authorModule, path: pathModule, process: processModule };
  setGlobal("require", function require(name) {
    const key = toGoString(name);
    if (key in modules) return modules[key];
    throw new ErrorCtor("module " + key + " is not available to job scripts");
  });

  // ---- the job object given to compileJob(job) ----
  const jobProto = ObjectCreate(Object.prototype);
  method(jobProto, "addTask", function addTask(task) {
    if (task == null || typeof task !== "object") {
      throw new TypeErrorCtor("job.addTask(task): task must be an object from author.Task()");
    }
    // Flamenco copies the task into the job: later changes to `task` do not reach the job.
    const copy = ObjectCreate(taskProto);
    copy.uUID = task.uUID;
    copy.name = task.name;
    copy.type = task.type;
    copy.priority = task.priority;
    copy.commands = call(Array.prototype.slice, task.commands == null ? [] : task.commands);
    copy.dependencies = call(Array.prototype.slice, task.dependencies == null ? [] : task.dependencies);
    push(this.tasks, copy);
  });
  function makeJob(given) {
    const job = ObjectCreate(jobProto);
    job.jobID = given.jobID;
    job.workerTagUUID = given.workerTagUUID;
    job.name = given.name;
    job.jobType = given.jobType;
    job.priority = given.priority;
    job.status = given.status;
    job.created = new DateCtor(given.created);
    job.settings = given.settings == null ? {} : given.settings;
    job.metadata = given.metadata == null ? {} : given.metadata;
    job.storage = { shamanCheckoutID: given.storage == null ? "" : toGoString(given.storage.shamanCheckoutID) };
    job.tasks = [];
    return job;
  }
  function authoredJob(job) {
    const tasks = job.tasks;
    const indexOf = new MapCtor();
    for (let i = 0; i < tasks.length; i++) {
      const id = tasks[i].uUID;
      if (call(mapHas, indexOf, id)) {
        throw new ErrorCtor("task " + JSONstringify(tasks[i].name) + " was added to the job more than once");
      }
      call(mapSet, indexOf, id, i);
    }
    const outTasks = [];
    for (let i = 0; i < tasks.length; i++) {
      const t = tasks[i];
      const deps = [];
      for (let d = 0; d < t.dependencies.length; d++) {
        const dep = t.dependencies[d];
        const index = dep == null ? undefined : call(mapGet, indexOf, dep.uUID);
        if (index === undefined) {
          throw new ErrorCtor(
            "task " + JSONstringify(t.name) + " depends on task " + JSONstringify(dep == null ? null : dep.name) +
              ", which was never added to the job",
          );
        }
        push(deps, index);
      }
      const commands = [];
      for (let c = 0; c < t.commands.length; c++) {
        const cmd = t.commands[c];
        push(commands, { name: cmd.name, parameters: cmd.parameters, totalStepCount: cmd.totalStepCount });
      }
      push(outTasks, {
        uuid: t.uUID, name: t.name, type: t.type, priority: t.priority, commands, dependencies: deps,
      });
    }
    return { name: job.name, priority: job.priority, settings: job.settings, metadata: job.metadata, tasks: outTasks };
  }

  // ---- errors: what was thrown, as primitives ----
  function describeThrown(thrown, filename) {
    const info = { message: "", line: null, column: null, located: false };
    if (thrown instanceof ErrorCtor) {
      let name = "Error";
      try {
        info.message = toGoString(thrown.message);
        name = toGoString(thrown.name);
        void thrown.stack; // formats (once) through prepareStackTrace, which records the frames
      } catch {
        // a hostile getter: keep what we have
      }
      if (name !== "Error" && name !== "") info.message = name + ": " + info.message;
      const frames = call(weakGet, framesOf, thrown);
      if (frames) {
        for (let i = 0; i < frames.length; i++) {
          if (frames[i].file === filename) {
            info.line = frames[i].line;
            info.column = frames[i].column;
            info.located = true;
            break;
          }
        }
      }
      return info;
    }
    try {
      if (thrown !== null && typeof thrown === "object") {
        info.message = typeof thrown.message === "string" ? thrown.message : formatArg(thrown);
      } else {
        info.message = StringCtor(thrown);
      }
    } catch {
      info.message = "[unprintable exception]";
    }
    return info;
  }

  function run(op, filename, jobJSON) {
    let result;
    try {
      const jobType = typeof JOB_TYPE === "undefined" ? undefined : JOB_TYPE; // the script's lexical global
      if (jobType === undefined) return JSONstringify({ incomplete: "does not define a JOB_TYPE object", output });
      if (jobType === null || typeof jobType !== "object") {
        return JSONstringify({ incomplete: "does not define a proper JOB_TYPE object", output });
      }
      const compile = typeof compileJob === "undefined" ? undefined : compileJob;
      if (typeof compile !== "function") {
        return JSONstringify({ incomplete: "does not define a compileJob(job) function", output });
      }
      if (op === "describe") {
        result = JSONparse(JSONstringify(jobType));
      } else {
        const job = makeJob(JSONparse(jobJSON));
        compile(job);
        result = authoredJob(job);
      }
    } catch (thrown) {
      return JSONstringify({ thrown: describeThrown(thrown, filename), output });
    }
    return JSONstringify({ result, output });
  }
  lockGlobal("__flamencoRun", run);
  // For the runner: what the script threw at its top level (outside __flamencoRun), and the error
  // that import() rejects with (made here, so the script never holds an object of the runner's).
  return function hostRequest(op, value, filename) {
    if (op === "thrown") return JSONstringify({ thrown: describeThrown(value, filename), output });
    if (op === "importError") return new ErrorCtor("import() is not available to job scripts");
    throw new ErrorCtor("unknown request " + op);
  };
});
