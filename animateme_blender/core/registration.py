"""Fit the template to any neutral face mesh: another topology, scale, pose and unit.

Stages (each measured by `animateme bench-register`):
1. **Check and normalise** the input (finite, enough vertices, valid faces; degenerate faces are
   ignored; the caller's arrays are never written). Pick the face part: a vertex group the user
   names, else every large connected component is tried and the best-fitting one kept.
2. **Rigid alignment** (a similarity: rotation, translation, scale, so any unit works): ICP from
   many starts, the input's principal axes matched to the template's in all 24 proper ways plus
   the 24 axis-aligned rotations (any Y-up/Z-up/sideways/upside-down convention), at two scales,
   each slid along its forward axis until the noses' heights agree (on a whole head the face is on
   the surface, not at the centroid). The best few distinct poses each get a short model fit; the
   lowest residual among those whose nose stands out wins (a flexible model fits the smooth back
   of a head about as well as a face, but the back has no nose). User landmarks, when given,
   replace the search.
3. **Model fit**: the face model's identity modes and the similarity together, by Gauss-Newton on
   point-to-plane distances from each template vertex to the input, with a ridge prior on the
   identity weights (w ~ N(0, 1)) annealed from strong to weak. Correspondences that land on the
   input's boundary, too far, or on a surface facing the other way are dropped, so a face with a
   body, or a face cut in half, does not drag the template.
4. **Refinement** for what the modes cannot express: each template vertex moves only along its
   normal, by a Laplacian-smoothed offset to the input surface. A pure surface fit (meshmonk's
   pyramid) slides along the surface (2.9 mm mean in our probe); an offset along the normal cannot
   slide, so the eyes, mouth and nose stay where the model fit put them.
5. **Score**, taken before the refinement (which can pull the template onto any surface): the
   model-fit residual, the coverage, the size of the identity weights, and how far the nose
   stands out. A sphere, a cube or half a face fails one of them and the fit is refused with what
   to do (`require_face=False` keeps it anyway).
6. **Cache** by mesh fingerprint (`FitCache`).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree

from .errors import AnimateMeError

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

MIN_VERTICES = 300
MAX_VERTICES = 20_000_000       # beyond this the arrays alone approach the memory of a laptop
MAX_FIT_POINTS = 60_000         # the fit uses at most this many input vertices (random subset)
PROJECT_BELOW = 5_000           # parts with fewer vertices: correspondences on triangles, not vertices
MAX_RESIDUAL_MM = 1.5           # model-fit mean point-to-plane residual accepted
MAX_IDENTITY_NORM = 4.0         # RMS identity weight accepted (w ~ N(0,1) for real faces)
MIN_NOSE_MM = 8.0               # the fitted nose must stand out this far
MIN_COVERAGE = 0.6              # fraction of template vertices with a valid correspondence
EARLY_MODES = 30                # modes fitted in the first half of the model fit
QUICK_ITERATIONS = 24           # model-fit iterations used to choose between rigid poses
FIT_VERSION = 1                 # bump when the fit changes, so cached fits are redone

# The landmarks a user may give, as Multi-PIE 68-point indices (subject's right = image left).
LANDMARK_NAMES = {
    "right_eye_outer": 36, "right_eye_inner": 39, "left_eye_inner": 42, "left_eye_outer": 45,
    "nose_tip": 30, "mouth_right": 48, "mouth_left": 54, "chin": 8,
}


# ----------------------------------------------------------------------------------------------
# Results
@dataclass
class Similarity:
    """Template frame (mm) -> input frame: y = scale * x @ rotation.T + translation."""
    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def apply_vector(self, vectors: np.ndarray) -> np.ndarray:
        """Displacements (no translation): template mm -> input units."""
        return self.scale * vectors @ self.rotation.T

    def inverse(self, points: np.ndarray) -> np.ndarray:
        return (points - self.translation) @ self.rotation / self.scale

    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out


@dataclass
class FitScore:
    residual_mm: float      # mean |point-to-plane| distance after the model fit, template mm
    coverage: float         # fraction of template vertices that found the input surface
    refined_residual_mm: float = float("nan")   # same after the refinement
    identity_norm: float = float("nan")         # RMS identity weight (~1 for a typical face)
    nose_mm: float = float("nan")               # how far the nose stands out (nose_protrusion)

    @property
    def accepted(self) -> bool:
        return (self.residual_mm <= MAX_RESIDUAL_MM and self.coverage >= MIN_COVERAGE
                and self.identity_norm <= MAX_IDENTITY_NORM and self.nose_mm >= MIN_NOSE_MM)

    def describe(self) -> str:
        return (f"residual {self.residual_mm:.2f} mm (limit {MAX_RESIDUAL_MM}), coverage "
                f"{100 * self.coverage:.0f}% (minimum {100 * MIN_COVERAGE:.0f}%), identity "
                f"{self.identity_norm:.1f} (limit {MAX_IDENTITY_NORM}), nose {self.nose_mm:.0f} mm "
                f"(minimum {MIN_NOSE_MM})")


@dataclass
class Fit:
    vertices: np.ndarray            # (V,3) fitted template in the input's own coordinates/units
    template_space: np.ndarray      # (V,3) the same shape in the template frame, mm
    transform: Similarity           # template frame mm -> input frame
    score: FitScore
    fingerprint: str                # of the input mesh (and options) the fit was made for
    template_fingerprint: str
    identity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    part: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # input vertices used
    template_faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int32))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(
            partial, vertices=self.vertices, template_space=self.template_space,
            scale=self.transform.scale, rotation=self.transform.rotation,
            translation=self.transform.translation, residual_mm=self.score.residual_mm,
            coverage=self.score.coverage, refined_residual_mm=self.score.refined_residual_mm,
            identity_norm=self.score.identity_norm, nose_mm=self.score.nose_mm, score=self.score.residual_mm,
            accepted=self.score.accepted, fingerprint=self.fingerprint,
            template_fingerprint=self.template_fingerprint, identity=self.identity, part=self.part,
            template_faces=self.template_faces, fit_version=FIT_VERSION)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Fit":
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["fit_version"]) != FIT_VERSION:
                    raise AnimateMeError(f"{path} was made by another version of the fit: register again")
                return cls(
                    vertices=data["vertices"], template_space=data["template_space"],
                    transform=Similarity(float(data["scale"]), data["rotation"], data["translation"]),
                    score=FitScore(float(data["residual_mm"]), float(data["coverage"]),
                                   float(data["refined_residual_mm"]), float(data["identity_norm"]),
                                   float(data["nose_mm"])),
                    fingerprint=str(data["fingerprint"]),
                    template_fingerprint=str(data["template_fingerprint"]),
                    identity=data["identity"], part=data["part"], template_faces=data["template_faces"])
        except (OSError, KeyError, ValueError) as error:
            raise AnimateMeError(f"cannot read fit {path} ({error}): register the mesh again") from None


# ----------------------------------------------------------------------------------------------
# Input checks
@dataclass
class _Surface:
    """The part of the input the fit uses, in input units, with what the fit needs of it."""
    points: np.ndarray        # (n,3) vertices of the part (subset when huge)
    normals: np.ndarray       # (n,3) unit area-weighted vertex normals
    boundary: np.ndarray      # (n,) bool: on an open boundary of the input
    index: np.ndarray         # (n,) their indices into the input's vertices
    tree: cKDTree
    faces: np.ndarray | None = None      # (F,3) triangles over `points` (None: a vertex subset)
    incident: np.ndarray | None = None   # (n,w) triangles around each point, padded by repetition


def check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64/int64 copies; raises AnimateMeError with what to do."""
    if len(np.shape(vertices)) >= 1 and np.shape(vertices)[0] > MAX_VERTICES:   # before any copy
        raise AnimateMeError(f"the mesh has {np.shape(vertices)[0]:,} vertices (limit {MAX_VERTICES:,}): "
                             "decimate it first (Blender: Decimate modifier)")
    try:
        vertices = np.array(vertices, dtype=np.float64, copy=True)
        faces = np.array(faces, dtype=np.int64, copy=True)
    except (TypeError, ValueError):
        raise AnimateMeError("the mesh must be numeric arrays: vertices (N,3) and faces (F,3)") from None
    if vertices.ndim != 2 or vertices.shape[1:] != (3,) or len(vertices) == 0:
        raise AnimateMeError(f"the mesh has no usable vertices (shape {vertices.shape}): select a mesh object with geometry")
    if not np.isfinite(vertices).all():
        raise AnimateMeError(f"{int((~np.isfinite(vertices).any(1)).sum())} vertices have NaN or infinite "
                             "coordinates: fix or delete them (Blender: Mesh > Clean Up)")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise AnimateMeError(f"the mesh needs triangle faces (F,3), got shape {faces.shape}: triangulate it first")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise AnimateMeError("face indices point outside the vertex list: the mesh is corrupt; re-export it")
    if len(np.unique(faces)) < MIN_VERTICES:
        raise AnimateMeError(f"the mesh has only {len(np.unique(faces))} vertices in faces; a face needs at least "
                             f"{MIN_VERTICES}: subdivide it or use a denser mesh")
    return vertices, faces


