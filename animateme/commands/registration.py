"""`animateme register`, `animateme transfer`, `animateme bench-register`.

    animateme register FACE.obj --out FIT.npz [--landmarks nose_tip=123,chin=456] [--picture FIT.png]
    animateme transfer FACE.obj --frames FRAMES.npz --out OUT.npz [--fit FIT.npz] [--obj-sequence DIR]
    animateme bench-register [--subjects 3] [--sizes 2000,10000,50000,100000] [--out reports]

`register` writes the fitted template (template topology, in the input's own coordinates and
units), the similarity to the template frame and the score. `transfer` carries per-frame template
deformations (`deform` (K,V,3) mm, e.g. the sampler's output) onto the mesh's own vertices.
`bench-register` measures the registration on held-out face-model subjects remeshed to other
topologies, in random poses and units, and on a procedural head no face model made.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

from ..paths import data_dir, reports_dir, template_path

# Expressions for the transfer figure: ARKit-named shapes of the face model and their weights.
BENCH_EXPRESSIONS = {
    "smile": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.5, "cheekSquint_R": 0.5},
    "surprise": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0,
                 "eyeWide_L": 0.5, "eyeWide_R": 0.5, "jawOpen": 0.3},
    "jaw_open": {"jawOpen": 0.6},
    "blink": {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0},
}
# Units of the benchmark meshes: a scale from mm, cycled over the cases ("arbitrary" is random).
UNITS = (("mm", 1.0), ("m", 0.001), ("cm", 0.1), ("arbitrary", None))
# Face-model materials making the benchmark head: face skin, back of head, neck, mouth/eye sockets.
BENCH_MATERIALS = ("M_Face", "M_BackHead")


def add_commands(subparsers) -> None:
    register = subparsers.add_parser("register", help="fit the template to a neutral face mesh",
                                     description=__doc__.split("\n\n")[0])
    register.add_argument("input", help="neutral face mesh (.obj or .ply; any units, axes, topology)")
    register.add_argument("--out", required=True, help="FIT.npz to write")
    _fit_options(register)
    register.add_argument("--picture", help="also render the fit to this PNG")
    register.set_defaults(func=run_register)

    transfer = subparsers.add_parser("transfer", help="apply template frames to a face mesh's own vertices")
    transfer.add_argument("input", help="the neutral face mesh the frames should move")
    transfer.add_argument("--frames", required=True, help=".npz with `deform` (K,V,3) template mm")
    transfer.add_argument("--out", required=True, help=".npz to write: displacements (K,N,3), vertices, faces")
    transfer.add_argument("--fit", help="FIT.npz from `animateme register` (else fitted now, cached)")
    transfer.add_argument("--obj-sequence", help="also write one OBJ per frame into this folder")
    _fit_options(transfer)
    transfer.set_defaults(func=run_transfer)

    bench = subparsers.add_parser("bench-register", help="measure registration and transfer accuracy and time")
    bench.add_argument("--subjects", type=int, default=3, help="held-out subjects (identity seeds)")
    bench.add_argument("--sizes", default="2000,10000,50000,100000", help="remeshed vertex counts")
    bench.add_argument("--seed", type=int, default=2026, help="subject i has identity weights "
                       "default_rng([seed, i]).standard_normal(M), never used by the corpus")
    bench.add_argument("--template", help="template.npz (default: data/template.npz)")
    bench.add_argument("--face-model", help="ict_facekit.npz or a FaceXModel folder")
    bench.add_argument("--out", help="folder for registration_bench.{json,md} and the picture (default: reports/)")
    bench.set_defaults(func=run_bench)


def _fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", help="template.npz (default: data/template.npz)")
    parser.add_argument("--landmarks", help="name=vertex,... from " + ", ".join(_landmark_names()))
    parser.add_argument("--no-refine", action="store_true", help="model fit only, no refinement")
    parser.add_argument("--force", action="store_true", help="use the fit even when its score is below threshold")


def _landmark_names():
    from animateme_blender.core.registration import LANDMARK_NAMES

    return sorted(LANDMARK_NAMES)


def _parse_landmarks(text: str | None) -> dict | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, index = item.partition("=")
        try:
            out[name.strip()] = int(index)
        except ValueError:
            raise AnimateMeError(f"--landmarks {item!r}: write name=vertex_index, e.g. nose_tip=123") from None
    return out


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%")

    def progress(fraction: float, message: str) -> None:
        bar.set_postfix_str(message, refresh=False)
        bar.update(max(0, int(100 * fraction) - bar.n))
    return bar, progress


def _fit(args, vertices, faces, template):
    from animateme_blender.core.registration import FitCache

    bar, progress = _progress_bar("register")
    try:
        fit, cached = FitCache(data_dir() / "fits").fit(
            vertices, faces, template, landmarks=_parse_landmarks(args.landmarks), refine=not args.no_refine,
            require_face=not args.force, progress=progress)
    finally:
        bar.close()
    return fit, cached


def run_register(args: argparse.Namespace) -> int:
    from animateme_blender.core.meshio import read_mesh
    from animateme_blender.core.template import Template

    template = Template.load(args.template or template_path())
    vertices, faces = read_mesh(args.input)
    fit, cached = _fit(args, vertices, faces, template)
    path = fit.save(args.out)
    print(f"wrote {path}: {len(fit.vertices)} template vertices in the input's frame, {fit.score.describe()}, "
          f"refined residual {fit.score.refined_residual_mm:.2f} mm, scale {fit.transform.scale:.4g} "
          f"input units per mm{' (cached fit)' if cached else ''}")
    if args.picture:
        print(f"wrote {save_fit_picture(vertices, faces, fit, args.picture, Path(args.input).name)}")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    from animateme_blender.core.meshio import read_mesh, write_mesh
    from animateme_blender.core.registration import Fit
    from animateme_blender.core.template import Template
    from animateme_blender.core.transfer import bind

    template = Template.load(args.template or template_path())
    vertices, faces = read_mesh(args.input)
    try:
        with np.load(args.frames, allow_pickle=False) as data:
            key = "deform" if "deform" in data.files else "frames" if "frames" in data.files else None
            if key is None:
                raise AnimateMeError(f"{args.frames} has no `deform` array (K,V,3) of template deformations")
            deform = data[key]
    except (OSError, ValueError) as error:
        raise AnimateMeError(f"cannot read {args.frames} ({error}): give an .npz with `deform` (K,V,3)") from None
    if args.fit:
        fit = Fit.load(args.fit)
        template.check_fingerprint(fit.template_fingerprint, args.fit)
    else:
        fit, _ = _fit(args, vertices, faces, template)
    displacements = bind(fit, vertices, faces).apply(deform)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, displacements=displacements, vertices=vertices.astype(np.float32), faces=faces)
    print(f"wrote {out}: {len(displacements)} frames x {len(vertices)} vertices")
    if args.obj_sequence:
        folder = Path(args.obj_sequence)
        folder.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(displacements):
            write_mesh(folder / f"frame_{k + 1:03d}.obj", vertices + frame, faces)
        print(f"wrote {folder}/frame_001..{len(displacements):03d}.obj")
    return 0


# ---------------------------------------------------------------------------------------------
# Pictures
def save_fit_picture(vertices, faces, fit, path, title: str = "") -> Path:
    """Input (grey), the fitted template over it coloured by its distance to the input surface
    (0-2 mm, dark to light), and the fitted template alone; views in the template frame."""
    from scipy.spatial import cKDTree

    from animateme.render import BACKGROUND, heat_colors, label, render_mesh, save_png, strip
    from animateme_blender.core.registration import vertex_normals

    user = fit.transform.inverse(np.asarray(vertices, dtype=np.float64))     # template frame, mm
    shape = np.asarray(fit.template_space, dtype=np.float64)
    template_faces = np.asarray(fit.template_faces)
    user_normals = vertex_normals(user, np.asarray(faces))
    _, nearest = cKDTree(user).query(shape)
    # Point-to-plane: the distance to the input's surface, not to its nearest vertex.
    distance = np.abs(((shape - user[nearest]) * user_normals[nearest]).sum(1))
    lifted = shape + 0.6 * vertex_normals(shape, template_faces)             # above the input: no z-fight
    both = np.concatenate([user, lifted])
    both_faces = np.concatenate([np.asarray(faces), template_faces + len(user)])
    colors = np.concatenate([np.full((len(user), 3), 0.82), heat_colors(distance, vmax=2.0)])
    frame = (shape.mean(0), float(np.ptp(shape, axis=0).max()) * 0.6)
    images = [label(render_mesh(user, faces, view=v, size=(260, 260), frame=frame), f"input {v}")
              for v in ("front", "side")]
    images += [label(render_mesh(both, both_faces, colors, view=v, size=(260, 260), frame=frame), f"fit {v}")
               for v in ("front", "three_quarter", "side")]
    images.append(label(render_mesh(shape, template_faces, view="front", size=(260, 260), frame=frame),
                        "fitted template"))
    picture = strip(images, columns=3)
    if title:
        banner = np.full((18, picture.shape[1], 3), BACKGROUND, dtype=np.uint8)
        picture = np.concatenate([label(banner, f"{title}: {fit.score.describe()}"), picture])
    return save_png(picture, path)


# ---------------------------------------------------------------------------------------------
# Benchmark
def bench_case(model_arrays: dict, template, subject: int, size: int, seed: int, unit_index: int) -> dict:
    """One held-out subject, remeshed to `size` vertices, in a random pose and unit: fit, bind,
    and compare with the exact correspondence the remesher keeps."""
    from scipy.spatial.transform import Rotation

    from animateme.remesh import remesh
    from animateme_blender.core.registration import fit_template
    from animateme_blender.core.transfer import bind

    rng = np.random.default_rng([seed, subject])
    weights = rng.standard_normal(model_arrays["identity_modes"].shape[0])
    head = model_arrays["head"]
    subject_mm = model_arrays["neutral"] + np.tensordot(weights, model_arrays["identity_modes"], axes=1)
    vertices, faces, correspondence = remesh(subject_mm, model_arrays["faces"], size)
    pose = np.random.default_rng([seed, subject, size])
    rotation = Rotation.random(random_state=int(pose.integers(1 << 31))).as_matrix()
    unit, scale = UNITS[unit_index % len(UNITS)]
    if scale is None:
        scale = float(np.exp(pose.uniform(np.log(0.02), np.log(50.0))))
    translation = pose.normal(0.0, 300.0, 3) * scale
    user = scale * vertices @ rotation.T + translation
    user_before = user.copy()
    start, cpu_start = time.perf_counter(), time.process_time()
    fit = fit_template(user, faces, template)
    fit_seconds = time.perf_counter() - start
    binding = bind(fit, user, faces)
    total_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    assert np.array_equal(user, user_before), "the registration modified its input"

    back = ((fit.vertices - translation) @ rotation) / scale                 # face-model frame, mm
    truth = subject_mm[np.asarray(template.source_index)]
    error = np.linalg.norm(back - truth, axis=1)
    skin = np.asarray(correspondence[:, head["skin_end"]:].sum(axis=1)).ravel() < 1e-9
    transfer = {}
    for name, shapes in BENCH_EXPRESSIONS.items():
        delta = sum(w * model_arrays["expression_modes"][model_arrays["expression_names"].index(k)]
                    for k, w in shapes.items())
        moved = binding.apply(delta[np.asarray(template.source_index)][None])[0]
        moved_mm = (moved @ rotation) / scale
        expected = correspondence @ delta
        err = np.linalg.norm(moved_mm - expected, axis=1)
        transfer[name] = {"mean_skin_mm": float(err[skin].mean()), "mean_all_mm": float(err.mean()),
                          "p95_skin_mm": float(np.percentile(err[skin], 95)),
                          "motion_skin_mm": float(np.linalg.norm(expected[skin], axis=1).mean())}
    return {
        "subject": subject, "vertices": int(len(vertices)), "unit": unit, "scale": scale,
        "fit_mean_mm": float(error.mean()), "fit_p95_mm": float(np.percentile(error, 95)),
        "fit_max_mm": float(error.max()), "errors_mm": error.astype(np.float32),
        "transfer": transfer, "fit_seconds": fit_seconds, "fit_and_bind_seconds": total_seconds,
        "fit_and_bind_cpu_seconds": cpu_seconds, "load_average": os.getloadavg()[0],
        "score_residual_mm": fit.score.residual_mm, "score_coverage": fit.score.coverage,
        "score_identity": fit.score.identity_norm, "score_nose_mm": fit.score.nose_mm,
        "accepted": bool(fit.score.accepted),
    }


def load_bench_model(path=None) -> dict:
    """Face-model arrays for the benchmark head, in mm."""
    from animateme.facemodel import load_face_model, triangulate

    model = load_face_model(path)
    materials = list(model.materials)
    keep = np.isin(model.face_material, [materials.index(m) for m in BENCH_MATERIALS])
    faces = triangulate(model.faces[keep])
    count = int(faces.max()) + 1
    return {
        "neutral": model.neutral[:count].astype(np.float64) * 10.0,
        "identity_modes": model.identity_modes[:, :count].astype(np.float64) * 10.0,
        "expression_modes": model.expression_modes[:, :count].astype(np.float64) * 10.0,
        "expression_names": list(model.expression_names),
        "faces": faces,
        "head": {"skin_end": 9409},
    }


def run_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from animateme_blender.core.template import Template

    template = Template.load(args.template or template_path())
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise AnimateMeError(f"--sizes {args.sizes!r}: give vertex counts separated by commas") from None
    arrays = load_bench_model(args.face_model)
    out = Path(args.out) if args.out else reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    jobs = [(s, n) for s in range(args.subjects) for n in sizes]
    for k, (subject, size) in enumerate(tqdm(jobs, desc="bench-register", unit="case")):
        case = bench_case(arrays, template, subject, size, args.seed, k)
        cases.append(case)
        tqdm.write(f"subject {subject} {case['vertices']:>6} vertices ({case['unit']}): fit mean "
                   f"{case['fit_mean_mm']:.3f} p95 {case['fit_p95_mm']:.3f} mm, transfer "
                   f"{np.mean([t['mean_skin_mm'] for t in case['transfer'].values()]):.3f} mm, "
                   f"{case['fit_and_bind_seconds']:.1f} s wall, {case['fit_and_bind_cpu_seconds']:.1f} s CPU")
    synthetic = bench_synthetic(template, out)
    summary = summarise(cases, synthetic)
    (out / "registration_bench.json").write_text(json.dumps(
        {"summary": summary, "cases": [{k: v for k, v in c.items() if k != "errors_mm"} for c in cases],
         "synthetic_head": synthetic, "seed": args.seed, "template": template.fingerprint}, indent=1))
    (out / "registration_bench.md").write_text(markdown(summary, cases, synthetic, args))
    print(json.dumps(summary, indent=1))
    print(f"wrote {out / 'registration_bench.md'}, {out / 'registration_bench.json'}")
    return 0


def bench_synthetic(template, out: Path) -> dict:
    """The procedural head (no face model), in metres and Blender's Z-up: fit, score, picture."""
    from animateme.remesh import synthetic_head
    from animateme_blender.core.frames import face_model_to_blender
    from animateme_blender.core.registration import fit_template

    vertices_mm, faces = synthetic_head(rows=100, columns=130)    # ~12k vertices: quick to draw
    vertices = face_model_to_blender(vertices_mm) * 0.001
    start = time.perf_counter()
    fit = fit_template(vertices, faces, template, require_face=False)
    seconds = time.perf_counter() - start
    picture = save_fit_picture(vertices, faces, fit, out / "registration_synthetic_head.png",
                               "procedural head (m, Z-up)")
    transfer_picture = save_transfer_picture(vertices, faces, fit, template,
                                             out / "registration_synthetic_transfer.png")
    return {"vertices": int(len(vertices)), "seconds": seconds, "accepted": bool(fit.score.accepted),
            "residual_mm": fit.score.residual_mm, "refined_residual_mm": fit.score.refined_residual_mm,
            "coverage": fit.score.coverage, "identity_norm": fit.score.identity_norm,
            "nose_mm": fit.score.nose_mm, "scale_m_per_mm": fit.transform.scale, "picture": str(picture),
            "transfer_picture": str(transfer_picture)}


