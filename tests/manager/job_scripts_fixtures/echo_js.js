// Echo, then sleep: a JavaScript job type that any worker runs without Blender.
const JOB_TYPE = {
    label: "Echo (JavaScript)",
    settings: [
        { key: "message", type: "string", required: true },
        { key: "sleeps", type: "int32", default: 2, propargs: { min: 0, max: 100 } },
    ],
};

function compileJob(job) {
    const echo = author.Task("echo", "misc");
    echo.addCommand(author.Command("echo", { message: job.settings.message }, 0));
    job.addTask(echo);
    for (let i = 1; i <= job.settings.sleeps; i++) {
        const sleep = author.Task(`sleep-${i}`, "misc");
        sleep.addCommand(author.Command("sleep", { duration_in_seconds: 0 }, 0));
        sleep.addDependency(echo);
        job.addTask(sleep);
    }
    job.name = job.name + " (echo)";
}