def _usable_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces with three distinct corners and a non-zero area (the rest are ignored)."""
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[distinct]
    area2 = np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                    vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1)
    scale = np.ptp(vertices, axis=0).max()
    return faces[area2 > 1e-12 * max(scale, 1e-30) ** 2]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], cross)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-30)


def _boundary_vertices(faces: np.ndarray, count: int) -> np.ndarray:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    key = edges[:, 0] * count + edges[:, 1]
    unique, counts = np.unique(key, return_counts=True)
    single = unique[counts == 1]
    flag = np.zeros(count, dtype=bool)
    flag[single // count] = True
    flag[single % count] = True
    return flag


def components(faces: np.ndarray, count: int) -> np.ndarray:
    """(count,) component label of each vertex (-1 for vertices in no face)."""
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = sp.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    used = np.zeros(count, dtype=bool)
    used[faces.ravel()] = True
    return np.where(used, labels, -1)


def _candidate_parts(vertices: np.ndarray, faces: np.ndarray, part) -> list[np.ndarray]:
    """Vertex index sets to try as the face: the named group, else large components by area."""
    if part is not None:
        part = np.asarray(part)
        index = np.flatnonzero(part) if part.dtype == bool else np.unique(part.astype(np.int64))
        if part.dtype == bool and len(part) != len(vertices):
            raise AnimateMeError("the vertex-group mask must have one entry per vertex")
        if len(index) == 0 or index.min() < 0 or index.max() >= len(vertices):
            raise AnimateMeError("the named vertex group is empty or points outside the mesh: assign the face to it")
        if len(index) < MIN_VERTICES:
            raise AnimateMeError(f"the vertex group has {len(index)} vertices; a face needs at least {MIN_VERTICES}")
        return [index]
    labels = components(faces, len(vertices))
    area = np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                   vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1)
    per_label = np.bincount(labels[faces[:, 0]], weights=area, minlength=labels.max() + 1)
    counts = np.bincount(labels[labels >= 0], minlength=labels.max() + 1)
    order = np.argsort(-per_label)
    keep = [c for c in order[:4] if per_label[c] >= 0.2 * per_label[order[0]] and counts[c] >= MIN_VERTICES]
    if not keep:
        raise AnimateMeError(f"no connected part of the mesh has {MIN_VERTICES} vertices: use a denser face mesh")
    return [np.flatnonzero(labels == c) for c in keep]


def _surface(vertices: np.ndarray, faces: np.ndarray, index: np.ndarray, rng) -> _Surface:
    inside = np.zeros(len(vertices), dtype=bool)
    inside[index] = True
    part_faces = faces[inside[faces].all(1)]
    normals = vertex_normals(vertices, part_faces)
    boundary = _boundary_vertices(part_faces, len(vertices))
    used = np.zeros(len(vertices), dtype=bool)
    used[part_faces.ravel()] = True
    index = np.flatnonzero(used)
    if len(index) < MIN_VERTICES:
        raise AnimateMeError(f"the face part has only {len(index)} vertices in usable faces; a face needs "
                             f"{MIN_VERTICES}: check for degenerate or zero-area faces")
    if len(index) > PROJECT_BELOW:
        # Dense enough that its vertices (point-to-plane) stand for its surface; beyond
        # MAX_FIT_POINTS a random subset of them.
        if len(index) > MAX_FIT_POINTS:
            index = np.sort(rng.choice(index, MAX_FIT_POINTS, replace=False))
        points = vertices[index]
        return _Surface(points, normals[index], boundary[index], index, cKDTree(points))
    # Coarse: correspondences are closest points on its triangles (its vertices are too far
    # apart to stand for its surface: on a 2k-vertex head, 1.2 mm mean error with vertices, 0.4 mm
    # projected; on denser meshes the vertices, which lie on the true surface, do better).
    local = np.full(len(vertices), -1, dtype=np.int64)
    local[index] = np.arange(len(index))
    local_faces = local[part_faces]
    points = vertices[index]
    return _Surface(points, normals[index], boundary[index], index, cKDTree(points),
                    local_faces, _incidence(local_faces, len(index)))


def _incidence(faces: np.ndarray, count: int) -> np.ndarray:
    """(count, w) the triangles around each vertex; short rows repeat their first triangle."""
    flat = faces.ravel()
    triangles = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(flat, kind="stable")
    flat, triangles = flat[order], triangles[order]
    counts = np.bincount(flat, minlength=count)
    start = np.cumsum(counts) - counts
    table = np.full((count, max(int(counts.max()), 1)), -1, dtype=np.int64)
    table[flat, np.arange(len(flat)) - start[flat]] = triangles
    return np.where(table >= 0, table, table[:, :1])


# ----------------------------------------------------------------------------------------------
# Rigid alignment
def _umeyama(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted similarity (s, R, t) minimising sum w |s R x + t - y|^2."""
    weight = weight / max(weight.sum(), 1e-30)
    mu_x, mu_y = weight @ source, weight @ target
    x, y = source - mu_x, target - mu_y
    cov = (y * weight[:, None]).T @ x
    u, d, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    correction = np.diag([1.0, 1.0, sign])
    rotation = u @ correction @ vt
    variance = weight @ (x * x).sum(1)
    scale = float(np.trace(np.diag(d) @ correction) / max(variance, 1e-30))
    return scale, rotation, mu_y - scale * rotation @ mu_x


