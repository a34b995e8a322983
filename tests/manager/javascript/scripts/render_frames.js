// A job type in the style of Flamenco's simple-blender-render, written for these tests.
const JOB_TYPE = {
    label: "Render Frames",
    settings: [
        { key: "frames", type: "string", required: true, eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'" },
        { key: "chunk_size", type: "int32", default: 1, propargs: { min: 1, max: 100 } },
        { key: "render_output_path", type: "string", subtype: "file_path", editable: false },
        { key: "blendfile", type: "string", required: true, visible: "web" },
        { key: "fps", type: "float", visible: "hidden" },
    ],
};

let CURRENT_JOB;
function compileJob(job) {
    CURRENT_JOB = job;
    print("Render Frames job submitted");
    print("job: ", job);
    const settings = job.settings;
    if (!settings.render_output_path) {
        throw "no render_output_path setting!";
    }
    const renderDir = path.dirname(settings.render_output_path);
    const renderTasks = authorRenderTasks(settings, renderDir);
    const videoTask = authorVideoTask(settings, renderDir);
    if (videoTask) {
        for (const rt of renderTasks) {
            videoTask.addDependency(rt);
        }
        job.addTask(videoTask);
    }
}

function authorRenderTasks(settings, renderDir) {
    const tasks = [];
    const chunks = frameChunker(settings.frames, settings.chunk_size);
    for (const chunk of chunks) {
        const task = author.Task(`render-${chunk}`, "blender");
        const command = author.Command("blender-render", {
            exe: "{blender}",
            argsBefore: shellSplit("-b -y"),
            blendfile: settings.blendfile,
            args: ["--render-output", path.join(renderDir, path.basename(settings.render_output_path)),
                   "--render-frame", chunk.replaceAll("-", "..")],
        });
        task.addCommand(command);
        CURRENT_JOB.addTask(task);
        tasks.push(task);
    }
    return tasks;
}



function authorVideoTask(settings, renderDir) {
    if (!settings.fps) return;
    const stem = path.stem(settings.blendfile).replace(".flamenco", "");
    const task = author.Task("preview-video", "ffmpeg");
    task.addCommand(author.Command("frames-to-video", {
        exe: "ffmpeg",
        fps: settings.fps,
        inputGlob: path.join(renderDir, "*.png"),
        outputFile: path.join(renderDir, `${stem}-${formatTimestampLocal(new Date(0))}.mp4`),
        args: [],
    }));
    return task;
}
