// echo-sleep-test as a Flamenco v3 job-type script, written for this project's tests.
//
// It describes the same settings and builds the same task graph as the Manager's built-in job type
// (flamenco_manager/jobtypes/echo_sleep_test.py).

const JOB_TYPE = {
  label: "Echo Sleep Test",
  description: "Echoes a message, then runs sleep tasks; exercises workers without Blender.",
  settings: [
    { key: "message", type: "string", required: true, description: "Text the echo task logs" },
    { key: "sleep_duration_seconds", type: "int32", default: 1, description: "How long each sleep task sleeps" },
    { key: "sleep_repeats", type: "int32", default: 1, description: "How many sleep tasks follow the echo task" },
  ],
};

function compileJob(job) {
  const s = job.settings;
  const echo = author.Task("echo", "misc");
  echo.addCommand(author.Command("echo", { message: s.message }));
  job.addTask(echo);
  // Every sleep waits for the echo only, so the sleeps may run side by side.
  for (let n = 0; n < s.sleep_repeats; n++) {
    const sleep = author.Task("sleep", "misc");
    sleep.addCommand(author.Command("sleep", { duration_in_seconds: s.sleep_duration_seconds }));
    sleep.addDependency(echo);
    job.addTask(sleep);
  }
}