def _principal_axes(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return vectors[:, ::-1]  # largest variance first


def _proper_signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[np.arange(3), perm] = signs
            if np.linalg.det(matrix) > 0:
                out.append(matrix)
    return out


def _start_rotations(template_points: np.ndarray, input_points: np.ndarray) -> list[np.ndarray]:
    """Template -> input rotations to start ICP from: principal axes matched in the 24 proper
    ways, and the 24 axis-aligned rotations (every Y-up/Z-up/sideways convention)."""
    cube = _proper_signed_permutations()
    axes_t, axes_i = _principal_axes(template_points), _principal_axes(input_points)
    starts = []
    for m in cube:
        rotation = axes_i @ m @ axes_t.T
        if np.linalg.det(rotation) < 0:
            rotation = axes_i @ (m @ np.diag([1.0, 1.0, -1.0])) @ axes_t.T
        starts.append(rotation)
    return starts + cube


def _icp(template_points, surface: _Surface, scale, rotation, translation, iterations, cap_mm):
    """Similarity ICP, template points -> closest input vertices, robust (capped) weights.
    Returns (s, R, t, robust residual in template mm)."""
    for _ in range(iterations):
        moved = scale * template_points @ rotation.T + translation
        distance, nearest = surface.tree.query(moved)
        distance_mm = distance / scale
        weight = 1.0 / (1.0 + (distance_mm / cap_mm) ** 2)
        weight[surface.boundary[nearest]] *= 0.1
        new_scale, rotation, translation = _umeyama(template_points, surface.points[nearest], weight)
        # The scale may not collapse (a tiny template fits anywhere); limit each step.
        scale = float(np.clip(new_scale, 0.8 * scale, 1.25 * scale))
        translation = surface.points[nearest].T @ weight / weight.sum() - scale * rotation @ (template_points.T @ weight / weight.sum())
    moved = scale * template_points @ rotation.T + translation
    distance, _ = surface.tree.query(moved)
    residual = float(np.mean(np.minimum(distance / scale, cap_mm) ** 2))
    return scale, rotation, translation, residual


def rigid_alignment(template_points: np.ndarray, surface: _Surface, rng,
                    cancel: Cancel | None = None, keep: int = 3) -> list[Similarity]:
    """The best few distinct similarities template (centred, mm) -> input over many starts,
    best first (the model fit decides between them)."""
    sample = template_points[rng.choice(len(template_points), min(150, len(template_points)), replace=False)]
    coarse_index = rng.choice(len(surface.points), min(3000, len(surface.points)), replace=False)
    coarse = _Surface(surface.points[coarse_index], surface.normals[coarse_index],
                      surface.boundary[coarse_index], coarse_index, cKDTree(surface.points[coarse_index]))
    radius_t = np.sqrt(((template_points - template_points.mean(0)) ** 2).sum(1).mean())
    centre_i = surface.points.mean(0)
    radius_i = np.sqrt(((surface.points - centre_i) ** 2).sum(1).mean())
    results = []
    for rotation in _start_rotations(template_points, surface.points):
        if cancel is not None and cancel():
            raise AnimateMeError("registration cancelled")
        for factor in (1.0, 0.65):
            scale = factor * radius_i / radius_t
            translation = centre_i - scale * rotation @ template_points.mean(0)
            # Slide along the face's forward axis (+Z in the template) until the most forward
            # points agree: on a whole head the face is on the surface, not at the centroid.
            forward = rotation[:, 2]
            gap = (coarse.points @ forward).max() - ((scale * template_points @ rotation.T + translation) @ forward).max()
            translation = translation + gap * forward
            results.append(_icp(sample, coarse, scale, rotation, translation, 6, 15.0))
    results.sort(key=lambda r: r[3])
    chosen: list[tuple] = []
    for result in results:
        if len(chosen) == 2 * keep:
            break
        if all(not _similar(result, other) for other in chosen):
            chosen.append(result)
    refined = sorted((_icp(template_points, surface, *r[:3], 20, 8.0) for r in chosen), key=lambda r: r[3])
    distinct: list[tuple] = []
    for result in refined:
        if all(not _similar(result, other) for other in distinct):
            distinct.append(result)
    return [Similarity(r[0], r[1], r[2]) for r in distinct[:keep]]


def _similar(a, b) -> bool:
    """Two (s, R, t, ...) poses that ICP would take to the same place."""
    angle = np.degrees(np.arccos(np.clip((np.trace(a[1].T @ b[1]) - 1) / 2, -1, 1)))
    shift = np.linalg.norm(a[2] - b[2]) / a[0]
    return angle < 15.0 and shift < 15.0 and abs(np.log(a[0] / b[0])) < 0.15


def landmark_alignment(template_points: np.ndarray, template_landmarks: np.ndarray,
                       vertices: np.ndarray, landmarks: dict) -> Similarity:
    names = [n for n in landmarks if n in LANDMARK_NAMES]
    unknown = [n for n in landmarks if n not in LANDMARK_NAMES]
    if unknown:
        raise AnimateMeError(f"unknown landmark names {unknown}: use {sorted(LANDMARK_NAMES)}")
    if len(names) < 3:
        raise AnimateMeError("give at least 3 landmarks (eye corners, nose tip, mouth corners, chin)")
    index = np.array([int(landmarks[n]) for n in names])
    if index.min() < 0 or index.max() >= len(vertices):
        raise AnimateMeError("a landmark vertex index is outside the mesh: pick the landmarks again")
    source = template_points[template_landmarks[[LANDMARK_NAMES[n] for n in names]]]
    scale, rotation, translation = _umeyama(source, vertices[index], np.ones(len(names)))
    return Similarity(scale, rotation, translation)


# ----------------------------------------------------------------------------------------------
# Model fit and refinement
def _rotation_from_vector(omega: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(omega)
    if angle < 1e-12:
        return np.eye(3)
    k = omega / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


@dataclass
class _Correspondence:
    target: np.ndarray        # (V,3) closest input points, template frame mm
    normal: np.ndarray        # (V,3) their normals, template frame
    weight: np.ndarray        # (V,) 0 = rejected
    distance_mm: np.ndarray   # (V,) point-to-point distance, mm


def _correspond(shape: np.ndarray, shape_normals: np.ndarray, transform: Similarity,
                surface: _Surface, max_mm: float) -> _Correspondence:
    moved = transform.apply(shape)
    if surface.faces is None:
        distance, nearest = surface.tree.query(moved)
        closest, normal, boundary = surface.points[nearest], surface.normals[nearest], surface.boundary[nearest]
    else:
        closest, normal, boundary = _closest_on_surface(moved, surface)
        distance = np.linalg.norm(moved - closest, axis=1)
    target = transform.inverse(closest)
    normal = normal @ transform.rotation
    distance_mm = distance / transform.scale
    facing = (normal * shape_normals).sum(1)
    weight = (1.0 / (1.0 + (distance_mm / max_mm) ** 2)) * (distance_mm < 2.5 * max_mm)
    weight = weight * (facing > 0.2) * ~boundary
    return _Correspondence(target, normal, weight, distance_mm)


def _closest_on_surface(points: np.ndarray, surface: _Surface):
    """Closest points on the triangles around the 2 nearest vertices; their interpolated normals;
    whether each lies on the open boundary (a boundary vertex, reached on the triangle's rim)."""
    from .transfer import closest_points_on_triangles

    _, nearest = surface.tree.query(points, k=2)
    candidates = surface.incident[nearest].reshape(len(points), -1)
    n, m = candidates.shape
    flat = candidates.reshape(-1)
    corners = surface.faces[flat]
    repeated = np.repeat(points, m, axis=0)
    bary = closest_points_on_triangles(repeated, *(surface.points[corners[:, k]] for k in range(3)))
    closest = np.einsum("nk,nkc->nc", bary, surface.points[corners])
    best = np.argmin(((repeated - closest) ** 2).sum(1).reshape(n, m), axis=1)
    pick = np.arange(n) * m + best
    bary, corners, closest = bary[pick], corners[pick], closest[pick]
    normal = np.einsum("nk,nkc->nc", bary, surface.normals[corners])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
    rim = bary.min(1) < 1e-9
    boundary = rim & (surface.boundary[corners] & (bary > 1e-9)).any(1)
    return closest, normal, boundary


def _skew(points: np.ndarray) -> np.ndarray:
    """(n,3,3) matrices A with A @ omega = omega cross x."""
    skew = np.zeros((len(points), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = points[:, 2], -points[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = -points[:, 2], points[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = points[:, 1], -points[:, 0]
    return skew


def _plane_rows(shape, vertex, target, normal, weight, modes):
    """modes: (V,3,M). Gauss-Newton rows n.(x' - p) for pairs (template vertex, target in template frame) over the
    unknowns [omega(3), sigma, tau(3), identity(M)] of x' = (1+sigma)(x + omega cross x) + tau + B dw."""
    root = np.sqrt(weight)
    x = shape[vertex]
    rows = np.hstack([np.cross(x, normal), (normal * x).sum(1, keepdims=True), normal,
                      np.einsum("vcm,vc->vm", modes[vertex], normal)])
    return root[:, None] * rows, root * (normal * (x - target)).sum(1)


def _point_rows(shape, vertex, target, weight, modes):
    """The same unknowns, three rows (x' - p) per pair."""
    root = np.repeat(np.sqrt(weight), 3)
    x = shape[vertex]
    rows = np.concatenate([_skew(x), x[:, :, None], np.broadcast_to(np.eye(3), (len(x), 3, 3)),
                           modes[vertex]], axis=2).reshape(-1, 7 + modes.shape[2])
    return root[:, None] * rows, root * (x - target).reshape(-1)


def _aggregate(vertex, target, weight, count):
    """Many weighted pairs per template vertex -> one pair each (same quadratic up to a constant):
    total weight and weighted mean target."""
    total = np.bincount(vertex, weights=weight, minlength=count)
    mean = np.stack([np.bincount(vertex, weights=weight * target[:, k], minlength=count) for k in range(3)], 1)
    used = np.flatnonzero(total > 0)
    return used, mean[used] / total[used, None], total[used]


def model_fit(template_points: np.ndarray, faces: np.ndarray, modes: np.ndarray, surface: _Surface,
              transform: Similarity, iterations: int = 80, landmark_pairs=None,
              ridge_start: float = 1e4, ridge_end: float = 0.03, reverse_points: int = 4000,
              progress: Progress | None = None, cancel: Cancel | None = None):
    """Identity weights and similarity by Gauss-Newton on point-to-plane residuals, both ways:
    template vertices to their closest input points, and input points (a sample) to their closest
    template vertices, so features pull features and the template cannot slide over the head.
    template_points (V,3) centred mm; modes (M,V,3) mm. Returns (shape, weights, transform, corr)."""
    count, num_modes = len(template_points), len(modes)
    basis = modes.reshape(num_modes, -1).T                    # (3V, M)
    by_vertex = np.ascontiguousarray(modes.transpose(1, 2, 0))   # (V,3,M): row gathers are cheap
    weights = np.zeros(num_modes)
    template_boundary = _boundary_vertices(faces, count)
    sample = np.random.default_rng(1).choice(len(surface.points), min(reverse_points, len(surface.points)), replace=False)
    for step in range(iterations):
        if cancel is not None and cancel():
            raise AnimateMeError("registration cancelled")
        fraction = min(step / max(0.7 * iterations, 1), 1.0)    # anneal, then hold for the last 30 %
        ridge = ridge_start * (ridge_end / ridge_start) ** fraction   # prior strength, strong -> weak
        max_mm = 12.0 * (1.5 / 12.0) ** fraction                      # correspondence reach, far -> near
        point_share = 0.5 * (1.0 - fraction) + 0.05                   # point-to-point early, plane late
        shape = template_points + (basis @ weights).reshape(count, 3)
        normals = vertex_normals(shape, faces)
        corr = _correspond(shape, normals, transform, surface, max_mm)
        valid = np.flatnonzero(corr.weight > 0)
        if len(valid) < 0.2 * count:
            break
        # Reverse: input points near the template (not beyond its border) to their closest vertex.
        points = transform.inverse(surface.points[sample])
        distance, nearest = cKDTree(shape).query(points)
        in_normals = surface.normals[sample] @ transform.rotation
        keep = (~template_boundary[nearest]) & (distance < 2.5 * max_mm) & \
               ((in_normals * normals[nearest]).sum(1) > 0.2)
        reverse_weight = 0.5 * (1.0 / (1.0 + (distance[keep] / max_mm) ** 2)) * (len(valid) / max(keep.sum(), 1))
        r_vertex, r_target, r_weight = _aggregate(nearest[keep], points[keep], reverse_weight, count)
        # The first half fits only the largest modes: cheaper, and the small ones cannot yet
        # chase the wrong correspondences.
        active = num_modes if step >= iterations // 2 else min(EARLY_MODES, num_modes)
        use = by_vertex if active == num_modes else by_vertex[:, :, :active]
        f_rows, f_res = _plane_rows(shape, valid, corr.target[valid], corr.normal[valid],
                                    (1 - point_share) * corr.weight[valid], use)
        r_rows, r_res = _plane_rows(shape, r_vertex, r_target, normals[r_vertex], (1 - point_share) * r_weight, use)
        p_vertex, p_target, p_weight = _aggregate(np.concatenate([valid, nearest[keep]]),
                                                  np.concatenate([corr.target[valid], points[keep]]),
                                                  np.concatenate([corr.weight[valid], reverse_weight]), count)
        p_rows, p_res = _point_rows(shape, p_vertex, p_target, point_share * p_weight, use)
        rows, residual = [f_rows, r_rows, p_rows], [f_res, r_res, p_res]
        if landmark_pairs is not None:
            lm_vertex, lm_target = landmark_pairs   # template vertex index, input-frame point
            strength = 100.0 * (1.0 - fraction)   # landmarks (clicked, so rough) guide early; the surface decides
            l_rows, l_res = _point_rows(shape, lm_vertex, transform.inverse(lm_target),
                                        np.full(len(lm_vertex), strength), use)
            rows.append(l_rows)
            residual.append(l_res)
        matrix = np.vstack(rows)
        rhs = -np.concatenate(residual)
        normal_matrix = matrix.T @ matrix
        normal_rhs = matrix.T @ rhs
        normal_matrix[7:, 7:] += ridge * np.eye(active)
        normal_rhs[7:] -= ridge * weights[:active]
        normal_matrix[:7, :7] += 1e-6 * np.eye(7)
        delta = np.linalg.solve(normal_matrix, normal_rhs)
        omega, sigma, tau = delta[:3], delta[3], delta[4:7]
        weights[:active] += delta[7:]
        rotation = _rotation_from_vector(omega)
        transform = Similarity(transform.scale * (1.0 + sigma), transform.rotation @ rotation,
                               transform.scale * transform.rotation @ tau + transform.translation)
        if progress is not None:
            progress(step / iterations, "fitting the face model")
    shape = template_points + (basis @ weights).reshape(count, 3)
    corr = _correspond(shape, vertex_normals(shape, faces), transform, surface, 3.0)
    return shape, weights, transform, corr


def nose_protrusion(shape: np.ndarray, transform: Similarity, surface: _Surface, nose: int) -> float:
    """How far (mm) the input stands out along the face's forward axis (+Z of the template frame)
    at the fitted nose tip, above the smooth bowl (a + b x + c y + d r^2) fitted to a ring 30-45 mm
    around it. A nose: 10-30 mm; a sphere, the back of a head or a flat side: about 0."""
    points = transform.inverse(surface.points)
    offset = points[:, :2] - shape[nose, :2]
    lateral = np.linalg.norm(offset, axis=1)
    depth = points[:, 2] - shape[nose, 2]
    tip = (lateral < 8.0) & (np.abs(depth) < 15.0)
    ring = (lateral > 30.0) & (lateral < 45.0) & (np.abs(depth) < 80.0)
    if not tip.any() or ring.sum() < 8:
        return 0.0
    design = np.column_stack([np.ones(ring.sum()), offset[ring], lateral[ring] ** 2])
    coefficients, *_ = np.linalg.lstsq(design, depth[ring], rcond=None)
    return float(depth[tip].max() - coefficients[0])


def _fit_residual(shape: np.ndarray, corr: _Correspondence) -> float:
    """Mean |point-to-plane| distance (mm) over the accepted correspondences."""
    valid = corr.weight > 0
    if not valid.any():
        return float("inf")
    return float(np.abs((corr.normal * (corr.target - shape)).sum(1))[valid].mean())


def _laplacian(faces: np.ndarray, count: int) -> sp.csr_matrix:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    return (sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency).tocsr()


def refine_along_normals(shape: np.ndarray, faces: np.ndarray, transform: Similarity, surface: _Surface,
                         iterations: int = 3, smoothness: float = 2.0, max_mm: float = 3.0) -> np.ndarray:
    """Move each template vertex along its normal onto the input, offsets smoothed over the mesh
    (solve (C + smoothness L) h = C d); rejected vertices follow their neighbours."""
    laplacian = _laplacian(faces, len(shape))
    for _ in range(iterations):
        normals = vertex_normals(shape, faces)
        corr = _correspond(shape, normals, transform, surface, max_mm)
        facing = np.maximum((corr.normal * normals).sum(1), 0.3)
        # Signed distance along the template normal to the input's tangent plane.
        offset = (corr.normal * (corr.target - shape)).sum(1) / facing
        offset = np.clip(offset, -max_mm, max_mm)
        confidence = sp.diags(corr.weight)
        system = (confidence + smoothness * laplacian + 1e-6 * sp.identity(len(shape))).tocsc()
        height = spsolve(system, corr.weight * offset)
        shape = shape + height[:, None] * normals
    return shape


# ----------------------------------------------------------------------------------------------
# Entry point
def fit_fingerprint(vertices: np.ndarray, faces: np.ndarray, template_fingerprint: str,
                    landmarks=None, part=None, refine: bool = True) -> str:
    """Hash of everything the fit depends on: geometry (rounded to 1e-6 of its size, and the
    size), topology, options, template."""
    digest = hashlib.sha256()
    vertices = np.asarray(vertices, dtype=np.float64)
    scale = max(float(np.ptp(vertices, axis=0).max()), 1e-30) if len(vertices) else 1.0
    digest.update(np.round(vertices / scale * 1e6).astype(np.int64).tobytes())
    digest.update(f"{scale:.6e}".encode())   # the same shape in metres and millimetres differs
    digest.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    digest.update(repr((template_fingerprint, sorted((landmarks or {}).items()), refine, FIT_VERSION)).encode())
    if part is not None:
        digest.update(np.asarray(part).astype(np.int64).tobytes())
    return f"n{len(vertices)}-{digest.hexdigest()[:20]}"


def fit_template(vertices, faces, template, landmarks: dict | None = None, part=None,
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 refine: bool = True, require_face: bool = True, seed: int = 0) -> Fit:
    """Fit `template` (vertices mm, faces, identity_modes, landmarks, fingerprint) to a mesh.

    vertices (N,3), faces (F,3): any units, pose and topology; never modified.
    landmarks: {name: vertex index} with names from LANDMARK_NAMES (at least 3), optional.
    part: vertex indices or a boolean mask of the face (a vertex group), optional.
    Raises AnimateMeError when the result is not a face (score below threshold) unless
    require_face is False.
    """
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(float(fraction), message)

    vertices, faces = check_mesh(vertices, faces)
    fingerprint = fit_fingerprint(vertices, faces, template.fingerprint, landmarks, part, refine)
    rng = np.random.default_rng(seed)
    report(0.0, "checking the mesh")
    faces = _usable_faces(vertices, faces)
    if len(faces) == 0:
        raise AnimateMeError("every face of the mesh is degenerate (zero area): re-export the mesh")
    template_vertices = np.asarray(template.vertices, dtype=np.float64)
    centre = template_vertices.mean(0)
    template_points = template_vertices - centre
    modes = np.asarray(template.identity_modes, dtype=np.float64)
    template_faces = np.asarray(template.faces, dtype=np.int64)

    landmarks_at = np.asarray(getattr(template, "landmarks", np.zeros(0)), dtype=np.int64)
    nose = int(landmarks_at[30]) if len(landmarks_at) > 30 else int(np.argmax(template_points[:, 2]))
    best = None
    parts = _candidate_parts(vertices, faces, part)
    for k, index in enumerate(parts):
        surface = _surface(vertices, faces, index, rng)
        report(0.05 + 0.2 * k / len(parts), "aligning the template")
        landmark_pairs = None
        if landmarks:
            transform = landmark_alignment(template_points, np.asarray(template.landmarks), vertices, landmarks)
            names = [n for n in landmarks]
            landmark_pairs = (np.asarray(template.landmarks)[[LANDMARK_NAMES[n] for n in names]],
                              vertices[[int(landmarks[n]) for n in names]])
            transform = Similarity(*_icp(template_points, surface, transform.scale, transform.rotation,
                                         transform.translation, 10, 8.0)[:3])
        else:
            # A short model fit from each distinct rigid pose picks the one to fit fully.
            starts = rigid_alignment(template_points, surface, rng, cancel)
            report(0.15, "choosing the pose")
            trials, noses = [], []
            for start in starts:
                shape, _, quick, corr = model_fit(template_points, template_faces, modes[:EARLY_MODES], surface,
                                                  start, iterations=QUICK_ITERATIONS, cancel=cancel)
                trials.append(_fit_residual(shape, corr) / max((corr.weight > 0).mean(), 1e-3))
                noses.append(nose_protrusion(shape, quick, surface, nose))
            # A smooth back of the head can be fitted as well as a face by a flexible model, but
            # it has no nose: keep the poses whose nose stands out nearly as far as the best's.
            noses = np.asarray(noses)
            trials = np.where(noses >= 0.6 * noses.max(), trials, np.inf)
            transform = starts[int(np.argmin(trials))]
        report(0.3, "fitting the face model")
        shape, identity, transform, corr = model_fit(
            template_points, template_faces, modes, surface, transform, landmark_pairs=landmark_pairs,
            progress=lambda f, m: report(0.3 + 0.5 * f, m), cancel=cancel)
        valid = corr.weight > 0
        residual = _fit_residual(shape, corr)
        score = FitScore(residual, float(valid.mean()), identity_norm=float(np.sqrt(np.mean(identity ** 2))),
                         nose_mm=nose_protrusion(shape, transform, surface, nose))
        candidate = (shape, identity, transform, score, surface, index)
        if best is None or (score.accepted, -score.residual_mm) > (best[3].accepted, -best[3].residual_mm):
            best = candidate
    shape, identity, transform, score, surface, part_index = best
    if require_face and not score.accepted:
        raise AnimateMeError(
            f"this does not look like a face to the fit ({score.describe()}): check the mesh is a neutral "
            "face, select only the face (a vertex group), or give landmarks")
    if refine:
        report(0.85, "refining the fit")
        shape = refine_along_normals(shape, template_faces, transform, surface)
        corr = _correspond(shape, vertex_normals(shape, template_faces), transform, surface, 3.0)
        score.refined_residual_mm = _fit_residual(shape, corr)
    # Back to the template's own frame (undo the centring) for the stored transform.
    transform = Similarity(transform.scale, transform.rotation,
                           transform.translation - transform.scale * transform.rotation @ centre)
    template_space = shape + centre
    report(1.0, "fit done")
    return Fit(vertices=transform.apply(template_space), template_space=template_space, transform=transform,
               score=score, fingerprint=fingerprint, template_fingerprint=template.fingerprint,
               identity=identity.astype(np.float32), part=part_index,
               template_faces=template_faces.astype(np.int32))


class FitCache:
    """Fits stored by fingerprint in a folder: regenerating does not refit unchanged geometry."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path(self, fingerprint: str) -> Path:
        return self.directory / f"fit-{fingerprint}.npz"

    def fit(self, vertices, faces, template, **options) -> tuple[Fit, bool]:
        """(fit, came_from_cache)."""
        key = fit_fingerprint(np.asarray(vertices), np.asarray(faces), template.fingerprint,
                              options.get("landmarks"), options.get("part"), options.get("refine", True))
        path = self.path(key)
        if path.exists():
            try:
                fit = Fit.load(path)
                if fit.template_fingerprint == template.fingerprint and fit.fingerprint == key:
                    return fit, True
            except AnimateMeError:
                pass  # unreadable or stale: refit below and overwrite
        fit = fit_template(vertices, faces, template, **options)
        fit.save(path)
        return fit, False
