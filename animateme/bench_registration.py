"""The registration benchmark suite (`animateme bench-register`): cases built at run time from
held-out face-model identities (identity weights default_rng([seed, i]), never in the corpus), in
every pose, unit and topology the issue lists, plus shapes that are not faces and the real meshes
in ../shared/data/real-faces (scored by landmark error), as given and turned into random poses.

Each face case knows its exact correspondence, so the fitted template is compared with the truth
over the template's face region (the animated part, judge.face_region), in mm:
- success: accepted and mean error <= 1 mm;
- refused: the fit said no (with its plain-words problem);
- inaccurate: accepted, 1-3 mm;
- SILENT FAILURE: accepted and > 3 mm (the outcome that must never happen).
A non-face accepted is a silent failure; refused, a success. Real meshes: success <= 3 mm mean
landmark error; silent failure > 6 mm (their landmarks are themselves +-2-4 mm). A landmark is a
vertex, and a vertex marks the patch of surface nearer to it than to any other (its cell): the
error is measured to that patch, which on a dense mesh is about the distance to the vertex and on
a coarse one (17 mm edges) is what the annotation can tell.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial.transform import Rotation

SUCCESS_MM, SILENT_MM = 1.0, 3.0
REAL_SUCCESS_MM, REAL_SILENT_MM = 3.0, 6.0
UNITS = (("mm", 1.0), ("cm", 0.1), ("m", 0.001), ("inch", 1 / 25.4), ("arbitrary", None))
# Cases per category (full suite); --quick takes about a quarter of each.
CATEGORIES = {"pose_unit": 20, "remesh": 20, "eyes_teeth": 8, "mask": 12, "torso": 10, "noise_holes": 10,
              "warp": 10, "non_face": 6, "real": 5, "real_turned": 10, "open_mouth": 10}
REAL_FACES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real-faces"


@dataclass
class Case:
    category: str
    name: str
    vertices: np.ndarray                 # (N,3) as given to the fit (posed, in its unit)
    faces: np.ndarray
    truth: np.ndarray | None = None      # (V,3) true template-vertex positions, same frame/unit
    landmarks: dict = field(default_factory=dict)   # real meshes: {name: vertex}
    mm_per_unit: float = 1.0
    expect_face: bool = True


# ---------------------------------------------------------------------------------------------
# Building blocks
def _box(size, centre, n=6):
    """A closed box surface (each side an n x n grid), mm."""
    vertices, faces = [], []
    lin = np.linspace(-0.5, 0.5, n)
    for axis in range(3):
        for sign in (-0.5, 0.5):
            a, b = np.meshgrid(lin, lin, indexing="ij")
            points = np.zeros((n, n, 3))
            others = [k for k in range(3) if k != axis]
            points[..., axis], points[..., others[0]], points[..., others[1]] = sign, a, b
            g = np.arange(n * n).reshape(n, n) + sum(len(v) for v in vertices)
            quad = np.stack([g[:-1, :-1], g[1:, :-1], g[1:, 1:]], -1).reshape(-1, 3), \
                np.stack([g[:-1, :-1], g[1:, 1:], g[:-1, 1:]], -1).reshape(-1, 3)
            tri = np.concatenate(quad)
            if sign < 0:
                tri = tri[:, ::-1]
            if axis == 1:
                tri = tri[:, ::-1]
            vertices.append(points.reshape(-1, 3))
            faces.append(tri)
    vertices = np.concatenate(vertices) * np.asarray(size) + np.asarray(centre)
    # Weld the sides' shared edges: one closed surface.
    vertices, weld = np.unique(np.round(vertices, 6), axis=0, return_inverse=True)
    faces = weld.reshape(-1)[np.concatenate(faces)]
    # Orient outwards: flip faces whose normal points to the centre.
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    inward = ((vertices[faces].mean(1) - np.asarray(centre)) * cross).sum(1) < 0
    faces[inward] = faces[inward][:, ::-1]
    return vertices, faces


def _sphere(radius, centre, rows=12, columns=16):
    theta = np.linspace(0, np.pi, rows)[1:-1]
    phi = np.linspace(0, 2 * np.pi, columns, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    points = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    points = np.concatenate([[[0, 1, 0]], points, [[0, -1, 0]]])
    g = np.arange((rows - 2) * columns).reshape(rows - 2, columns) + 1
    faces = []
    for i in range(rows - 3):
        for j in range(columns):
            a, b, c, d = g[i, j], g[i, (j + 1) % columns], g[i + 1, j], g[i + 1, (j + 1) % columns]
            faces += [[a, b, c], [b, d, c]]
    last = len(points) - 1
    for j in range(columns):
        faces += [[0, g[0, (j + 1) % columns], g[0, j]], [last, g[-1, j], g[-1, (j + 1) % columns]]]
    faces = np.asarray(faces)
    cross = np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])
    inward = (points[faces].mean(1) * cross).sum(1) < 0
    faces[inward] = faces[inward][:, ::-1]
    return points * radius + np.asarray(centre), faces


def _join(*meshes):
    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(np.asarray(f) + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def _keep(vertices, faces, keep, weights=None):
    """The sub-mesh of kept vertices (faces with all corners kept)."""
    kept_faces = faces[keep[faces].all(1)]
    used = np.zeros(len(vertices), bool)
    used[kept_faces.ravel()] = True
    index = np.cumsum(used) - 1
    return vertices[used], index[kept_faces], (weights[used] if weights is not None else None)


# ---------------------------------------------------------------------------------------------
# Cases
class CaseMaker:
    def __init__(self, arrays: dict, template, seed: int):
        self.arrays, self.template, self.seed = arrays, template, seed
        self.source = np.asarray(template.source_index)
        self.subject_count = 0

    def subject(self, k: int, stretch: float = 1.0):
        weights = np.random.default_rng([self.seed, k]).standard_normal(self.arrays["identity_modes"].shape[0])
        return self.arrays["neutral"] + np.tensordot(stretch * weights, self.arrays["identity_modes"], axes=1)

    def remeshed(self, subject, size):
        from animateme.remesh import remesh, subdivide

        if size == "subdivided":
            return subdivide(subject, self.arrays["faces"])
        if size == "quads":
            # The face model's own quads, split along the other diagonal.
            polys = self.arrays["polys"]
            quads = polys[polys[:, 3] >= 0]
            faces = np.concatenate([quads[:, [0, 1, 3]], quads[:, [1, 2, 3]], polys[polys[:, 3] < 0][:, :3]])
            return subject, faces, sp.identity(len(subject), format="csr")
        return remesh(subject, self.arrays["faces"], size)

    def posed(self, category, name, vertices, faces, truth, rng, unit_index, rotation=None, **extra) -> Case:
        unit, scale = UNITS[unit_index % len(UNITS)]
        if scale is None:
            scale = float(np.exp(rng.uniform(np.log(0.02), np.log(50.0))))
        rotation = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix() if rotation is None else rotation
        translation = rng.normal(0.0, 300.0, 3) * scale
        move = lambda p: scale * p @ rotation.T + translation          # noqa: E731
        return Case(category, f"{name} ({unit})", move(vertices), np.asarray(faces, dtype=np.int64),
                    None if truth is None else move(truth), mm_per_unit=1.0 / scale, **extra)

    def build(self, category: str, count: int) -> list[Case]:
        rng = np.random.default_rng([self.seed, 7, list(CATEGORIES).index(category)])
        make = getattr(self, f"_{category}")
        cases = []
        for k in range(count):
            self.subject_count += 1
            cases.append(make(k, self.subject_count, rng))
        return cases

    def _truth(self, subject):
        return subject[self.source]

    def _pose_unit(self, k, index, rng):
        axes = [np.eye(3), Rotation.from_euler("x", -90, degrees=True).as_matrix(),     # Y-up, Z-up
                Rotation.from_euler("x", 180, degrees=True).as_matrix(),                # upside down
                Rotation.from_euler("y", 90, degrees=True).as_matrix()]                 # facing +X
        rotation = axes[k] if k < len(axes) else None
        subject = self.subject(index)
        vertices, faces, _ = self.remeshed(subject, 8000)
        return self.posed("pose_unit", f"s{index} 8k", vertices, faces, self._truth(subject), rng, k, rotation)

    def _remesh(self, k, index, rng):
        sizes = [2000, 2000, 2000, 2000, "subdivided", "subdivided", "quads", "quads", 5000, 5000, 10000, 10000,
                 20000, 20000, 50000, 50000, 100000, 5000, 20000, 50000]
        size = sizes[k % len(sizes)]
        subject = self.subject(index)
        vertices, faces, _ = self.remeshed(subject, size)
        label = size if isinstance(size, str) else f"{size // 1000}k"
        return self.posed("remesh", f"s{index} {label}", vertices, faces, self._truth(subject), rng, k)

    def _landmark_points(self, subject):
        table = np.asarray(self.template.landmarks)
        return subject[self.source[table]]

    def _eyes_teeth(self, k, index, rng):
        subject = self.subject(index)
        vertices, faces, _ = self.remeshed(subject, 6000)
        marks = self._landmark_points(subject)
        parts = [(vertices, faces)]
        for outer, inner in ((36, 39), (45, 42)):
            centre = 0.5 * (marks[outer] + marks[inner]) - np.array([0, 0, 11.0])
            parts.append(_sphere(12.0, centre))
        mouth = 0.5 * (marks[48] + marks[54]) - np.array([0, 0, 8.0])
        parts.append(_box((40, 8, 12), mouth + np.array([0, 5, 0])))       # upper teeth
        if k % 2:
            parts.append(_box((36, 8, 10), mouth - np.array([0, 6, 2])))  # lower teeth
            parts.append(_box((24, 5, 30), mouth - np.array([0, 2, 12])))  # tongue
        all_v, all_f = _join(*parts)
        return self.posed("eyes_teeth", f"s{index} eyes+teeth", all_v, all_f, self._truth(subject), rng, k)

    def _mask(self, k, index, rng):
        subject = self.subject(index)
        vertices, faces, _ = self.remeshed(subject, [3000, 7000, 15000][k % 3])
        marks = self._landmark_points(subject)
        centre = marks[30]
        # Front-only: in front of a plane behind the nose, inside an ellipse around the face;
        # tight masks stop at the brows and the jaw, loose ones reach the forehead and cheeks.
        loose = [0.85, 1.0, 1.15][k % 3]
        x, y = (vertices[:, 0] - centre[0]) / (68 * loose), (vertices[:, 1] - centre[1] - 5) / (95 * loose)
        keep = (x ** 2 + y ** 2 < 1) & (vertices[:, 2] > centre[2] - 75)
        mask_v, mask_f, _ = _keep(vertices, faces, keep)
        return self.posed("mask", f"s{index} mask x{loose}", mask_v, mask_f, self._truth(subject), rng, k)

    def _torso(self, k, index, rng):
        subject = self.subject(index)
        vertices, faces, _ = self.remeshed(subject, 8000)
        bottom = vertices[:, 1].min()
        neck = vertices[vertices[:, 1] < bottom + 10].mean(0)
        torso = _box((380, 260, 200), neck + np.array([0, -130 - 5, -20]), n=12)
        shoulders = _box((460, 60, 160), neck + np.array([0, -30, -20]), n=12)
        all_v, all_f = _join((vertices, faces), torso, shoulders) if k % 2 else _join((vertices, faces), torso)
        return self.posed("torso", f"s{index} head+torso{'+shoulders' if k % 2 else ''}", all_v, all_f,
                          self._truth(subject), rng, k)

    def _noise_holes(self, k, index, rng):
        subject = self.subject(index)
        vertices, faces, _ = self.remeshed(subject, 10000)
        noisy = vertices + rng.normal(0.0, [0.1, 0.3, 0.5][k % 3], vertices.shape)
        keep = np.ones(len(vertices), bool)
        for centre in vertices[rng.choice(len(vertices), 2 + k % 4, replace=False)]:
            keep &= np.linalg.norm(vertices - centre, axis=1) > rng.uniform(6.0, 14.0)
        hole_v, hole_f, _ = _keep(noisy, faces, keep)
        return self.posed("noise_holes", f"s{index} noise+{2 + k % 4} holes", hole_v, hole_f,
                          self._truth(subject), rng, k)

    def _warp(self, k, index, rng):
        stretch = [2.0, 2.5, 3.0][k % 3]
        subject = self.subject(index, stretch)
        # And a smooth warp no identity mode makes: a sideways bend and a vertical squash.
        bend = rng.uniform(-0.12, 0.12)
        squash = rng.uniform(0.85, 1.15)
        warped = subject.copy()
        warped[:, 0] += bend * (subject[:, 1] - subject[:, 1].mean()) ** 2 / 100.0
        warped[:, 1] *= squash
        vertices, faces, _ = self.remeshed(warped, 8000)
        return self.posed("warp", f"s{index} x{stretch} bend {bend:+.2f} squash {squash:.2f}", vertices, faces,
                          self._truth(warped), rng, k)

    def _open_mouth(self, k, index, rng):
        """A head whose mouth is open (the face model's jawOpen 0.2-1.0, half of them also smiling):
        artists' sculpts and scans often are. The truth is the open-mouthed head's own template
        points, so a fit that lays the template's closed lips across the opening is off there."""
        amount = [0.2, 0.4, 0.6, 0.8, 1.0][k % 5]
        extra = ["", "mouthSmile"][k // 5 % 2]
        names = list(self.arrays["expression_names"])
        shapes = self.arrays["expression_modes"]
        subject = self.subject(index) + amount * shapes[names.index("jawOpen")]
        if extra:
            subject = subject + 0.6 * (shapes[names.index("mouthSmile_L")] + shapes[names.index("mouthSmile_R")])
        vertices, faces, _ = self.remeshed(subject, 8000)
        return self.posed("open_mouth", f"s{index} jawOpen {amount}{' + smile' if extra else ''}", vertices, faces,
                          self._truth(subject), rng, k)

    def _non_face(self, k, index, rng):
        from animateme.remesh import subdivide

        kind = ["cube", "sphere", "monkey-like head", "torso without head", "egg with a bump", "flat plate"][k % 6]
        if kind == "cube":
            mesh = _box((150, 150, 150), (0, 0, 0), n=20)
        elif kind == "sphere":
            mesh = _sphere(90.0, (0, 0, 0), 30, 40)
        elif kind == "monkey-like head":
            head = _sphere(80.0, (0, 0, 0), 30, 40)
            ears = [_sphere(30.0, (s * 85, 10, -10), 14, 18) for s in (-1, 1)]
            muzzle = _sphere(45.0, (0, -30, 55), 20, 24)
            eyes = [_sphere(14.0, (s * 28, 22, 70), 10, 12) for s in (-1, 1)]
            mesh = _join(head, *ears, muzzle, *eyes)
        elif kind == "torso without head":
            mesh = _join(_box((380, 500, 200), (0, -250, 0), n=14), _box((460, 60, 160), (0, 0, 0), n=14),
                         _sphere(55.0, (0, 60, 0), 16, 20))
        elif kind == "egg with a bump":
            v, f = _sphere(1.0, (0, 0, 0), 30, 40)
            v = v * np.array([75, 105, 90])
            v[:, 2] += 20 * np.exp(-((v[:, 0] / 15) ** 2 + (v[:, 1] / 25) ** 2)) * (v[:, 2] > 0)
            mesh = (v, f)
        else:
            mesh = _box((200, 260, 8), (0, 0, 0), n=30)
        vertices, faces = mesh
        while len(vertices) < 2000:
            vertices, faces, _ = subdivide(vertices, faces)
        return self.posed("non_face", kind, vertices, faces, None, rng, k, expect_face=False)

    def _real(self, k, index, rng):
        from animateme.meshio import read_mesh

        info = json.loads((REAL_FACES / "landmarks.json").read_text())
        name = sorted(info)[k % len(info)]
        vertices, faces = read_mesh(REAL_FACES / info[name]["file"])
        return Case("real", name, vertices, faces, landmarks=info[name]["landmarks"],
                    mm_per_unit=float(info[name]["mm_per_unit"]))

    def _real_turned(self, k, index, rng):
        """A real mesh turned at random, moved and put in another unit: the pose search on faces
        with hair, shoulders and their own proportions, not only on its native axes."""
        case = self._real(k, index, rng)
        unit, scale = UNITS[(k // 5 + 1) % len(UNITS)]
        if scale is None:
            scale = float(np.exp(rng.uniform(np.log(0.02), np.log(50.0))))
        rotation = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
        vertices = scale * case.vertices @ rotation.T + rng.normal(0.0, 300.0, 3) * scale
        return Case("real_turned", f"{case.name} turned ({unit})", vertices, case.faces, landmarks=case.landmarks,
                    mm_per_unit=case.mm_per_unit / scale)


# ---------------------------------------------------------------------------------------------
# Running and scoring
# The fit's progress messages (core/fit/fitter.py), by the stage of the fit they open.
STAGES = {"checking the mesh": "search", "aligning the template": "search", "choosing the pose": "search",
          "fitting the face model": "model fit", "fitting what the face model cannot express": "polish",
          "refining the fit": "polish"}


class StageClock:
    """A fit's progress callback that times its stages: each message's time runs until the next
    message, summed by STAGES (a message not in it ends the stage before it)."""

    def __init__(self):
        self.seconds = {stage: 0.0 for stage in dict.fromkeys(STAGES.values())}
        self._stage, self._since = None, time.perf_counter()

    def __call__(self, fraction: float, message: str) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] += now - self._since
        self._stage, self._since = STAGES.get(message), now


def run_case(case: Case, template, region: np.ndarray) -> dict:
    from animateme_blender.core.errors import AnimateMeError
    from animateme_blender.core.fit.landmarks import template_landmark_points
    from animateme_blender.core.fit.registration import fit_template

    start, cpu = time.perf_counter(), time.process_time()
    row = {"category": case.category, "name": case.name, "vertices": int(len(case.vertices))}
    clock = StageClock()
    try:
        fit = fit_template(case.vertices, case.faces, template, require_face=False, progress=clock)
    except AnimateMeError as error:     # refused before fitting (broken input)
        row.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu, accepted=False, problem=str(error), error_mm=float("nan"))
        row["outcome"] = "success" if not case.expect_face else "refused"
        return row
    row["seconds"] = time.perf_counter() - start
    row["cpu_seconds"] = time.process_time() - cpu
    row["stage_seconds"] = clock.seconds
    row["accepted"] = bool(fit.score.accepted)
    row["problem"] = fit.score.problem
    row["score"] = fit.score.describe()
    row["fit"] = fit
    if case.truth is not None:
        error = np.linalg.norm(fit.vertices - case.truth, axis=1) * case.mm_per_unit
        row["error_mm"] = float(error[region].mean())
        row["all_mean_mm"], row["all_p95_mm"] = float(error.mean()), float(np.percentile(error, 95))
        row["region_p95_mm"] = float(np.percentile(error[region], 95))
        good, silent = SUCCESS_MM, SILENT_MM
    elif case.landmarks:
        # The template's own landmark points (the nose tip at the pronasale, on its surface).
        fitted = fit.transform.apply(template_landmark_points(template, list(case.landmarks)).on(fit.template_space))
        to_vertex = [np.linalg.norm(point - case.vertices[i]) * case.mm_per_unit
                     for point, i in zip(fitted, case.landmarks.values())]
        to_cell = [cell_landmark_error(point, case, i) for point, i in zip(fitted, case.landmarks.values())]
        # Judged on the cells: a landmark vertex marks a patch of surface as big as the mesh's sampling.
        row["error_mm"] = float(np.mean(to_cell))
        row["vertex_error_mm"] = float(np.mean(to_vertex))
        row["landmark_errors_mm"] = {n: round(float(e), 2) for n, e in zip(case.landmarks, to_vertex)}
        row["landmark_cell_mm"] = {n: round(float(e), 2) for n, e in zip(case.landmarks, to_cell)}
        good, silent = REAL_SUCCESS_MM, REAL_SILENT_MM
    else:
        row["error_mm"] = float("nan")
        row["outcome"] = "SILENT FAILURE" if row["accepted"] else "success"
        # What the artist waits for: the product's own path (not forced) stops as soon as it knows.
        start = time.perf_counter()
        try:
            fit_template(case.vertices, case.faces, template)
            row["told_s"] = float("nan")                      # accepted: the outcome above says so
        except AnimateMeError:
            row["told_s"] = time.perf_counter() - start
        return row
    if not row["accepted"]:
        row["outcome"] = "refused"
    elif row["error_mm"] <= good:
        row["outcome"] = "success"
    elif row["error_mm"] > silent:
        row["outcome"] = "SILENT FAILURE"
    else:
        row["outcome"] = "inaccurate"
    return row


def cell_landmark_error(point: np.ndarray, case: Case, vertex: int, steps: int = 24) -> float:
    """mm from a fitted landmark to the part of the surface the given landmark vertex stands for:
    the points of its triangles that are nearer to it than to any other vertex (its cell). On a
    dense mesh the cell is a millimetre or so across and this is about the distance to the vertex;
    on a coarse one (DemoFace: 17 mm edges) the annotator could only pick the corner nearest the
    true point, and a fit on the right spot of the surface lands up to half an edge from it."""
    from scipy.spatial import cKDTree

    faces = np.asarray(case.faces)
    vertices = np.asarray(case.vertices, dtype=np.float64)
    corners = vertices[faces[(faces == vertex).any(1)]]
    if not len(corners):
        return float("nan")
    # A barycentric grid over each triangle around the vertex, kept where the vertex is nearest.
    i, j = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1), indexing="ij")
    keep = i + j <= steps
    bary = np.column_stack([i[keep], j[keep], steps - i[keep] - j[keep]]) / steps
    samples = np.einsum("bk,tkc->tbc", bary, corners).reshape(-1, 3)
    _, nearest = cKDTree(vertices).query(samples)
    cell = samples[nearest == vertex]
    if not len(cell):
        cell = vertices[[vertex]]
    return float(np.linalg.norm(cell - point, axis=1).min() * case.mm_per_unit)


