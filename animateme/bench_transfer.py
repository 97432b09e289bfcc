"""`animateme bench-transfer`: how the animation lands on the user's own mesh, at the mouth.

Cases: the built-in sample face, the shared real faces (their landmarks given), the procedural
head (`remesh.synthetic_head`, its landmarks given), and face-model heads built here with
eyeballs, teeth, gums and tongue, lips closed, slightly open, fused (the mouth zipped shut) and a neutral with the mouth open. Each case is generated for every label and
seed in both outputs (frames, ARKit rig) and measured on the user's mesh:
- flipped triangles: the most that face away from their rest normal (> 90 degrees) in one frame;
- the largest umbrella of the displacement (1-ring mean minus the vertex) at the apex, in mm and
  as a share of that frame's largest move: a spike or a tear is a large umbrella;
- apex amplitude: the 99th percentile of the skin's motion at the apex, mm;
- lip opening: how far the lips' middles part at the apex, against the template's own;
- on the face-model heads, the truth: the face model's own expression (its apex weights for the
  label) moves every part, teeth included; carrying its template part onto the head is scored
  against where each part really goes (lower and upper teeth, eyeballs, lips).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

LABELS = ("happy", "sad", "surprise", "fear", "angry", "disgust")
CM_TO_MM = 10.0


@dataclass
class Case:
    name: str
    vertices: np.ndarray
    faces: np.ndarray
    mm_per_unit: float
    landmarks: dict | None = None
    parts: dict = field(default_factory=dict)     # part name -> vertex indices (face-model heads)
    truth: object = None                          # weights (E,) -> (N,3) true displacement, units
    lips: tuple[int, int] | None = None           # upper and lower lip middle vertices
    slit: bool = True                             # the lips are separate surfaces (not fused)


# ---- the face-model heads ---------------------------------------------------------------------

RANGES = {"face": (0, 14062), "gums_tongue": (14062, 17039), "teeth": (17039, 21451), "eyeballs": (21451, 24591)}


def face_model_head(model, seed: int = 11, jaw_open: float = 0.0, fused: bool = False) -> Case:
    """A face-model identity with its eyeballs, teeth, gums and tongue, in centimetres (its own
    units): lips as the model has them (closed, separate), parted by `jaw_open`, or zipped shut."""
    from animateme.facemodel import triangulate
    from animateme_blender.core.geometry import components

    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.8, size=len(model.identity_modes)).astype(np.float32)
    names = list(model.expression_names)
    neutral = model.neutral + np.tensordot(weights, model.identity_modes, axes=1)
    if jaw_open:
        neutral = neutral + jaw_open * model.expression_modes[names.index("jawOpen")]
    triangles = triangulate(model.faces)
    keep = np.zeros(model.num_vertices, bool)
    for low, high in RANGES.values():
        keep[low:high] = True
    if fused:
        keep[9409 + 1839:14062] = False          # no mouth socket or eye sockets: lips end in a border
    triangles = triangles[keep[triangles].all(axis=1)]
    if fused:
        triangles = np.concatenate([triangles, _zip_mouth(neutral, triangles, model)])
    used, faces = np.unique(triangles, return_inverse=True)
    faces = faces.reshape(-1, 3)
    index = np.full(model.num_vertices, -1)
    index[used] = np.arange(len(used))
    labels = components(triangles, model.num_vertices)
    teeth = np.arange(*RANGES["teeth"])
    mouth_y = neutral[model.landmarks68[[48, 54, 62, 66]], 1].mean()
    lower = np.zeros(model.num_vertices, bool)
    for label in np.unique(labels[teeth]):
        piece = teeth[labels[teeth] == label]
        lower[piece] = neutral[piece, 1].mean() < mouth_y
    parts = {"lower_teeth": index[teeth[lower[teeth]]], "upper_teeth": index[teeth[~lower[teeth]]],
             "eyeballs": index[np.arange(*RANGES["eyeballs"])], "skin": index[np.arange(0, 9409)]}
    expressions = model.expression_modes[:, used]
    lips = (int(index[model.landmarks68[62]]), int(index[model.landmarks68[66]]))
    tag = "fused" if fused else ("open-mouth" if jaw_open >= 0.2 else "open" if jaw_open else "closed")
    return Case(name=f"face-model head, lips {tag}", vertices=neutral[used].astype(np.float64), faces=faces,
                mm_per_unit=CM_TO_MM, parts=parts, lips=lips, slit=not fused,
                truth=lambda w: np.tensordot(w, expressions, axes=1).astype(np.float64))


def _zip_mouth(neutral: np.ndarray, triangles: np.ndarray, model) -> np.ndarray:
    """Triangles closing the skin's mouth opening: its upper and lower arcs zipped, corner to corner."""
    from animateme_blender.core.carry.lips import boundary_loops

    loops = boundary_loops(triangles, len(neutral))
    centre = neutral[model.landmarks68[[62, 66]]].mean(axis=0)
    loop = min(loops, key=lambda l: np.linalg.norm(neutral[l].mean(axis=0) - centre))
    x = neutral[loop, 0]
    left, right = int(np.argmin(x)), int(np.argmax(x))
    lo, hi = sorted((left, right))
    one, other = list(loop[lo:hi + 1]), list(loop[hi:]) + list(loop[:lo + 1])
    other = other[::-1]                                   # both arcs from loop[lo] to loop[hi]
    new, i, j = [], 0, 0
    while i < len(one) - 1 or j < len(other) - 1:
        advance_one = j >= len(other) - 1 or (i < len(one) - 1 and
                                              neutral[one[i + 1], 0] * np.sign(x[hi] - x[lo]) <=
                                              neutral[other[j + 1], 0] * np.sign(x[hi] - x[lo]))
        if advance_one:
            new.append((one[i], one[i + 1], other[j]))
            i += 1
        else:
            new.append((one[i], other[j + 1], other[j]))
            j += 1
    new = np.asarray(new, dtype=np.int64)
    # Same winding as the skin beside it: the strip's normals face forward (+z) like the lips.
    cross = np.cross(neutral[new[:, 1]] - neutral[new[:, 0]], neutral[new[:, 2]] - neutral[new[:, 0]])
    flip = cross[:, 2] < 0
    new[flip] = new[flip][:, ::-1]
    return new[np.isin(new, loop).all(axis=1)]


