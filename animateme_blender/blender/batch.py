"""Headless batch: animate one head or a job file of many heads x expressions, without the UI.

    blender --background [scene.blend] --python animateme_blender/blender/batch.py -- \\
        --input face.obj --expression happy [--mix sad:0.3] --frames 40 --seed 0 --out DIR [--render]
        [--landmarks nose_tip=12,mouth_left=40,mouth_right=77 | --landmarks groups] [--region GROUP] [--force]
    python -m animateme_blender.blender.batch --input face.obj --expression happy --out DIR
    python -m animateme_blender.blender.batch --job jobs.json --out DIR [--workers 2] [--resume]

For each job it writes `<name>.blend` (the animated object, keys and keyframes) and a preview
`<name>.mp4` (plus `<name>.gif` where Pillow is importable) rendered with Cycles on the CPU;
`--render` also keeps the rendered frames. A failing job prints one line and the others still
run; the exit code is 0 only when every job succeeded. Landmarks are vertex indices, or "groups":
the object's AM_landmark_<name> vertex groups (also used when no landmarks are given); the region
is a vertex group of the face (or vertex indices, for a mesh file); force uses a refused fit anyway
(the report and the object record it).

A job file prints one line per finished job with the time left. Each finished job leaves a
manifest (OUT/manifests/<name>.json: its files' sizes and hashes and its settings): `--resume`
skips the jobs whose manifest still matches. `--workers N` runs the heads in N processes of this
batch (workers.py); `--rows` runs one share of the job file, as a farm task does (`animateme farm`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`blender --python batch.py`): import the package this file belongs to,
    # so its relative imports work, and hand over to it.
    _root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(_root.parent))
    _module = importlib.import_module(f"{_root.name}.blender.batch")
    sys.exit(_module.main())

import bpy
import numpy as np

from ..core.rig.arkit import ARKIT_NAMES
from ..core.errors import AnimateMeError
from ..core.frames import face_model_to_blender
from ..core.pipeline import Pipeline
from ..core.vocabulary import OUTPUTS, add_fit_arguments, add_request_arguments, explain_error, names
from ..core.vocabulary import parse_mix  # noqa: F401 (the batch's mix parser is the vocabulary's)
from .console import ProgressBar, silenced
from .jobs import JOB_FIELDS, Job, job_from_mapping, read_job_file  # noqa: F401 (the batch's job files)
from .jobs import (REPORT, Progress, check_manifest, drop_manifest, file_sha256, job_file_identity, job_settings,
                   merge_reports, parse_rows, summary, task_report_path, write_json, write_manifest,
                   write_task_report)
from .mesh_data import check_object, linked_problem, mesh_arrays
from .preview_render import ensure_camera_and_light, moving_bounds, render_frames, write_gif, write_video
from .rig_keys import apply_rig, clash_message, foreign_keys
from .shape_keys import write_animation
from .workers import progress_line, run_workers

FORCED_PROPERTY = "animateme_fit_forced"   # as the operators record it

RENDER_MODES = ("off", "preview", "frames")
MESH_IMPORTERS = {".obj": "obj", ".ply": "ply", ".stl": "stl", ".glb": "gltf", ".gltf": "gltf", ".fbx": "fbx"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animateme-batch", description="Animate faces headless with AnimateMe.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", help="neutral face mesh file (.obj, .ply, .stl, .glb, .fbx)")
    source.add_argument("--object", help="name of a mesh object in the opened .blend")
    source.add_argument("--job", help="JSON or CSV job file of many heads x expressions")
    add_request_arguments(parser)
    add_fit_arguments(parser, region_help="the face's vertex group (or vertex indices, e.g. 0-4999, for a mesh "
                                          "file): only it is fitted and animated")
    parser.add_argument("--start-frame", type=int, default=1)
    parser.add_argument("--name", help="output name (default: <head>_<expression>_s<seed>)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--render", action="store_true", help="keep rendered frames (Cycles, CPU)")
    parser.add_argument("--no-preview", action="store_true", help="write only the .blend")
    parser.add_argument("--resolution", type=int, default=256, help="render size in pixels (square)")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel")
    parser.add_argument("--model", help="an AnimateMe .onnx (default: the bundled one)")
    parser.add_argument("--template", help="template.npz (default: the bundled one)")
    many = parser.add_argument_group("many jobs (--job)")
    many.add_argument("--workers", type=int, default=1,
                      help="run N jobs at once, in N processes (each one head's rows: its fit is done once)")
    many.add_argument("--resume", action="store_true",
                      help="skip the jobs whose outputs are complete (their manifest in OUT/manifests matches "
                           "the files and the settings)")
    many.add_argument("--rows", help="only these rows of the job file, numbered from 0 (e.g. 0-3,7): one "
                                     "farm task's share; the report goes to OUT/task-reports/")
    many.add_argument("--report", help="where the report goes (default OUT/batch_report.json, or with --rows "
                                       "OUT/task-reports/rows-<rows>.json)")
    many.add_argument("--render-mode", choices=RENDER_MODES,
                      help="off: the .blend only (as --no-preview); preview: also MP4 and GIF (the default); "
                           "frames: also the rendered frames (as --render)")
    many.add_argument("--job-rows", type=int, help="fail unless the job file has this many rows (a farm bundle "
                                                   "checks that its job file did not change)")
    many.add_argument("--merge-reports", action="store_true",
                      help="only merge OUT/task-reports/*.json into OUT/batch_report.json (a farm job's last step)")
    many.add_argument("--progress-protocol", action="store_true", help=argparse.SUPPRESS)
    return parser


def apply_render_mode(args) -> None:
    if args.render_mode:
        args.render, args.no_preview = args.render_mode == "frames", args.render_mode == "off"


def script_arguments(argv: list[str] | None) -> list[str]:
    """Blender passes its own arguments too: the script's come after `--`."""
    if argv is None:
        argv = sys.argv[1:] if "--" not in sys.argv else sys.argv
    argv = list(argv)
    return argv[argv.index("--") + 1:] if "--" in argv else argv


