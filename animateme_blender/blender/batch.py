"""Headless batch: animate one head or a job file of many heads x expressions, without the UI.

    blender --background [scene.blend] --python animateme_blender/blender/batch.py -- \\
        --input face.obj --expression happy [--mix sad:0.3] --frames 40 --seed 0 --out DIR [--render]
        [--landmarks nose_tip=12,mouth_left=40,mouth_right=77 | --landmarks groups] [--region GROUP] [--force]
    python -m animateme_blender.blender.batch --input face.obj --expression happy --out DIR

For each job it writes `<name>.blend` (the animated object, keys and keyframes) and a preview
`<name>.mp4` (plus `<name>.gif` where Pillow is importable) rendered with Cycles on the CPU;
`--render` also keeps the rendered frames. A failing job prints one line and the others still
run; the exit code is 0 only when every job succeeded. Landmarks are vertex indices, or "groups":
the object's AM_landmark_<name> vertex groups (also used when no landmarks are given); the region
is a vertex group of the face (or vertex indices, for a mesh file); force uses a refused fit anyway
(the report and the object record it).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
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

from ..core.arkit import ARKIT_NAMES
from ..core.errors import AnimateMeError
from ..core.frames import face_model_to_blender
from ..core.fit_options import FitOptions
from ..core.pipeline import Pipeline, Request, request_from_options
from ..core.vocabulary import OUTPUTS, add_fit_arguments, add_request_arguments, explain_error, names
from ..core.vocabulary import parse_indices, parse_landmarks
from ..core.vocabulary import parse_mix  # noqa: F401 (the batch's mix parser is the vocabulary's)
from .console import ProgressBar, silenced
from .preview_render import ensure_camera_and_light, moving_bounds, render_frames, write_gif, write_video
from .mesh_data import check_object, mesh_arrays, placed_landmarks, region_vertices
from .rig_keys import apply_rig, clash_message, foreign_keys
from .shape_keys import write_animation

FORCED_PROPERTY = "animateme_fit_forced"   # as the operators record it

MESH_IMPORTERS = {".obj": "obj", ".ply": "ply", ".stl": "stl", ".glb": "gltf", ".gltf": "gltf", ".fbx": "fbx"}
JOB_FIELDS = ("input", "object", "expression", "mix", "transition", "intensity", "timing", "frames",
              "start_frame", "seed", "quality", "variation", "device", "name", "landmarks", "region", "force", "output")


@dataclass
class Job:
    input: str | None = None
    object: str | None = None
    expression: str = "happy"
    mix: str | None = None           # "sad:0.3"
    transition: bool = False
    intensity: float = 1.0
    timing: str = "default"
    frames: int = 40
    start_frame: int = 1
    seed: int = 0
    quality: str = "fast"
    variation: float | None = None   # sampling temperature; None: the quality's default
    device: str = "auto"
    name: str | None = None
    landmarks: object = None         # "nose_tip=12,..." or {name: index}, or "groups"; None: the groups if any
    region: object = None            # a vertex group name, or vertex indices ("0-4999", a list, a file)
    force: bool = False              # use a refused fit anyway
    output: str = "frames"           # frames: a shape key per frame; rig: the ARKit rig and an Action

    def request(self) -> Request:
        return request_from_options(self)

    def fit_options(self, obj) -> FitOptions:
        """Landmarks and region for this job's object: given ones, else its landmark groups."""
        given = None if self.landmarks in (None, "", "groups") else parse_landmarks(self.landmarks)
        region = None
        if self.region not in (None, "", []):
            if isinstance(self.region, str) and obj.vertex_groups.get(self.region) is not None:
                region = region_vertices(obj, self.region)
            else:
                region = parse_indices(self.region)
        landmarks = given if given is not None else placed_landmarks(obj)
        return FitOptions.make(landmarks, region, bool(self.force)).check(len(obj.data.vertices))

    def head(self) -> str:
        if self.input:
            return Path(self.input).stem
        return self.object or "scene"

    def output_name(self) -> str:
        return self.name or f"{self.head()}_{self.request().label}_s{self.seed}"

    def describe(self) -> str:
        return f"{self.head()}, {self.request().label if self._valid() else self.expression}"

    def _valid(self) -> bool:
        try:
            self.request()
            return True
        except AnimateMeError:
            return False


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def job_from_mapping(row: dict, defaults: Job) -> Job:
    unknown = sorted(k for k in row if k not in JOB_FIELDS and row[k] not in (None, ""))
    if unknown:
        raise AnimateMeError(f"unknown job column(s) {', '.join(unknown)}: use {', '.join(JOB_FIELDS)}")
    values = {}
    for key in JOB_FIELDS:
        value = row.get(key)
        if value in (None, ""):
            continue
        if key in ("frames", "start_frame", "seed"):
            value = int(value)
        elif key in ("intensity", "variation"):
            value = float(value)
        elif key in ("transition", "force"):
            value = _bool(value)
        values[key] = value
    return replace(defaults, **values)