# ---- cases ---------------------------------------------------------------------------------------

def all_cases(quick: bool = False) -> list[Case]:
    from animateme.commands.generate import sample_face
    from animateme.evaluation.dense_face import REAL_FACES
    from animateme.facemodel import load_face_model
    from animateme.meshio import read_obj
    from animateme.remesh import synthetic_head, synthetic_head_landmarks

    vertices, faces = read_obj(sample_face())
    cases = [Case("sample face", vertices, faces, 1000.0)]
    index = json.loads((REAL_FACES / "landmarks.json").read_text())
    names = ["meshmonk_Template", "threejs_LeePerrySmith"] if quick else list(index)
    for name in names:
        entry = index[name]
        v, f = read_obj(REAL_FACES / entry["file"])
        cases.append(Case(name, v, f, float(entry["mm_per_unit"]), landmarks=dict(entry["landmarks"]), slit=False))
    # The procedural head (made here, no face model's): its mouth is a shallow groove, which the
    # fit reads as a slightly open mouth; how far it opens it decides whether the lips crinkle.
    v, f = synthetic_head()
    cases.append(Case("procedural head", v, f, 1.0, landmarks=synthetic_head_landmarks(v), slit=False))
    model = load_face_model()
    heads = [dict(), dict(jaw_open=0.08), dict(fused=True), dict(jaw_open=0.3)]
    for options in heads[:2] if quick else heads:
        cases.append(face_model_head(model, **options))
    return cases


# ---- measures ------------------------------------------------------------------------------------

def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])


