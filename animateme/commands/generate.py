"""`animateme generate`: animate a face mesh file headless; `animateme demo`: the README's main job.

    animateme generate --input face.obj --expression happy [--mix sad:0.3] --out DIR [--blend]
    animateme demo [--out runs/demo]

`generate` needs no Blender: it writes `<name>.npz` (per-frame displacements of the input's
vertices, the progression and the signal), an OBJ per frame with `--obj-sequence`, and a preview
GIF drawn by the numpy rasteriser; with `--blend` it also runs the Blender batch (bpy module) for a
.blend and a Cycles-rendered MP4. `demo` builds a sample face from the face model (once, into
data/) and runs the Blender batch on it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.pipeline import add_request_arguments

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

    bench = subparsers.add_parser("bench-generate", help="click-to-keys time, shape-key writes and memory "
                                                         "in Blender (bpy module) on 10k- and 100k-vertex faces")
    bench.add_argument("--model", help="an AnimateMe .onnx (default: models/animateme.onnx)")
    bench.add_argument("--frames", type=int, default=40)
    bench.add_argument("--out", default=None, help="also write the figures as JSON here")
    bench.set_defaults(func=run_bench)


def _generation_options(parser: argparse.ArgumentParser) -> None:
    add_request_arguments(parser)
    parser.add_argument("--model", help="an AnimateMe .onnx (default: models/animateme.onnx)")
    parser.add_argument("--template", help="template.npz (default: data/template.npz)")
    parser.add_argument("--out", required=True, help="output folder")


def _request(args):
    from animateme_blender.core.pipeline import Request, timing_preset

    second, alpha = None, 0.0
    if args.mix:
        label, _, weight = args.mix.partition(":")
        try:
            second, alpha = label.strip().lower(), float(weight) if weight else 0.5
        except ValueError:
            raise AnimateMeError(f"--mix {args.mix!r}: write LABEL:WEIGHT, e.g. sad:0.3") from None
    return Request(expression=args.expression, second=second, mix=0.0 if args.transition else alpha,
                   transition=bool(args.transition and second), intensity=args.intensity,
                   timing=timing_preset(args.timing), frames=args.frames, seed=args.seed,
                   quality=args.quality, variation=args.variation).validate()


def _model_path(args) -> Path:
    return Path(args.model) if args.model else models_dir() / "animateme.onnx"


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from animateme_blender.core.meshio import read_mesh, write_mesh
    from animateme_blender.core.pipeline import Pipeline

    request = _request(args)
    vertices, faces = read_mesh(args.input)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(_model_path(args), args.template or template_path(), fit_cache_dir=data_dir() / "fits")
    name = f"{Path(args.input).stem}_{request.label}_s{request.seed}"
    with tqdm(total=100, desc=f"generate {request.label}", unit="%") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message, refresh=False)
            bar.update(int(100 * fraction) - bar.n)

        result = pipeline.generate(vertices, faces, request, args.device, progress=progress)
    target = out / f"{name}.npz"
    np.savez_compressed(target, displacements=result.displacements, vertices=vertices.astype(np.float32),
                        faces=faces, progression=result.progression, signal=result.signal,
                        request=json.dumps(request.to_dict()), device=result.device)
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
    from animateme_blender.core.meshio import write_obj

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
    from animateme_blender.core.meshio import read_obj

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
    return 0