def jobs_from_args(args) -> list[Job]:
    defaults = Job(input=args.input, object=args.object, expression=args.expression, mix=args.mix,
                   transition=args.transition, intensity=args.intensity, timing=args.timing, frames=args.frames,
                   start_frame=args.start_frame, seed=args.seed, quality=args.quality,
                   variation=args.variation, device=args.device, name=args.name, landmarks=args.landmarks,
                   region=args.region, force=args.force, output=args.output)
    if args.job:
        return read_job_file(args.job, replace(defaults, input=None, object=None, name=None))
    if not args.input and not args.object:
        raise AnimateMeError("give --input FILE, --object NAME or --job FILE")
    return [defaults]


def fresh_scene(start_file: str) -> None:
    """Every job starts from the file Blender opened (or an empty scene), not the last job's result."""
    with silenced():
        _fresh_scene(start_file)


def _fresh_scene(start_file: str) -> None:
    if start_file:
        bpy.ops.wm.open_mainfile(filepath=start_file)
    else:
        bpy.ops.wm.read_homefile(use_empty=True)


def import_mesh(path: str) -> bpy.types.Object:
    source = Path(path)
    if not source.is_file():
        raise AnimateMeError(f"{source} not found")
    kind = MESH_IMPORTERS.get(source.suffix.lower())
    if kind is None:
        raise AnimateMeError(f"{source}: cannot import {source.suffix or 'files without extension'}: "
                             f"use one of {', '.join(MESH_IMPORTERS)}")
    before = set(bpy.data.objects)
    try:
        with silenced():  # importers print timings per file
            if kind == "obj":
                bpy.ops.wm.obj_import(filepath=str(source))
            elif kind == "ply":
                bpy.ops.wm.ply_import(filepath=str(source))
            elif kind == "stl":
                bpy.ops.wm.stl_import(filepath=str(source))
            elif kind == "gltf":
                bpy.ops.import_scene.gltf(filepath=str(source))
            else:
                bpy.ops.import_scene.fbx(filepath=str(source))
    except RuntimeError as error:
        raise AnimateMeError(f"{source}: Blender could not import it ({str(error).strip()})") from None
    meshes = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    if len(meshes) != 1:
        raise AnimateMeError(f"{source} holds {len(meshes)} meshes: give a file with exactly one face mesh")
    polygons = meshes[0].data.polygons
    polygons.foreach_set("use_smooth", np.ones(len(polygons), dtype=bool))  # scans carry no normals
    return meshes[0]


def find_object(name: str) -> bpy.types.Object:
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise AnimateMeError(f"no object named {name!r} in {bpy.data.filepath or 'the scene'}")
    if obj.type != "MESH":
        raise AnimateMeError(f"object {name!r} is a {obj.type.lower()}, not a mesh")
    linked = linked_problem(obj)
    if linked:
        raise AnimateMeError(f"{linked}, save the .blend, then run the batch again")
    return obj


