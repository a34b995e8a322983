// A studio's render job type: Blender renders in chunks of frames, then a preview video.
// Written for the Manager's tests and benchmark; it uses the globals Flamenco gives job scripts.

const JOB_TYPE = {
    label: "Studio Render",
    description: "Render a frame range in chunks, then make a preview video",
    settings: [
        { key: "frames", type: "string", required: true, eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
          description: "Frame range to render, e.g. '47', '1-30', '3, 5-10, 47-327'" },
        { key: "chunk_size", type: "int32", default: 1, propargs: { min: 1, max: 1000 },
          description: "Number of frames to render in one Blender render task" },
        { key: "render_output_root", type: "string", subtype: "dir_path", required: true, visible: "submission",
          description: "Base directory of where render output is stored" },
        { key: "render_output_path", type: "string", subtype: "file_path", editable: false,
          eval: "str(Path(abspath(settings.render_output_root), jobname, '######'))",
          evalInfo: { showLinkButton: true, description: "Where the frames go" },
          description: "Final file path of where render output will be saved" },
        { key: "blendfile", type: "string", required: true, visible: "web", description: "Path of the Blend file" },
        { key: "fps", type: "float", eval: "C.scene.render.fps / C.scene.render.fps_base", visible: "hidden" },
        { key: "format", type: "string", required: true, choices: ["PNG", "OPEN_EXR", "JPEG"], visible: "web" },
        { key: "has_previews", type: "bool", required: false, visible: "hidden", default: false },
    ],
};

function compileJob(job) {
    const settings = job.settings;
    if (settings.chunk_size > 500) {
        throw new Error(`chunk_size ${settings.chunk_size} is more than this studio allows`);
    }
    const outputDir = path.dirname(settings.render_output_path);
    const renderTasks = [];
    for (const chunk of frameChunker(settings.frames, settings.chunk_size)) {
        const task = author.Task(`render-${chunk}`, "blender");
        task.addCommand(author.Command("blender-render", {
            exe: "{blender}",
            exeArgs: "{blenderArgs}",
            argsBefore: [],
            blendfile: settings.blendfile,
            args: ["--render-output", settings.render_output_path.replace("{timestamp}", "now"),
                   "--render-format", settings.format, "--render-frame", chunk.replace("-", "..")],
        }, 0));
        job.addTask(task);
        renderTasks.push(task);
    }
    const video = author.Task("preview-video", "ffmpeg");
    video.addCommand(author.Command("frames-to-video", {
        exe: "ffmpeg",
        fps: settings.fps || 24,
        inputGlob: path.join(outputDir, "*.png"),
        outputFile: path.join(outputDir, "preview.mp4"),
        args: ["-c:v", "h264"],
    }, 0));
    for (const task of renderTasks) {
        video.addDependency(task);
    }
    job.addTask(video);
    job.metadata.render_output = outputDir;
    print("compiled", renderTasks.length, "render tasks for", job.name);
}