def flipped(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """(K,) triangles facing away from their rest normal in each frame (degenerate rest ones skipped)."""
    rest = _normals(vertices, faces)
    valid = np.linalg.norm(rest, axis=1) > 1e-12 * max(np.abs(vertices).max(), 1.0) ** 2
    return np.array([int((np.einsum("ij,ij->i", rest, _normals(vertices + d, faces))[valid] < 0).sum())
                     for d in displacements])


def umbrella(displacement: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) |1-ring mean - vertex| of a displacement field (0 for vertices in no triangle)."""
    import scipy.sparse as sp

    count = len(displacement)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    ring = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    ring.data[:] = 1.0
    degree = np.asarray(ring.sum(axis=1)).ravel()
    mean = (ring @ displacement) / np.maximum(degree, 1)[:, None]
    return np.where(degree > 0, np.linalg.norm(mean - displacement, axis=1), 0.0)


def measure(case: Case, displacements: np.ndarray, progression: np.ndarray, skin: np.ndarray) -> dict:
    apex = int(np.argmax(progression))
    moved = displacements[apex].astype(np.float64)
    motion = np.linalg.norm(moved, axis=1)[skin] * case.mm_per_unit
    bumps = umbrella(moved, case.faces)[skin] * case.mm_per_unit
    on_skin = np.zeros(len(case.vertices), bool)
    on_skin[skin] = True
    visible = on_skin[case.faces].all(axis=1)
    flips = flipped(case.vertices, case.faces[visible], displacements)
    out = {"flipped": int(flips.max()), "umbrella_mm": float(bumps.max()),
           "umbrella_share": float(bumps.max() / max(motion.max(), 1e-9)),
           "amplitude_mm": float(np.percentile(motion, 99))}
    if case.lips:
        up, low = case.lips
        rest = np.linalg.norm(case.vertices[up] - case.vertices[low])
        out["lip_opening_mm"] = float((np.linalg.norm(case.vertices[up] + moved[up] - case.vertices[low] - moved[low])
                                       - rest) * case.mm_per_unit)
    return out


def rigid_fit(points: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """`points` moved by the rigid motion nearest (least squares) to taking them to `moved`."""
    centre, target = points.mean(axis=0), moved.mean(axis=0)
    u, _, vt = np.linalg.svd((points - centre).T @ (moved - target))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = (u @ np.diag([1.0, 1.0, d]) @ vt).T
    return (points - centre) @ rotation.T + target


def truth_scores(case: Case, pipeline, registered, label: str, programs, template) -> dict:
    """The face model's own expression at the label's apex, carried from its template part onto the
    head, against where every part really goes (mm)."""
    weights = np.asarray(programs.variant_weights[programs.labels.index(label)][0], np.float64)
    true = case.truth(weights)
    template_deform = np.tensordot(weights, template.expression_modes, axes=1)[None]   # mm, template
    carried = registered.carrier.apply(template_deform)[0].astype(np.float64)
    error = np.linalg.norm(carried - true, axis=1) * case.mm_per_unit
    scores = {f"{part}_error_mm": float(error[index].max()) for part, index in case.parts.items() if part != "skin"}
    lower = case.parts["lower_teeth"]
    scores["lower_teeth_true_move_mm"] = float(np.linalg.norm(true[lower], axis=1).max() * case.mm_per_unit)
    # The face model's jawOpen is a linear offset (the teeth shrink a little as they swing): the
    # target is the jaw's rigid motion, the rigid fit of where its lower teeth truly go.
    rigid = rigid_fit(case.vertices[lower], case.vertices[lower] + true[lower]) - case.vertices[lower]
    scores["lower_teeth_rigid_error_mm"] = float(np.linalg.norm(carried[lower] - rigid, axis=1).max()
                                                 * case.mm_per_unit)
    on_skin = np.zeros(len(case.vertices), bool)
    on_skin[case.parts["skin"]] = True
    skin_faces = case.faces[on_skin[case.faces].all(axis=1)]
    inner_faces = case.faces[~on_skin[case.faces].all(axis=1)]
    scores["flipped_truth"] = int(flipped(case.vertices, skin_faces, true[None])[0])
    scores["flipped_carried"] = int(flipped(case.vertices, skin_faces, carried[None])[0])
    scores["flipped_inside_carried"] = int(flipped(case.vertices, inner_faces, carried[None])[0])
    return scores


def run(model_path: Path, out: Path, seeds: int = 3, quick: bool = False, sheet: bool = True,
        progress=print) -> dict:
    from animateme.emotion_programs import load_programs
    from animateme_blender.core.fit.fit_options import FitOptions
    from animateme_blender.core.pipeline import Pipeline
    from animateme_blender.core.request import build_request
    from animateme_blender.core.rig.build import rig_for_result

    pipeline = Pipeline(model_path)
    template = pipeline.template
    programs = load_programs(template.expression_names)
    report = {"seeds": seeds, "cases": []}
    pictures, eyes = [], []
    for case in all_cases(quick):
        skin = case.parts.get("skin", np.arange(len(case.vertices)))
        started = time.perf_counter()
        registered, _ = pipeline.register(case.vertices, case.faces, options=FitOptions.make(case.landmarks, force=True))
        from animateme_blender.core.fit.fit_report import accepted

        entry = {"case": case.name, "vertices": len(case.vertices), "fit_s": time.perf_counter() - started,
                 "fit_accepted": bool(accepted(registered.fit.score)), "labels": {}}
        row = []
        for label in LABELS:
            runs = []
            for seed in range(seeds):
                mark = time.perf_counter()
                result = pipeline.generate(case.vertices, case.faces, build_request(label, seed=seed),
                                           options=FitOptions.make(case.landmarks, force=True))
                frames_s = time.perf_counter() - mark
                frames = measure(case, result.displacements, result.progression, skin)
                rig, performance = rig_for_result(pipeline, case.vertices, case.faces, result,
                                                  FitOptions.make(case.landmarks, force=True))
                rig_measure = measure(case, rig.replay(performance.weights), result.progression, skin)
                runs.append({"seed": seed, "frames": frames, "rig": rig_measure, "generate_s": frames_s})
                if seed == 0:
                    row.append((label, result.displacements[int(np.argmax(result.progression))]))
            entry["labels"][label] = {"runs": runs}
            if case.truth is not None:
                entry["labels"][label]["truth"] = truth_scores(case, pipeline, registered, label, programs, template)
        entry["total_s"] = time.perf_counter() - started
        entry["summary"] = summarise(entry)
        report["cases"].append(entry)
        progress(f"{case.name}: {json.dumps(entry['summary'])}")
        if sheet:
            pictures.append(mouth_row(case, registered, row, skin))
            eyes.append(mouth_row(case, registered, row, skin, where="eyes"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer_bench.json").write_text(json.dumps(report, indent=1))
    (out / "transfer_bench.md").write_text(markdown(report))
    if sheet:
        from animateme.render import save_png

        save_png(np.concatenate(pictures, axis=0), out / "transfer_mouths.png")
        save_png(np.concatenate(eyes, axis=0), out / "transfer_eyes.png")
    return report


def summarise(entry: dict) -> dict:
    runs = [r for label in entry["labels"].values() for r in label["runs"]]
    out = {}
    for output in ("frames", "rig"):
        out[f"{output}_flipped_max"] = max(r[output]["flipped"] for r in runs)
        out[f"{output}_umbrella_share_max"] = round(max(r[output]["umbrella_share"] for r in runs), 3)
        out[f"{output}_umbrella_mm_max"] = round(max(r[output]["umbrella_mm"] for r in runs), 2)
    truths = [label["truth"] for label in entry["labels"].values() if "truth" in label]
    if truths:
        for key in ("lower_teeth_error_mm", "lower_teeth_rigid_error_mm", "upper_teeth_error_mm", "eyeballs_error_mm",
                    "lower_teeth_true_move_mm", "flipped_truth", "flipped_carried", "flipped_inside_carried"):
            out[key] = round(max(t[key] for t in truths), 3)
    out["fit_accepted"] = entry["fit_accepted"]
    out["amplitude_mm"] = {label: round(float(np.mean([r["frames"]["amplitude_mm"] for r in v["runs"]])), 2)
                           for label, v in entry["labels"].items()}
    out["generate_s_median"] = round(float(np.median([r["generate_s"] for r in runs])), 2)
    return out


def markdown(report: dict) -> str:
    lines = ["# Transfer bench: the animation on the user's own mesh", "",
             f"`animateme bench-transfer` ({report['seeds']} seeds x 6 labels x frames and rig per case). "
             "Flipped: the most skin triangles (the face model heads: the face's skin, not the mouth and eye "
             "sockets inside) facing away from their rest normal in one frame, worst over every clip. Umbrella: the largest |1-ring mean - vertex| of the apex displacement, mm and as a share "
             "of the frame's largest move. Truth (face-model heads): the face model's own apex expression, "
             "carried from its template part, against where each part really goes (max error, mm).", "",
             "| case | vertices | flipped frames / rig | umbrella mm (share) frames / rig | lower teeth err: to the jaw's rigid motion / to the linear truth (true move) mm "
             "| upper teeth / eyeballs err mm | truth flips: model's own / carried | generate s |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in report["cases"]:
        s = entry["summary"]
        teeth = (f"{s['lower_teeth_rigid_error_mm']:.2f} / {s['lower_teeth_error_mm']:.2f} ({s['lower_teeth_true_move_mm']:.1f})"
                 if "lower_teeth_error_mm" in s else "-")
        still = f"{s['upper_teeth_error_mm']:.3f} / {s['eyeballs_error_mm']:.3f}" if "eyeballs_error_mm" in s else "-"
        truth = f"{s['flipped_truth']} / {s['flipped_carried']}" if "flipped_truth" in s else "-"
        lines.append(f"| {entry['case']} | {entry['vertices']} | {s['frames_flipped_max']} / {s['rig_flipped_max']} | "
                     f"{s['frames_umbrella_mm_max']:.2f} ({s['frames_umbrella_share_max']:.2f}) / "
                     f"{s['rig_umbrella_mm_max']:.2f} ({s['rig_umbrella_share_max']:.2f}) | {teeth} | {still} | "
                     f"{truth} | {s['generate_s_median']:.2f} |")
    lines += ["", "Apex amplitude on the skin (99th percentile of the motion, mm, mean of the seeds):", "",
              "| case | " + " | ".join(LABELS) + " |", "|---|" + "---|" * len(LABELS)]
    for entry in report["cases"]:
        amp = entry["summary"]["amplitude_mm"]
        lines.append(f"| {entry['case']} | " + " | ".join(f"{amp[l]:.2f}" for l in LABELS) + " |")
    return "\n".join(lines) + "\n"


def mouth_row(case: Case, registered, row: list, skin: np.ndarray, size: int = 200, where: str = "mouth") -> np.ndarray:
    """Neutral and each label's apex (seed 0) up close, seen from the front of the face (the fit's
    own frame, so any input axes read alike): the mouth, or both eyes, filling the frame."""
    from animateme.render import label as caption, render_mesh

    fit = registered.fit
    rest = fit.transform.inverse(case.vertices)                         # template frame, mm
    from animateme_blender.core.carry.lips import find_openings

    centres = [fit.template_space[o.loop].mean(axis=0) for o in find_openings(fit.template_space, fit.template_faces)]
    if not centres:
        centre, half = rest.mean(axis=0), 60.0
    elif where == "mouth":
        centre, half = min(centres, key=lambda c: c[1]), 30.0
    else:
        eyes = sorted(centres, key=lambda c: c[1])[1:]
        centre, half = np.mean(eyes, axis=0), 45.0
    near = np.linalg.norm(rest - centre, axis=1) < 1.5 * half
    faces = case.faces[near[case.faces].all(axis=1)]
    frame = (centre, half)
    images = [caption(render_mesh(rest, faces, size=(size, size), frame=frame), f"{case.name[:24]} neutral")]
    for label, displacement in row:
        moved = fit.transform.inverse(case.vertices + displacement)
        images.append(caption(render_mesh(moved, faces, size=(size, size), frame=frame), label))
    return np.concatenate(images, axis=1)


def check_model(path: Path) -> Path:
    if not Path(path).exists():
        raise AnimateMeError(f"no model at {path}: pass --model, or train and export one")
    return Path(path)