def save_transfer_picture(vertices, faces, fit, template, path) -> Path:
    """The template's own expression shapes (smile, jaw open, brows up) carried onto the user's
    vertices through the binding: neutral, then each, coloured by displacement (0-8 mm)."""
    from animateme.render import heat_colors, label, render_mesh, save_png, strip
    from animateme_blender.core.transfer import bind

    names = list(template.expression_names)
    shapes = {"smile": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0},
              "jaw open": {"jawOpen": 0.7},
              "brows up": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0}}
    deform = np.stack([sum(w * np.asarray(template.expression_modes[names.index(k)], dtype=np.float64)
                           for k, w in shape.items()) for shape in shapes.values()])
    moved = bind(fit, vertices, faces).apply(deform)
    user = fit.transform.inverse(np.asarray(vertices, dtype=np.float64))          # template frame, mm
    frame = (np.asarray(fit.template_space).mean(0), float(np.ptp(fit.template_space, axis=0).max()) * 0.6)
    images = [label(render_mesh(user, faces, view="three_quarter", size=(260, 260), frame=frame), "neutral")]
    for name, displacement in zip(shapes, moved):
        displacement_mm = np.asarray(displacement, dtype=np.float64) @ fit.transform.rotation / fit.transform.scale
        colors = heat_colors(np.linalg.norm(displacement_mm, axis=1), vmax=8.0)
        images.append(label(render_mesh(user + displacement_mm, faces, colors, view="three_quarter", size=(260, 260),
                                        frame=frame), f"{name} (0-8 mm)"))
    return save_png(strip(images), path)


