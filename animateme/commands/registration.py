"""`animateme register`, `animateme transfer`, `animateme bench-register`.

    animateme register FACE.obj --out FIT.npz [--landmarks nose_tip=123,mouth_left=45,mouth_right=67]
                       [--region FACE_VERTICES.txt] [--force] [--picture FIT.png]
    animateme transfer FACE.obj --frames FRAMES.npz --out OUT.npz [--fit FIT.npz] [--obj-sequence DIR]
    animateme bench-register [--quick] [--out reports]

`register` writes the fitted template (template topology, in the input's own coordinates and
units), the similarity to the template frame and the score. `transfer` carries per-frame template
deformations (`deform` (K,V,3) mm, e.g. the sampler's output) onto the mesh's own vertices.
`bench-register` measures the registration on held-out face-model subjects remeshed to other
topologies, in random poses and units, and on a procedural head no face model made.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.remedies import MIN_LANDMARKS, remedy_words

from ..paths import data_dir, reports_dir, template_path

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

    carry = subparsers.add_parser(
        "bench-transfer", help="the animation on the user's own mesh: flipped triangles, spikes, teeth and "
                               "lips on the sample face, the real faces and face-model heads with teeth")
    carry.add_argument("--model", type=Path, default=None, help="default: models/animateme.onnx")
    carry.add_argument("--seeds", type=int, default=3)
    carry.add_argument("--quick", action="store_true", help="six cases instead of eleven")
    carry.add_argument("--out", type=Path, default=Path("reports/transfer"))
    carry.set_defaults(func=run_bench_transfer)

    bench = subparsers.add_parser("bench-register", help="measure registration: success, refusal and silent "
                                  "failure per kind of input, accuracy and time")
    bench.add_argument("--quick", action="store_true", help="about a quarter of the cases (a few minutes)")
    bench.add_argument("--only", action="append", metavar="CATEGORY",
                       help="run only this category (repeatable; reports get its name in theirs)")
    bench.add_argument("--seed", type=int, default=2026, help="subject i has identity weights "
                       "default_rng([seed, i]).standard_normal(M), never used by the corpus")
    bench.add_argument("--template", help="template.npz (default: data/template.npz)")
    bench.add_argument("--face-model", help="ict_facekit.npz or a FaceXModel folder")
    bench.add_argument("--out", help="folder for registration_bench.{json,md} and the contact sheet (default: reports/)")
    bench.add_argument("--record", action="store_true", help="also write this run's figures into reports/performance.md (the one performance table)")
    bench.add_argument("--nose-detector", action="store_true",
                       help="instead of fitting, measure the geometric nose-tip detector (animateme/nose_detector.py) "
                            "on the same cases; writes nose_detector.md")
    bench.set_defaults(func=run_bench)


def _fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", help="template.npz (default: data/template.npz)")
    parser.add_argument("--landmarks", help=f"{MIN_LANDMARKS} or more name=vertex_index, comma-separated, from "
                        + ", ".join(_landmark_names()) + " (left/right: the face's own)")
    parser.add_argument("--region", help="text or .npy file of the face's vertex indices: only those are fitted "
                        "(and animated)")
    parser.add_argument("--no-refine", action="store_true", help="model fit only, no refinement")
    parser.add_argument("--force", action="store_true", help="use the fit even when it is refused")


# What each remedy of a refused fit is called on the command line: the one remedy table's words.
CLI_REMEDIES = remedy_words("register")


def _landmark_names():
    from animateme_blender.core.fit.landmarks import LANDMARK_NAMES

    return list(LANDMARK_NAMES)


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


def _read_region(path: str | None):
    if not path:
        return None
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False).astype(np.int64).ravel()
        return np.array(Path(path).read_text().replace(",", " ").split(), dtype=np.int64)
    except (OSError, ValueError) as error:
        raise AnimateMeError(f"cannot read --region {path} ({error}): give vertex indices, whitespace- or "
                             "comma-separated, or a .npy array") from None


def _progress_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%")

    def progress(fraction: float, message: str) -> None:
        bar.set_postfix_str(message, refresh=False)
        bar.update(max(0, int(100 * fraction) - bar.n))
    return bar, progress


def _fit(args, vertices, faces, template):
    from animateme_blender.core.errors import FitRefused
    from animateme_blender.core.fit.registration import FitCache

    bar, progress = _progress_bar("register")
    try:
        fit, cached = FitCache(data_dir() / "fits").fit(
            vertices, faces, template, landmarks=_parse_landmarks(args.landmarks), part=_read_region(args.region),
            refine=not args.no_refine, require_face=not args.force, progress=progress)
    except FitRefused as refused:
        raise AnimateMeError("the fit was refused: " + refused.message(CLI_REMEDIES)) from None
    finally:
        bar.close()
    return fit, cached


def run_register(args: argparse.Namespace) -> int:
    from animateme.meshio import read_mesh
    from animateme_blender.core.template import Template

    template = Template.load(args.template or template_path())
    vertices, faces = read_mesh(args.input)
    fit, cached = _fit(args, vertices, faces, template)
    path = fit.save(args.out)
    print(f"wrote {path}: {len(fit.vertices)} template vertices in the input's frame; {fit.score.describe()}; "
          f"refined residual {fit.score.refined_residual_mm:.2f} mm, scale {fit.transform.scale:.4g} "
          f"input units per mm{' (cached fit)' if cached else ''}")
    if args.picture:
        print(f"wrote {save_fit_picture(vertices, faces, fit, args.picture, Path(args.input).name)}")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    from animateme.meshio import read_mesh, write_mesh
    from animateme_blender.core.fit.registration import Fit
    from animateme_blender.core.template import Template
    from animateme_blender.core.carry.smooth_carry import SmoothCarry
    from animateme_blender.core.carry.transfer import bind

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
    # As Generate carries: lips by side, teeth and eyes rigid, no triangle turned over.
    binding = bind(fit, vertices, faces, region=_read_region(args.region), template=template)
    displacements = SmoothCarry(binding, mesh=(vertices, faces)).apply(deform)
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
    from animateme_blender.core.geometry import vertex_normals

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
        "polys": np.asarray(model.faces[keep]),
        "head": {"skin_end": 9409},
    }


def run_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from animateme import bench_registration as bench
    from animateme import registration_report as report
    from animateme_blender.core.fit.judge import face_region
    from animateme_blender.core.template import Template

    template = Template.load(args.template or template_path())
    arrays = load_bench_model(args.face_model)
    out = Path(args.out) if args.out else reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    maker = bench.CaseMaker(arrays, template, args.seed)
    counts = {c: (max(1, n // 4) if args.quick else n) for c, n in bench.CATEGORIES.items()}
    if args.quick:
        counts["real"] = bench.CATEGORIES["real"]
    if args.only:
        unknown = sorted(set(args.only) - set(counts))
        if unknown:
            raise AnimateMeError(f"unknown categories {unknown}: pick from {', '.join(counts)}")
    region = face_region(template)
    if args.nose_detector:
        return bench.measure_nose_detector(maker, counts, args.only, template, out)
    rows, cases = [], []
    with tqdm(total=sum(counts.values()), desc="bench-register", unit="case") as bar:
        for category, count in counts.items():
            if args.only and category not in args.only:
                maker.subject_count += count    # skipped, so later categories keep their subjects
                bar.update(count)
                continue
            for case in maker.build(category, count):
                row = bench.run_case(case, template, region)
                rows.append(row)
                cases.append(case)
                stages = " / ".join(f"{s:.1f}" for s in row.get("stage_seconds", {}).values())
                tqdm.write(f"{row['outcome']:>14} {row['error_mm']:6.2f} mm {row['seconds']:5.1f} s ({stages})  "
                           f"{category}: {case.name} ({row['vertices']} v) {row.get('problem', '')}")
                bar.update(1)
    table = report.summarise(rows)
    bench_synthetic(template, out)
    suffix = ("_quick" if args.quick else "") + "".join(f"_{c}" for c in sorted(args.only or []))
    name = f"registration_bench{suffix}"
    sheet = report.contact_sheet(rows, cases, out / f"registration_worst{suffix}.png")
    plain = [{k: v for k, v in r.items() if k != "fit"} for r in rows]
    (out / f"{name}.json").write_text(json.dumps({"summary": table, "cases": plain, "seed": args.seed,
                                                  "template": template.fingerprint}, indent=1, default=float))
    text = report.markdown_table(table)
    told = [r["told_s"] for r in rows if np.isfinite(r.get("told_s", float("nan")))]
    if told:     # the table's times are forced fits (every case fitted in full, to be scored)
        text += (f"\n\nNon-faces, as the artist meets them (not forced): refused in {np.median(told):.1f} s median, "
                 f"{max(told):.1f} s at most ({len(told)} cases).")
    (out / f"{name}.md").write_text("# Registration benchmark (`animateme bench-register"
                                    f"{' --quick' if args.quick else ''}`)\n\n" + bench.__doc__.split("\n\n", 1)[1]
                                    + "\n" + text + "\n\nEvery case:\n\n| outcome | error mm | s | category | case | problem |\n"
                                    "|---|---|---|---|---|---|\n" + "\n".join(
                                        f"| {r['outcome']} | {r['error_mm']:.2f} | {r['seconds']:.1f} | {r['category']} "
                                        f"| {r['name']} ({r['vertices']} v) | {r.get('problem', '')} |" for r in rows) + "\n"
                                    + "\nReal meshes, landmark by landmark: to the given vertex, and to the patch of surface "
                                    "nearer to that vertex than to any other (its cell; the case's error is the mean over "
                                    "cells):\n\n"
                                    + report.landmark_table(rows) + "\n")
    print(text)
    print(f"wrote {out / (name + '.md')}, {out / (name + '.json')}, {sheet}")
    if args.record:
        print(f"wrote {_record_registration(table, told)}")
    return 0


def bench_synthetic(template, out: Path) -> dict:
    """The procedural head (no face model), in metres and Blender's Z-up: fit, score, picture."""
    from animateme.remesh import synthetic_head
    from animateme_blender.core.frames import face_model_to_blender
    from animateme_blender.core.fit.registration import fit_template

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
    from animateme_blender.core.carry.smooth_carry import SmoothCarry
    from animateme_blender.core.carry.transfer import bind

    names = list(template.expression_names)
    shapes = {"smile": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0},
              "jaw open": {"jawOpen": 0.7},
              "brows up": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0}}
    deform = np.stack([sum(w * np.asarray(template.expression_modes[names.index(k)], dtype=np.float64)
                           for k, w in shape.items()) for shape in shapes.values()])
    moved = SmoothCarry(bind(fit, vertices, faces, template=template), mesh=(vertices, faces)).apply(deform)
    user = fit.transform.inverse(np.asarray(vertices, dtype=np.float64))          # template frame, mm
    frame = (np.asarray(fit.template_space).mean(0), float(np.ptp(fit.template_space, axis=0).max()) * 0.6)
    images = [label(render_mesh(user, faces, view="three_quarter", size=(260, 260), frame=frame), "neutral")]
    for name, displacement in zip(shapes, moved):
        displacement_mm = np.asarray(displacement, dtype=np.float64) @ fit.transform.rotation / fit.transform.scale
        colors = heat_colors(np.linalg.norm(displacement_mm, axis=1), vmax=8.0)
        images.append(label(render_mesh(user + displacement_mm, faces, colors, view="three_quarter", size=(260, 260),
                                        frame=frame), f"{name} (0-8 mm)"))
    return save_png(strip(images), path)


def run_bench_transfer(args) -> int:
    from animateme.bench_transfer import check_model, run
    from animateme.paths import models_dir

    model = check_model(args.model or models_dir() / "animateme.onnx")
    run(model, args.out, seeds=args.seeds, quick=args.quick)
    print(f"wrote {args.out / 'transfer_bench.md'} and {args.out / 'transfer_mouths.png'}")
    return 0


def _record_registration(table: list[dict], told: list[float]):
    """bench-register's section of the performance table: median seconds per kind of input, by stage."""
    from animateme.performance import record

    stages = ("search", "model fit", "polish")
    rows = [[t["category"], t["cases"], t["seconds"], *(t.get("stage_seconds", {}).get(s, float("nan")) for s in stages)]
            for t in table]
    notes = (f"A non-face, as the artist meets it (not forced): refused in {np.median(told):.1f} s median."
             if told else "")
    return record("registration", ["kind of input", "cases", "median s", "pose search s", "model fit s",
                                   "polish s"], rows, notes)
