"""`animateme bench-rig`: the two outputs side by side on one face — per-frame shape keys (the
sampler's frames carried by the binding) and the ARKit rig (52 personalised shapes + weight
curves) — with the rig's residual per label, the surfaces' roughness, timings and a picture."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from animateme_blender.core.sample.progression import LABELS
from animateme_blender.core.vocabulary import add_fit_arguments

from ..paths import models_dir, template_path
from ..splits import split_arrays


def add_commands(subparsers) -> None:
    bench = subparsers.add_parser("bench-rig", help="frames vs ARKit rig on one face: residual, roughness, picture")
    bench.add_argument("--input", help="a neutral face mesh (OBJ/PLY); default: the built-in sample face")
    add_fit_arguments(bench, region_help="the face's vertex indices (e.g. 0-4999, or a .txt/.json file)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--model", help="ONNX model (default: models/animateme.onnx)")
    bench.add_argument("--picture", default="reports/rig/frames_vs_rig.png")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--corpus", help="also solve held-out ground-truth sequences of this corpus's test.npz "
                                        "(how well 52 shapes can say real motion)")
    bench.add_argument("--sequences", type=int, default=24, help="ground-truth sequences for --corpus")
    bench.add_argument("--seeds", type=int, default=1, help="also measure the roughness (rig / frames at "
                                                            "the apex) at this many seeds from --seed on")
    bench.set_defaults(func=run_bench_rig)


def roughness(vertices: np.ndarray, faces: np.ndarray, displacement: np.ndarray) -> float:
    """|L d| / |d| with L the uniform graph Laplacian of the user's mesh, away from its borders
    (lips, eyelids: a hinge there is the expression, not a lump): how much the motion bends from
    each vertex to its neighbours' mean. Lumps score high; a smooth field scores low."""
    from animateme.evaluation.surface import graph_laplacian
    from animateme_blender.core.geometry import boundary_vertices

    laplacian = graph_laplacian(faces, len(vertices))
    neighbours = abs(laplacian)
    near_border = boundary_vertices(faces, len(vertices))
    for _ in range(BORDER_RINGS):
        near_border |= (neighbours @ near_border.astype(float)) > 0
    inner = ~near_border
    bent = (laplacian @ displacement)[inner]
    return float(np.linalg.norm(bent) / max(np.linalg.norm(displacement[inner]), 1e-30))


BORDER_RINGS = 3


def roughness_ratio(pipeline, vertices, faces, name: str, seed: int, options) -> float:
    """The rig's roughness over the frames' on the mesh, at the frames' apex, for one seed (< 1:
    the rig is the smoother output)."""
    from animateme_blender.core.request import Request
    from animateme_blender.core.rig.build import rig_for_result

    frames = pipeline.generate(vertices, faces, Request(name, seed=seed), options=options)
    in_span = pipeline.generate(vertices, faces, Request(name, seed=seed), options=options, output="rig")
    rig, performance = rig_for_result(pipeline, vertices, faces, in_span, options)
    apex = int(np.argmax(np.linalg.norm(frames.displacements, axis=-1).mean(axis=1)))
    rigged = rig.replay(performance.weights[apex:apex + 1])[0]
    return roughness(vertices, faces, rigged.astype(np.float64)) / \
        roughness(vertices, faces, frames.displacements[apex].astype(np.float64))


def ground_truth_residual(template, corpus: Path, count: int, seed: int) -> dict:
    """{label: (mean rig residual mm, sequences)} on held-out corpus sequences, each solved with the
    shapes personalised to its own subject's neutral: the rig's error on real motion."""
    from animateme_blender.core.rig.arkit import arkit_basis, personalise
    from animateme_blender.core.rig.rig_weights import solve_weights

    data = split_arrays(corpus / "test.npz", ("label_names", "label", "neutral", "deform"))
    names = [str(n) for n in data["label_names"]]
    chosen = np.random.default_rng(seed).choice(len(data["label"]), min(count, len(data["label"])), replace=False)
    picked = [(names[data["label"][s]], data["neutral"][s], data["deform"][s]) for s in chosen]
    generic = arkit_basis(template.expression_modes, template.expression_names)
    found: dict[str, list[float]] = {}
    for label, neutral, deform in picked:
        shapes = personalise(generic, template.vertices, neutral, template.faces)
        found.setdefault(label, []).append(float(solve_weights(shapes, deform).residual_mm.mean()))
    return {label: (float(np.mean(values)), len(values)) for label, values in found.items()}