def animate(obj: bpy.types.Object, job: Job, pipeline: Pipeline, log=print) -> dict:
    """The operator's work, without the UI: arrays -> pipeline -> keys. Returns timings (and, under
    "moving", the object-local bounds of what moves, for the preview camera)."""
    request = job.request()
    check_object(obj)
    if job.output not in names(OUTPUTS):
        raise AnimateMeError(f"unknown output {job.output!r}: use {' or '.join(names(OUTPUTS))}")
    if job.output == "rig" and foreign_keys(obj, ARKIT_NAMES):
        raise AnimateMeError(clash_message(obj, foreign_keys(obj, ARKIT_NAMES)))
    options = job.fit_options(obj)
    vertices, faces = mesh_arrays(obj)
    with ProgressBar(f"generate {job.head()} {request.label}", 100) as bar:
        result = pipeline.generate(vertices, faces, request, job.device,
                                   progress=lambda f, m: bar.update_to(100 * f, m), options=options, output=job.output)
    started = time.perf_counter()
    scene = bpy.context.scene
    clip = (job.start_frame, job.start_frame + request.frames - 1)
    rig_stats = {}
    if job.output == "rig":
        from ..core.rig.build import rig_for_result

        rig, performance = rig_for_result(pipeline, vertices, faces, result, options)
        wrote, action = apply_rig(obj, rig, performance, pipeline.mesh_key(vertices, faces, options),
                                  result.progression, request.label, job.start_frame)
        rig_stats = {"rig_action": action, "rig_keys_written": wrote,
                     "rig_residual_mm": float(performance.residual_mm.mean())}
    else:
        write_animation(obj, face_model_to_blender(result.displacements), result.progression, request.label,
                        job.start_frame, settings=request.to_dict(),
                        frame_range=((scene.frame_start, scene.frame_end), clip))
    scene.frame_start, scene.frame_end = clip
    if result.forced:
        from ..core.fit.fit_report import refusal_problem

        obj[FORCED_PROPERTY] = f"refused fit used anyway: {refusal_problem(result.fit.score)}"
    if result.folds_left:
        log(f"warning: {result.folds_left} triangles of '{obj.name}' still turn over at the worst frame: "
            "look at the mouth up close (docs/carry.md)")
    return {**result.timings, "write": time.perf_counter() - started, "device": result.device,
            "folds_left": int(result.folds_left),
            "moving": moving_bounds(obj, result.displacements),
            "fit_cached": result.fit_cached, "forced": result.forced, "landmarks": len(options.landmarks),
            "region_vertices": 0 if options.region is None else len(options.region), **rig_stats}


def run_job(job: Job, args, pipeline: Pipeline, start_file: str, out: Path, log=print) -> dict:
    fresh_scene(start_file)
    obj = import_mesh(job.input) if job.input else find_object(job.object)
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    name = job.output_name()
    stats = animate(obj, job, pipeline, log)
    focus = stats.pop("moving")
    outputs = {}
    if not args.no_preview or args.render:
        ensure_camera_and_light(obj, focus)
    blend = out / f"{name}.blend"
    with silenced():
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, compress=True)
    outputs["blend"] = str(blend)
    if args.render or not args.no_preview:
        keep = args.render
        folder = out / f"{name}_frames" if keep else Path(tempfile.mkdtemp(prefix="animateme-frames-"))
        started = time.perf_counter()
        frames = render_frames(folder, args.resolution, args.samples)
        stats["render"] = time.perf_counter() - started
        if keep:
            outputs["frames"] = str(folder)
        if not args.no_preview:
            fps = bpy.context.scene.render.fps
            label = job.request().label
            for kind, writer in (("mp4", write_video), ("gif", lambda *a: write_gif(*a, label=label))):
                made = writer(frames, out / f"{name}.{kind}", fps)
                if made:
                    outputs[kind] = str(made)
        if not keep:
            for path in frames:
                path.unlink()
            folder.rmdir()
    return {"job": name, **outputs, "timings": stats}


def batch_settings(args, pipeline: Pipeline, start_file: str) -> dict:
    """What every job's outputs depend on besides its own row (a manifest records it)."""
    render = "frames" if args.render else "off" if args.no_preview else "preview"
    settings = {"render": render, "model_sha256": _sha256_or_none(pipeline.model_path),
                "template_sha256": _sha256_or_none(pipeline.template_path),
                "scene_sha256": _sha256_or_none(start_file) if start_file else None}
    if render != "off":
        settings.update(resolution=args.resolution, samples=args.samples)
    return settings


def _sha256_or_none(path) -> str | None:
    return file_sha256(path) if path and Path(path).is_file() else None


