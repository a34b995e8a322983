// simple-blender-render as a Flamenco v3 job-type script, written for this project's tests.
//
// It describes the same settings and builds the same task graph as the Manager's built-in job type
// (flamenco_manager/jobtypes/simple_blender_render.py); tests/manager/test_builtin_matches_script.py
// compiles submissions through both and compares the results as JSON text.

const JOB_TYPE = {
  label: "Simple Blender Render",
  description: "Renders a frame range in chunks and, for video-friendly image formats, a preview video.",
  settings: [
    {
      key: "frames",
      type: "string",
      required: true,
      eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
      evalInfo: { showLinkButton: true, description: "Use the scene's frame range" },
      description: "Frames to render, e.g. '47', '1-30' or '3, 5-10, 47-327'",
    },
    {
      key: "chunk_size",
      type: "int32",
      default: 1,
      description: "How many frames one render task renders",
      visible: "submission",
    },
    {
      key: "render_output_root",
      type: "string",
      subtype: "dir_path",
      required: true,
      visible: "submission",
      description: "Directory under which the job's render output goes",
    },
    {
      key: "add_path_components",
      type: "int32",
      required: true,
      default: 0,
      propargs: { min: 0, max: 32 },
      visible: "submission",
      description: "How many directory names of the blend file's path to repeat in the output path",
    },
    {
      key: "render_output_path",
      type: "string",
      subtype: "file_path",
      editable: false,
      eval:
        "str(Path(abspath(settings.render_output_root), last_n_dir_parts(settings.add_path_components)," +
        " jobname, '{timestamp}', '######'))",
      description: "Where the frames are written; {timestamp} becomes the job's creation time",
    },
    {
      key: "blendfile",
      type: "string",
      required: true,
      description: "The blend file to render, as the workers see it",
      visible: "web",
    },
    { key: "fps", type: "float", eval: "C.scene.render.fps / C.scene.render.fps_base", visible: "hidden" },
    {
      key: "format",
      type: "string",
      required: true,
      eval: "C.scene.render.image_settings.file_format",
      visible: "web",
    },
    {
      key: "image_file_extension",
      type: "string",
      required: true,
      eval: "C.scene.render.file_extension",
      visible: "hidden",
      description: "Extension of the rendered image files",
    },
    {
      key: "has_previews",
      type: "bool",
      required: false,
      eval: "C.scene.render.image_settings.use_preview",
      visible: "hidden",
      description: "Whether Blender also writes JPEG previews next to the images",
    },
    {
      key: "scene",
      type: "string",
      required: true,
      eval: "C.scene.name",
      visible: "web",
      description: "The scene to render",
    },
  ],
};

// Output formats that are a video file: rendering those in chunks makes no sense.
const VIDEO_OUTPUT = ["FFMPEG", "AVI_RAW", "AVI_JPEG"];
// OpenEXR (by its command-line and its scene names): FFmpeg reads Blender's JPEG previews instead.
const NOT_FOR_FFMPEG = ["EXR", "MULTILAYER", "OPEN_EXR", "OPEN_EXR_MULTILAYER"];
// Each render makes sure images get their extension and existing frames are skipped, not redone.
const RENDER_SETTINGS = [
  "import bpy",
  "r = bpy.context.scene.render",
  "r.use_file_extension = True",
  "r.use_overwrite = False",
  "r.use_placeholder = False",
].join("; ");

function compileJob(job) {
  const s = job.settings;
  if (VIDEO_OUTPUT.includes(s.format)) {
    throw `format ${s.format} makes a video; this job type renders image files`;
  }
  const output = outputWithTimestamp(s.render_output_path, job.created);
  s.render_output_path = output; // the job keeps the path that was really used
  const outputDir = path.dirname(output);

  const renders = frameChunker(s.frames, s.chunk_size).map((chunk) => renderChunk(s, outputDir, output, chunk));
  for (const task of renders) {
    job.addTask(task);
  }
  const video = previewVideo(s, outputDir);
  if (video !== null) {
    for (const task of renders) {
      video.addDependency(task);
    }
    job.addTask(video);
  }
}

function outputWithTimestamp(template, created) {
  if (!template) {
    throw "render_output_path is empty";
  }
  return template.replace(/\{([^}]+)\}/g, (field, name) =>
    name === "timestamp" ? formatTimestampLocal(created) : field,
  );
}

function renderChunk(s, outputDir, output, chunk) {
  const args = s.scene ? ["--scene", s.scene] : [];
  args.push(
    "--python-expr", RENDER_SETTINGS,
    "--render-output", path.join(outputDir, path.basename(output)),
    "--render-format", s.format,
    "--render-frame", chunk.split("-").join(".."),
  );
  const task = author.Task(`render-${chunk}`, "blender");
  const parameters = {
    exe: "{blender}",
    exeArgs: "{blenderArgs}",
    argsBefore: [],
    blendfile: s.blendfile,
    args: args,
  };
  task.addCommand(author.Command("blender-render", parameters, frameCount(chunk)));
  return task;
}

function previewVideo(s, outputDir) {
  const usePreviews = NOT_FOR_FFMPEG.includes(s.format);
  if ((usePreviews && !s.has_previews) || !s.fps) {
    return null;
  }
  let frames = String(s.frames);
  if (frames.includes(",")) {
    const each = frameChunker(s.frames, 1);
    frames = `${each[0]}-${each[each.length - 1]}`;
  }
  const name = path.stem(s.blendfile).replace(".flamenco", "");
  const extension = usePreviews ? ".jpg" : s.image_file_extension;
  const task = author.Task("preview-video", "ffmpeg");
  task.addCommand(
    author.Command("frames-to-video", {
      exe: "ffmpeg",
      fps: s.fps,
      inputGlob: path.join(outputDir, `*${extension}`),
      outputFile: path.join(outputDir, `${name}-${frames}.mp4`),
      args: [
        "-c:v", "h264", "-crf", "20", "-g", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
        "-pix_fmt", "yuv420p", "-r", s.fps, "-y",
      ],
    }),
  );
  return task;
}