def run_bench_rig(args: argparse.Namespace) -> int:
    from animateme.render import camera_frame, label, render_mesh, save_png, strip
    from animateme.meshio import read_mesh
    from animateme_blender.core.pipeline import Pipeline
    from animateme_blender.core.request import Request
    from animateme_blender.core.rig.build import perform

    from .generate import _fit_options, sample_face

    face = Path(args.input) if args.input else sample_face()
    vertices, faces = read_mesh(face)
    options = _fit_options(args, len(vertices))
    pipeline = Pipeline(args.model or models_dir() / "animateme.onnx", template_path())
    pipeline.generate(vertices, faces, Request("happy", frames=3), options=options)   # fit once, untimed
    registered, _ = pipeline.register(vertices, faces, options=options)
    mm_per_unit = 1.0 / registered.fit.transform.scale
    started = time.perf_counter()
    rig = pipeline.face_rig(registered, len(vertices), options)   # the one the rig output samples with
    template = pipeline.template
    figures = {"face": str(face), "vertices": int(len(vertices)), "rig_build_s": time.perf_counter() - started,
               "labels": {}}
    # Frame the part that moves (the face), not the whole head: lumps and creases show at this size.
    moving = np.linalg.norm(rig.shapes, axis=-1).max(axis=0) > 0.05 * np.linalg.norm(rig.shapes, axis=-1).max()
    frame = camera_frame(vertices[moving])
    rows = []
    for name in LABELS:
        result = pipeline.generate(vertices, faces, Request(name, seed=args.seed), options=options)
        started = time.perf_counter()
        in_span = pipeline.generate(vertices, faces, Request(name, seed=args.seed), options=options, output="rig")
        rig_sample_s = time.perf_counter() - started
        started = time.perf_counter()
        performance = perform(rig, in_span.template_deform)
        performance.weights[in_span.progression <= 0] = 0.0
        solve_s = time.perf_counter() - started
        free = perform(rig, result.template_deform)      # the free clip solved afterwards, as before
        replayed = rig.replay(performance.weights)
        motion = np.linalg.norm(result.displacements, axis=-1).mean(axis=1) * mm_per_unit
        apex = int(np.argmax(motion))
        gap = np.linalg.norm(replayed - result.displacements, axis=-1).mean(axis=1) * mm_per_unit
        top = np.argsort(-performance.weights[apex])[:3]
        figures["labels"][name] = {
            "template_residual_mm": float(performance.residual_mm.mean()),
            "template_residual_apex_mm": float(performance.residual_mm[apex]),
            "free_clip_residual_mm": float(free.residual_mm.mean()),
            "free_clip_gap_mm": float(np.linalg.norm(in_span.template_deform - result.template_deform,
                                                     axis=-1).mean()),
            "rig_sample_s": rig_sample_s,
            "apex_motion_mm": float(motion[apex]),
            "mesh_gap_apex_mm": float(gap[apex]),
            "roughness_frames": roughness(vertices, faces, result.displacements[apex].astype(np.float64)),
            "roughness_rig": roughness(vertices, faces, replayed[apex].astype(np.float64)),
            # on the template, where the sampler's noise lives (7 mm edges; the mesh above has ~2 mm)
            "template_roughness_frames": roughness(template.vertices, template.faces,
                                                   result.template_deform[apex].astype(np.float64)),
            "template_roughness_rig": roughness(template.vertices, template.faces,
                                                np.einsum("s,svc->vc", performance.weights[apex].astype(np.float64),
                                                          rig.template_shapes)),
            "solve_s": solve_s,
            "top_shapes": {rig.names[i]: round(float(performance.weights[apex, i]), 2) for i in top},
        }
        size = (300, 300)
        rows += [label(render_mesh(vertices, faces, size=size, frame=frame), "neutral"),
                 label(render_mesh(vertices + result.displacements[apex], faces, size=size, frame=frame),
                       f"{name}: frames"),
                 label(render_mesh(vertices + replayed[apex], faces, size=size, frame=frame), f"{name}: ARKit rig")]
    picture = save_png(strip(rows, columns=6), args.picture)
    figures["picture"] = str(picture)
    if args.seeds > 1:
        # --seed's own ratio is in the table above; the others sample their clips again.
        more = range(args.seed + 1, args.seed + args.seeds)
        figures["roughness_ratio_by_seed"] = {
            name: [f["roughness_rig"] / f["roughness_frames"]] +
                  [roughness_ratio(pipeline, vertices, faces, name, seed, options) for seed in more]
            for name, f in figures["labels"].items()}
    if args.corpus:
        figures["ground_truth"] = ground_truth_residual(template, Path(args.corpus), args.sequences, args.seed)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{figures['vertices']} vertices; rig built in {figures['rig_build_s']:.2f} s")
        print("resid: the rig's weights vs the clip sampled in its span, on the template (mean over frames, "
              "apex); free: a free clip (frames output, same seed) solved afterwards, and its mean distance "
              "to the rig's clip; gap: rig vs frames on the mesh at apex; roughness |Ld|/|d| at apex on the "
              "mesh and on the template (frames/rig); sample s: the rig's clip")
        print(f"{'label':9} {'resid mm':>9} {'apex':>6} {'free':>6} {'apart':>6} {'motion':>7} {'gap':>6} "
              f"{'rough mesh':>13} {'rough template':>15} {'sample s':>9} {'solve s':>8}  top shapes at apex")
        for name, f in figures["labels"].items():
            print(f"{name:9} {f['template_residual_mm']:9.3f} {f['template_residual_apex_mm']:6.3f} "
                  f"{f['free_clip_residual_mm']:6.3f} {f['free_clip_gap_mm']:6.3f} "
                  f"{f['apex_motion_mm']:7.2f} {f['mesh_gap_apex_mm']:6.3f} "
                  f"{f['roughness_frames']:6.4f}/{f['roughness_rig']:6.4f} "
                  f"{f['template_roughness_frames']:7.3f}/{f['template_roughness_rig']:5.3f} "
                  f"{f['rig_sample_s']:9.2f} {f['solve_s']:8.2f}  {f['top_shapes']}")
    if args.corpus and not args.json:
        for name, (residual, count) in figures["ground_truth"].items():
            print(f"ground truth {name:9} rig residual {residual:.3f} mm mean over {count} held-out sequences")
    if "roughness_ratio_by_seed" in figures and not args.json:
        for name, ratios in figures["roughness_ratio_by_seed"].items():
            print(f"roughness rig / frames {name:9} " + " ".join(f"{r:.3f}" for r in ratios) +
                  f"  (seeds {args.seed}-{args.seed + args.seeds - 1})")
    if not args.json:   # --json prints one JSON document, the picture's path inside it
        print(f"picture: {picture}")
    return 0