def summarise(cases: list[dict], synthetic: dict) -> dict:
    errors = np.concatenate([c["errors_mm"] for c in cases])
    transfer = [t["mean_skin_mm"] for c in cases for t in c["transfer"].values()]
    transfer_all = [t["mean_all_mm"] for c in cases for t in c["transfer"].values()]
    near_50k = min(cases, key=lambda c: abs(c["vertices"] - 50_000))
    return {
        "cases": len(cases),
        "fit_mean_mm": float(errors.mean()), "fit_p95_mm": float(np.percentile(errors, 95)),
        "worst_case_fit_mean_mm": float(max(c["fit_mean_mm"] for c in cases)),
        "worst_case_fit_p95_mm": float(max(c["fit_p95_mm"] for c in cases)),
        "transfer_mean_skin_mm": float(np.mean(transfer)), "transfer_mean_all_mm": float(np.mean(transfer_all)),
        "worst_transfer_mean_skin_mm": float(np.max(transfer)),
        "seconds_50k": float(np.median([c["fit_and_bind_seconds"] for c in cases if c["vertices"] == near_50k["vertices"]])),
        "cpu_seconds_50k": float(np.median([c["fit_and_bind_cpu_seconds"] for c in cases
                                            if c["vertices"] == near_50k["vertices"]])),
        "vertices_50k": near_50k["vertices"],
        "max_seconds": float(max(c["fit_and_bind_seconds"] for c in cases)),
        "all_accepted": bool(all(c["accepted"] for c in cases)),
        "synthetic_head_accepted": synthetic["accepted"],
        "targets": {"fit_mean_mm": 1.0, "fit_p95_mm": 2.5, "transfer_mean_mm": 1.0, "seconds_50k": 10.0},
    }