def run_row(row: int, job: Job, args, pipeline: Pipeline, start_file: str, out: Path, common: dict) -> tuple[dict, str]:
    """One row of the batch: skipped when --resume finds it complete, else run; a failure is
    reported, never raised. Returns (its report entry, a few words for the progress line)."""
    describe, rerun = job.describe(), ""
    try:
        name = job.output_name()
        settings = job_settings(job, common)
        if args.resume:
            manifest, why = check_manifest(out, name, settings)
            if manifest is not None:
                return {"row": row, "status": "skipped", "job": name,
                        **{k: str(out / v) for k, v in manifest["outputs"].items()}}, ""
            rerun = "" if why == "no manifest" else f"ran again ({why}); "
        drop_manifest(out, name)          # from here until the new one is written, the job is not done
        result = run_job(job, args, pipeline, start_file, out)
        outputs = {k: v for k, v in result.items() if k not in ("job", "timings")}
        write_manifest(out, name, settings, outputs)
        return {"row": row, "status": "done", **result}, rerun + "wrote " + ", ".join(Path(v).name for v in outputs.values())
    except Exception as error:  # one failing head must not stop the other ninety-nine
        text = explain_error(error, "command").strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        if not isinstance(error, AnimateMeError):
            reason = f"{type(error).__name__}: {reason}"
        print(f"animateme batch: error: row {row} ({describe}): {reason}", file=sys.stderr, flush=True)
        return {"row": row, "status": "failed", "job": describe, "error": reason}, reason


def worker_command(start_file: str) -> tuple[list[str], dict]:
    """How to start another batch like this one: the same Blender with this script, or the same
    Python with this module (the package importable whatever the working folder)."""
    if bpy.app.binary_path:
        scene = [start_file] if start_file else []
        return [bpy.app.binary_path, "--background", *scene, "--python", str(Path(__file__).resolve()), "--"], {}
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", f"{__package__}.batch"], {"PYTHONPATH": path}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(script_arguments(argv))
    apply_render_mode(args)
    out = Path(args.out)
    try:
        if args.merge_reports:
            entries, counts = merge_reports(out)
            print(summary(entries, counts))
            print(f"report in {out / 'batch_report.json'}")
            return 1 if counts.get("failed") or counts.get("missing") else 0
        jobs = jobs_from_args(args)
        if (args.rows or args.job_rows is not None or args.workers > 1) and not args.job:
            raise AnimateMeError("--rows, --job-rows and --workers work on a job file: give --job FILE")
        if args.job_rows is not None and args.job_rows != len(jobs):
            raise AnimateMeError(f"{args.job} now lists {len(jobs)} jobs, the farm bundle was written for "
                                 f"{args.job_rows}: write the bundle again (animateme farm --job ...)")
        if args.workers < 1:
            raise AnimateMeError(f"--workers {args.workers}: give 1 or more")
        rows = parse_rows(args.rows, len(jobs)) if args.rows else list(range(len(jobs)))
        out.mkdir(parents=True, exist_ok=True)
        if args.workers > 1:
            return run_workers(parser, args, jobs, rows, out, *worker_command(bpy.data.filepath))
        pipeline = Pipeline(args.model, args.template, fit_cache_dir=out / ".fits")
    except AnimateMeError as error:
        print(f"animateme batch: error: {error}", file=sys.stderr)
        return 2
    report = Path(args.report) if args.report else task_report_path(out, rows) if args.rows else out / REPORT
    identity = job_file_identity(args.job, len(jobs)) if args.job else {}
    start_file = bpy.data.filepath
    common = batch_settings(args, pipeline, start_file)
    firsts = {next(r for r in rows if jobs[r].head_key() == head) for head in {jobs[r].head_key() for r in rows}}
    progress = Progress(rows, log=lambda line: None if args.progress_protocol else print(line, flush=True),
                        first_rows=firsts)
    failures, results = 0, []
    for row in rows:
        job = jobs[row]
        started = time.perf_counter()
        entry, detail = run_row(row, job, args, pipeline, start_file, out, common)
        failures += entry["status"] == "failed"
        results.append(entry)
        seconds = time.perf_counter() - started
        if args.progress_protocol:
            print(progress_line(row, job.describe(), entry["status"], seconds, detail), flush=True)
        progress.job_done(row, job.describe(), entry["status"], seconds, detail)
        if args.rows:          # a task's report is kept current: a task that dies leaves what it finished
            write_task_report(report, rows, identity, results)
    if args.rows:
        write_task_report(report, rows, identity, results)
    else:
        write_json(report, results)
    if not args.progress_protocol:
        print(f"{len(rows) - failures} of {len(rows)} jobs done; report in {report}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
