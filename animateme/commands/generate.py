"""`animateme generate`: animate a face mesh file headless; `animateme demo`: the README's main job.

    animateme generate --input face.obj --expression happy [--mix sad:0.3] --out DIR [--blend]
        [--landmarks nose_tip=12,mouth_left=40,mouth_right=77] [--region 0-4999] [--force]
    animateme demo [--out runs/demo]
    animateme fit-preview --input scan.obj [--landmarks ...] [--region 0-4999] --out picture.png

`generate` needs no Blender: it writes `<name>.npz` (per-frame displacements of the input's
vertices, the progression and the signal), an OBJ per frame with `--obj-sequence`, and a preview
GIF drawn by the numpy rasteriser; with `--blend` it also runs the Blender batch (bpy module) for a
.blend and a Cycles-rendered MP4. `demo` builds a sample face from the face model (once, into
data/) and runs the Blender batch on it. `fit-preview` runs the panel's Fit (landmarks as vertex
groups, as an artist places them) on a mesh file and renders what the artist sees: the fit preview
wire and the landmark markers over the mesh (Workbench, headless), front and three-quarter.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.vocabulary import add_fit_arguments, add_request_arguments, explain_error

from ..paths import data_dir, models_dir, template_path

SAMPLE_FACE = "sample_face.obj"
SAMPLE_IDENTITY_SEED = 7


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="animate a neutral face mesh file (no UI)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="neutral face mesh (.obj or .ply; any units and axes)")
    _generation_options(parser)
    parser.add_argument("--obj-sequence", action="store_true", help="also write one OBJ per frame")
    parser.add_argument("--blend", action="store_true",
                        help="also write a .blend and an MP4 through Blender (the bpy module)")
    parser.add_argument("--no-preview", action="store_true", help="skip the preview GIF")
    parser.set_defaults(func=run_generate)

    demo = subparsers.add_parser("demo", help="the main job: animate a built-in sample face, write a .blend "
                                              "and a preview video")
    demo.add_argument("--out", default="runs/demo", help="output folder")
    demo.add_argument("--expression", default="happy")
    demo.add_argument("--mix", help="second expression and weight, e.g. surprise:0.3")
    demo.add_argument("--frames", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--resolution", type=int, default=320)
    demo.add_argument("--samples", type=int, default=8)
    demo.add_argument("--model", help="an AnimateMe .onnx (default: models/animateme.onnx)")
    demo.set_defaults(func=run_demo)

    picture = subparsers.add_parser("fit-preview", help="render the panel's fit preview and landmark markers "
                                                        "over a mesh file (bpy module, headless)")
    picture.add_argument("--input", required=True, help="a face mesh (.obj)")
    add_fit_arguments(picture, region_help="the face's vertex indices (e.g. 0-4999, or a .txt/.json file)")
    picture.add_argument("--out", required=True, help="PNG to write")
    picture.add_argument("--size", type=int, default=512, help="pixels per view")
    picture.set_defaults(func=run_fit_preview)

    bench = subparsers.add_parser("bench-generate", help="click-to-keys time, shape-key writes and memory "
                                                         "in Blender (bpy module) on 10k- and 100k-vertex faces")
    bench.add_argument("--model", help="an AnimateMe .onnx (default: models/animateme.onnx)")
    bench.add_argument("--frames", type=int, default=40)
    bench.add_argument("--out", default=None, help="also write the figures as JSON here")
    bench.add_argument("--record", action="store_true", help="also write this run's figures into reports/performance.md (the one performance table)")
    bench.set_defaults(func=run_bench)


def _generation_options(parser: argparse.ArgumentParser) -> None:
    add_request_arguments(parser)
    add_fit_arguments(parser, region_help="the face's vertex indices (e.g. 0-4999,5100, or a .txt/.json file of "
                                          "them): only they are fitted and animated, the rest stays still")
    parser.add_argument("--model", help="an AnimateMe .onnx (default: models/animateme.onnx)")
    parser.add_argument("--template", help="template.npz (default: data/template.npz)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--fps", type=float, default=24.0, help="frame rate of the --output rig glTF animation")


def _request(args):
    from animateme_blender.core.request import request_from_options

    return request_from_options(args)


def _fit_options(args, vertex_count: int):
    from animateme_blender.core.fit.fit_options import FitOptions
    from animateme_blender.core.vocabulary import parse_indices, parse_landmarks

    return FitOptions.make(parse_landmarks(args.landmarks), parse_indices(args.region),
                           bool(args.force)).check(vertex_count)


def _write_rig(pipeline, vertices, faces, result, options, target: Path, fps: float) -> None:
    """--output rig: the 52 ARKit shapes on the input mesh and the clip as their weights, as a .glb
    (metres: the fit knows the mesh's unit) plus the weights and the rig's residual in the .npz."""
    from animateme.gltf import export_rig
    from animateme_blender.core.rig.build import rig_for_result

    rig, performance = rig_for_result(pipeline, vertices, faces, result, options)
    metres_per_unit = 0.001 / float(result.fit.transform.scale)
    export_rig(rig, performance.weights, vertices, faces, target, metres_per_unit, fps=fps, name=target.stem)
    np.savez_compressed(target.with_suffix(".npz"), weights=performance.weights, names=np.array(rig.names),
                        residual_mm=performance.residual_mm, progression=result.progression)
    apex = int(np.argmax(result.progression))
    print(f"wrote {target} (52 ARKit morph targets, {len(performance.weights)} frames at {fps:g} fps); "
          f"rig residual {performance.residual_mm.mean():.2f} mm mean, {performance.residual_mm[apex]:.2f} mm "
          f"at the apex (template, vs the generated frames)")


def _model_path(args) -> Path:
    return Path(args.model) if args.model else models_dir() / "animateme.onnx"


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from animateme.meshio import read_mesh, write_mesh
    from animateme_blender.core.pipeline import Pipeline

    request = _request(args)
    vertices, faces = read_mesh(args.input)
    options = _fit_options(args, len(vertices))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(_model_path(args), args.template or template_path(), fit_cache_dir=data_dir() / "fits")
    name = f"{Path(args.input).stem}_{request.label}_s{request.seed}"
    with tqdm(total=100, desc=f"generate {request.label}", unit="%") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message, refresh=False)
            bar.update(int(100 * fraction) - bar.n)

        try:
            result = pipeline.generate(vertices, faces, request, args.device, progress=progress, options=options,
                                           output=args.output)
        except AnimateMeError as error:
            raise AnimateMeError(explain_error(error, "command")) from None
    if result.forced:
        print(f"warning: the fit was refused and is used anyway (--force): check {name}.gif")
    if args.output == "rig":
        _write_rig(pipeline, vertices, faces, result, options, out / f"{name}_arkit.glb", args.fps)
    if result.folds_left:        # after the rig: its shapes' folds are counted too
        print(f"warning: {result.folds_left} triangles of the mesh still turn over at the worst frame "
              f"(the motion folds in many places, not only at a corner): check {name}.gif up close")
    target = out / f"{name}.npz"
    np.savez_compressed(target, displacements=result.displacements, vertices=vertices.astype(np.float32),
                        faces=faces, progression=result.progression, signal=result.signal,
                        request=json.dumps(request.to_dict()), device=result.device, forced=result.forced)
    print(f"wrote {target} ({request.frames} frames, {len(vertices)} vertices, {result.device}, "
          f"fit {'cached' if result.fit_cached else 'new'}, "
          + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()) + ")")
    if args.obj_sequence:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(result.displacements):
            write_mesh(folder / f"frame_{k + 1:03d}.obj", vertices + frame, faces)
        print(f"wrote {folder}/frame_001..{request.frames:03d}.obj")
    if not args.no_preview:
        print(f"wrote {preview_gif(vertices, faces, result.displacements, out / f'{name}.gif')}")
    if args.blend:
        from animateme_blender.blender import batch

        argv = ["--input", str(args.input), "--expression", args.expression, "--frames", str(args.frames),
                "--seed", str(args.seed), "--intensity", str(args.intensity), "--timing", args.timing,
                "--quality", args.quality, "--device", args.device, "--out", str(out),
                "--model", str(_model_path(args))]
        if args.variation is not None:
            argv += ["--variation", str(args.variation)]
        if args.mix:
            argv += ["--mix", args.mix] + (["--transition"] if args.transition else [])
        if args.template:
            argv += ["--template", args.template]
        if args.landmarks:
            argv += ["--landmarks", args.landmarks]
        if args.region:
            argv += ["--region", args.region]
        if args.force:
            argv += ["--force"]
        return batch.main(argv)
    return 0


def preview_gif(vertices, faces, displacements, target: Path, size: int = 256) -> Path:
    """Front view of every frame with the numpy rasteriser (the input's own up axis assumed +Y)."""
    from animateme.render import camera_frame, render_mesh, save_gif

    frame = camera_frame(vertices)
    images = [render_mesh(vertices + d, faces, size=(size, size), frame=frame) for d in displacements]
    return save_gif(images, target)


def sample_face(path: Path | None = None) -> Path:
    """The built-in sample face: a face-model identity (fixed seed) on the face model's own skin
    mesh, in metres and +Y up (an OBJ like any DCC exports). Built once into data/ (never committed)."""
    from animateme.facemodel import load_face_model

    path = Path(path) if path else data_dir() / SAMPLE_FACE
    if path.exists():
        return path
    from animateme.meshio import write_obj

    model = load_face_model()
    rng = np.random.default_rng(SAMPLE_IDENTITY_SEED)
    weights = rng.normal(0.0, 0.8, size=len(model.identity_modes)).astype(np.float32)
    vertices_cm = model.neutral + np.tensordot(weights, model.identity_modes, axes=1)
    triangles = model.skin_triangles()
    used, faces = np.unique(triangles, return_inverse=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_obj(path, vertices_cm[used] * 0.01, faces.reshape(-1, 3))  # cm -> m
    return path


def run_demo(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else models_dir() / "animateme.onnx"
    if not model.exists():
        raise AnimateMeError(f"no model at {model}: train and export it first (make run does), or pass --model")
    face = sample_face()
    out = Path(args.out)
    print(f"sample face: {face}")
    from animateme_blender.blender import batch

    argv = ["--input", str(face), "--expression", args.expression, "--frames", str(args.frames),
            "--seed", str(args.seed), "--out", str(out), "--resolution", str(args.resolution),
            "--samples", str(args.samples), "--model", str(model), "--name", "demo"]
    if args.mix:
        argv += ["--mix", args.mix]
    started = time.perf_counter()
    code = batch.main(argv)
    if code == 0:
        print(f"demo done in {time.perf_counter() - started:.0f} s: open {out / 'demo.blend'} in Blender "
              f"(press Space to play) or watch {out / 'demo.mp4'}")
    return code


def bench_faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The sample face at its own ~9.4k vertices, and subdivided twice (~150k): metres, Y up."""
    from animateme.remesh import subdivide
    from animateme.meshio import read_obj

    vertices, faces = read_obj(sample_face())
    big_v, big_f = vertices, faces
    while len(big_v) < 100_000:
        big_v, big_f, _ = subdivide(big_v, big_f)
    return {"10k": (vertices, faces), "100k": (big_v, big_f)}


def run_bench(args: argparse.Namespace) -> int:
    """Times what an artist waits for: the click on Generate Expression until the keys exist."""
    import resource
    import tempfile

    model = _model_path(args)
    if not model.exists():
        raise AnimateMeError(f"no model at {model}: train and export it first, or pass --model")
    import os

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="animateme-bench-"))
    if model.name != "animateme.onnx":
        raise AnimateMeError(f"{model}: the benchmark needs the model file named animateme.onnx")
    os.environ["ANIMATEME_MODELS_DIR"] = str(model.parent)  # what the operator's default path reads
    import bpy

    import animateme_blender
    from animateme_blender.blender import operators, shape_keys
    from animateme_blender.core.frames import face_model_to_blender

    faces_by_size = bench_faces()
    animateme_blender.register()
    rows = []
    try:
        for size, (vertices, faces) in faces_by_size.items():
            bpy.ops.wm.read_homefile(use_empty=True)
            mesh = bpy.data.meshes.new(f"face{size}")
            mesh.from_pydata(face_model_to_blender(vertices).tolist(), [], faces.tolist())
            obj = bpy.data.objects.new(f"face{size}", mesh)
            bpy.context.scene.collection.objects.link(obj)
            obj.select_set(True)
            bpy.context.view_layer.objects.active = obj
            settings = bpy.context.scene.animateme
            settings.frames, settings.quality = args.frames, "FAST"
            for cached in (False, True):
                started = time.perf_counter()
                result = bpy.ops.animateme.generate()
                elapsed = time.perf_counter() - started
                if result != {"FINISHED"}:
                    raise AnimateMeError(f"generation failed on the {size} face")
                stages = {f"{k}_s": round(v, 3) for k, v in operators.last_run.items()
                          if k in ("register", "sample", "transfer", "write")}
                rows.append({"face": size, "vertices": len(vertices), "fit": "cached" if cached else "new",
                             "click_to_keys_s": round(elapsed, 3), **stages,
                             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
            deform = np.random.default_rng(0).normal(0, 1e-3, (args.frames, len(vertices), 3)).astype(np.float32)
            started = time.perf_counter()
            shape_keys.write_animation(obj, deform, np.linspace(0, 1, args.frames), "bench", 1)
            rows[-1]["key_write_s"] = round(time.perf_counter() - started, 3)
    finally:
        animateme_blender.unregister()
    print(f"{'face':>5} {'vertices':>9} {'fit':>7} {'click-to-keys':>14} {'register':>9} {'sample':>7} "
          f"{'transfer':>9} {'keys':>6} {'40-key write':>13} {'peak RSS':>9}")
    for row in rows:
        write = f"{row['key_write_s']:.3f} s" if "key_write_s" in row else ""
        print(f"{row['face']:>5} {row['vertices']:>9} {row['fit']:>7} {row['click_to_keys_s']:>12.2f} s "
              f"{row.get('register_s', 0):>7.2f} s {row.get('sample_s', 0):>5.2f} s {row.get('transfer_s', 0):>7.2f} s "
              f"{row.get('write_s', 0):>4.2f} s {write:>13} {row['peak_rss_mb']:>6} MB")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"frames": args.frames, "model": str(model), "rows": rows}, indent=1))
    if args.record:
        from animateme.performance import record

        table = [[r["vertices"], r["fit"], r["click_to_keys_s"], r.get("register_s", 0.0), r.get("sample_s", 0.0),
                  r.get("transfer_s", 0.0), r.get("write_s", 0.0), r["peak_rss_mb"]] for r in rows]
        print("wrote " + str(record("generation", ["vertices", "fit", "click to keys s", "register s", "sample s",
                                                   "transfer s", "keys s", "peak RSS MB"], table)))
    return 0


def run_fit_preview(args: argparse.Namespace) -> int:
    """The Fit button on a mesh file, rendered: the scan grey, the fitted template's wire green,
    the landmark markers red; the score lines printed."""
    import os
    import tempfile

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="animateme-picture-"))
    import bpy

    import animateme_blender
    from animateme_blender.blender import fit_preview, landmarks as landmark_ui, overlay
    from animateme_blender.core.vocabulary import landmark_group, parse_indices, parse_landmarks

    placed = parse_landmarks(args.landmarks) or {}
    region = parse_indices(args.region)
    animateme_blender.register()
    try:
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.wm.obj_import(filepath=str(args.input))
        obj = next(o for o in bpy.context.scene.objects if o.type == "MESH")
        for other in bpy.context.view_layer.objects:
            other.select_set(other == obj)
        bpy.context.view_layer.objects.active = obj
        for name, index in placed.items():        # what Set Landmark writes
            obj.vertex_groups.new(name=landmark_group(name)).add([index], 1.0, "REPLACE")
        settings = bpy.context.scene.animateme
        if region is not None:
            obj.vertex_groups.new(name="Face").add(region, 1.0, "REPLACE")
            settings.face_region = "Face"
        if bpy.ops.animateme.fit() != {"FINISHED"}:
            raise AnimateMeError("the fit failed: see the message above")
        landmark_ui.refresh_markers(obj)
        report = fit_preview.fit_reports[obj.name]
        print(report["verdict"])
        for ok, words in report["lines"]:
            print(f"  {'ok ' if ok else 'BAD'} {words}")
        preview = overlay.fit_preview(obj.name)
        images = [_render_view(obj, preview, angle, args.size) for angle in (0.0, 35.0)]
    finally:
        animateme_blender.unregister()
    from PIL import Image

    sheet = Image.new("RGB", (2 * args.size, args.size))
    for k, image in enumerate(images):
        sheet.paste(Image.open(image).convert("RGB"), (k * args.size, 0))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")
    return 0


def _render_view(obj, preview, angle_deg: float, size: int) -> str:
    """Workbench, orthographic, around the fitted template, turned `angle_deg` about the up axis."""
    import tempfile

    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    wire = preview.modifiers.get("Wire") or preview.modifiers.new("Wire", "WIREFRAME")
    points = [preview.matrix_world @ Vector(c) for c in preview.bound_box]
    low = Vector((min(p.x for p in points), min(p.y for p in points), min(p.z for p in points)))
    high = Vector((max(p.x for p in points), max(p.y for p in points), max(p.z for p in points)))
    extent = max(high - low)
    wire.thickness = 0.0025 * extent
    centre = (low + high) / 2
    camera = scene.camera
    if camera is None:
        camera = bpy.data.objects.new("Picture Camera", bpy.data.cameras.new("Picture Camera"))
        scene.collection.objects.link(camera)
        scene.camera = camera
    camera.data.type, camera.data.ortho_scale = "ORTHO", extent * 1.1
    camera.data.clip_end = extent * 50
    angle = np.radians(angle_deg)
    distance = extent * 5
    camera.location = centre + Vector((distance * np.sin(angle), -distance * np.cos(angle), 0.0))
    camera.rotation_euler = (np.pi / 2, 0.0, angle)
    obj.color = (0.78, 0.76, 0.74, 1.0)
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "OBJECT"
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    path = tempfile.mkdtemp(prefix="animateme-view-") + "/view.png"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    return path