def read_job_file(path: str | Path, defaults: Job) -> list[Job]:
    """JSON: a list of jobs, {"jobs": [...]}, or {"inputs": [...], "expressions": [...]} (every head
    x every expression), each with optional "defaults". CSV: one job per row, columns as JSON keys."""
    path = Path(path)
    if not path.is_file():
        raise AnimateMeError(f"job file {path} not found")
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            return [job_from_mapping(row, defaults) for row in rows]
        data = json.loads(path.read_text())
    except (OSError, ValueError, csv.Error) as error:
        raise AnimateMeError(f"cannot read job file {path} ({error}): write JSON or CSV") from None
    if isinstance(data, list):
        data = {"jobs": data}
    if not isinstance(data, dict):
        raise AnimateMeError(f"{path}: expected a JSON list of jobs or an object with 'jobs'")
    base = job_from_mapping(data.get("defaults", {}), defaults)
    jobs = [job_from_mapping(row, base) for row in data.get("jobs", [])]
    heads, expressions = data.get("inputs", []), data.get("expressions", [])
    for head, expression in itertools.product(heads, expressions):
        row = expression if isinstance(expression, dict) else {"expression": expression}
        jobs.append(job_from_mapping({"input": head, **row}, base))
    if not jobs:
        raise AnimateMeError(f"{path} lists no jobs: give 'jobs', or 'inputs' and 'expressions'")
    base_dir = path.parent
    for job in jobs:  # inputs relative to the job file
        if job.input and not Path(job.input).is_absolute():
            job.input = str(base_dir / job.input)
    return jobs


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
    return parser


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
    if obj.library or obj.data.library or obj.override_library or obj.data.override_library:
        raise AnimateMeError(f"object {name!r} is linked from a library: make it local in the .blend first")
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
        from ..core.rig import rig_for_result

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
        from ..core.fit_report import refusal_problem

        obj[FORCED_PROPERTY] = f"refused fit used anyway: {refusal_problem(result.fit.score)}"
    return {**result.timings, "write": time.perf_counter() - started, "device": result.device,
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(script_arguments(argv))
    out = Path(args.out)
    try:
        jobs = jobs_from_args(args)
        out.mkdir(parents=True, exist_ok=True)
        pipeline = Pipeline(args.model, args.template, fit_cache_dir=out / ".fits")
    except AnimateMeError as error:
        print(f"animateme batch: error: {error}", file=sys.stderr)
        return 2
    start_file = bpy.data.filepath
    failures, results = 0, []
    for number, job in enumerate(jobs, 1):
        print(f"[{number}/{len(jobs)}] {job.describe()}", flush=True)
        try:
            result = run_job(job, args, pipeline, start_file, out)
            results.append(result)
            print(f"  wrote {', '.join(Path(v).name for k, v in result.items() if k not in ('job', 'timings'))}",
                  flush=True)
        except Exception as error:  # one failing head must not stop the other ninety-nine
            failures += 1
            text = explain_error(error, "command").strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            if not isinstance(error, AnimateMeError):
                reason = f"{type(error).__name__}: {reason}"
            results.append({"job": job.describe(), "error": reason})
            print(f"animateme batch: error: job {number} ({job.describe()}): {reason}", file=sys.stderr, flush=True)
    (out / "batch_report.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"{len(jobs) - failures} of {len(jobs)} jobs done; report in {out / 'batch_report.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