def markdown(summary: dict, cases: list[dict], synthetic: dict, args) -> str:
    loads = [c["load_average"] for c in cases]
    lines = [
        "# Registration benchmark (`animateme bench-register`)", "",
        f"Held-out face-model subjects (identity weights `default_rng([{args.seed}, i]).standard_normal(M)`), "
        "the whole head (face skin, back of head, neck, mouth and eye sockets) remeshed to a new topology "
        "(midpoint subdivision then quadric decimation), a random rotation, translation and unit. Errors "
        "in mm against the exact correspondence; transfer error over the face-skin vertices, expressions "
        f"{', '.join(BENCH_EXPRESSIONS)}. The machine is shared: load average {min(loads):.1f}-{max(loads):.1f} "
        f"on {os.cpu_count()} cores while measuring, so wall-clock times vary; CPU seconds are this "
        "process's own.", "",
        "| figure | measured | target |", "|---|---|---|",
        f"| fitted template, mean | {summary['fit_mean_mm']:.3f} mm | <= 1.0 mm |",
        f"| fitted template, p95 | {summary['fit_p95_mm']:.3f} mm | <= 2.5 mm |",
        f"| worst case mean / p95 | {summary['worst_case_fit_mean_mm']:.3f} / {summary['worst_case_fit_p95_mm']:.3f} mm | |",
        f"| transfer, mean (face skin) | {summary['transfer_mean_skin_mm']:.3f} mm | <= 1.0 mm |",
        f"| transfer, mean (every vertex, incl. mouth socket) | {summary['transfer_mean_all_mm']:.3f} mm | |",
        f"| time, {summary['vertices_50k']} vertices (fit + bind, median; wall / CPU) | {summary['seconds_50k']:.1f} s / "
        f"{summary['cpu_seconds_50k']:.1f} s | <= 10 s |",
        "", "| subject | vertices | unit | fit mean | fit p95 | transfer mean (skin) | seconds (wall / CPU) | accepted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(f"| {c['subject']} | {c['vertices']} | {c['unit']} | {c['fit_mean_mm']:.3f} | {c['fit_p95_mm']:.3f} "
                     f"| {np.mean([t['mean_skin_mm'] for t in c['transfer'].values()]):.3f} "
                     f"| {c['fit_and_bind_seconds']:.1f} / {c['fit_and_bind_cpu_seconds']:.1f} | {c['accepted']} |")
    lines += ["", "Procedural head (not from the face model; metres, Blender Z-up): "
              f"accepted {synthetic['accepted']}, model-fit residual {synthetic['residual_mm']:.2f} mm, refined "
              f"{synthetic['refined_residual_mm']:.2f} mm, coverage {synthetic['coverage']:.2f}, identity "
              f"{synthetic['identity_norm']:.2f}, nose {synthetic['nose_mm']:.0f} mm, {synthetic['seconds']:.1f} s; "
              f"picture `{Path(synthetic['picture']).name}`.", ""]
    return "\n".join(lines)