def measure_nose_detector(maker: "CaseMaker", counts: dict, only, template, out: Path) -> int:
    """The geometric nose-tip detector on every face case: distance (mm) from the vertex it picks to
    the true nose tip (the template's, through the known correspondence; a real mesh's given one)."""
    from animateme.nose_detector import detect_nose_tip
    from animateme_blender.core.fit.landmarks import template_landmark_points

    lines, errors = [], []
    for category, count in counts.items():
        if only and category not in only:
            maker.subject_count += count
            continue
        for case in maker.build(category, count):
            if not case.expect_face:
                continue
            start = time.perf_counter()
            index, score = detect_nose_tip(case.vertices)
            seconds = time.perf_counter() - start
            if case.truth is not None:   # the landmark's offset is in mm: place it on the truth in mm
                truth = template_landmark_points(template, ["nose_tip"]).on(case.truth * case.mm_per_unit)[0]
            else:
                truth = case.vertices[case.landmarks["nose_tip"]] * case.mm_per_unit
            error = float(np.linalg.norm(case.vertices[index] * case.mm_per_unit - truth))
            errors.append(error)
            lines.append(f"| {category} | {case.name} | {error:.1f} | {score:.2f} | {seconds:.1f} |")
            print(lines[-1], flush=True)
    errors = np.array(errors)
    summary = (f"{int((errors <= 10).sum())} of {len(errors)} face cases within 10 mm of the true nose tip, "
               f"{int((errors <= 20).sum())} within 20 mm; median {np.median(errors):.1f} mm")
    path = out / "nose_detector.md"
    path.write_text("# Geometric nose-tip detector (`animateme bench-register --nose-detector`)\n\n"
                    + summary + ".\n\n| category | case | error mm | score | s |\n|---|---|---|---|---|\n"
                    + "\n".join(lines) + "\n")
    print(summary)
    print(f"wrote {path}")
    return 0
