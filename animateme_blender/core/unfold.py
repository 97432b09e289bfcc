"""No triangle of the user's mesh turns over: where one would, the motion there is relaxed.

The carry follows the template's smooth motion, but where the user's mesh is much finer than the
template's (the mouth corners, the inner eye corners) a squeeze the template takes in one triangle
lands on several of the user's, and one of them can face backwards: a white nick at the corner of
the mouth. The face model's own expressions do the same on such meshes; the artist still sees a tear.

`unfold` finds the triangles that face away from their rest normal in any frame, and replaces the
motion of their vertices (and a ring around them) by the smooth (harmonic) fill of the motion just
outside: the same shape of the mouth, without the fold. The region is the same for every frame, so
the animation stays continuous in time; it grows ring by ring until no triangle turns over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

ROUNDS = 12          # region growths before giving up (each a ring wider around what still folds)
DENSE_MAX = 2000     # regions up to this many vertices are solved densely
COS_LIMIT = 0.05     # a triangle counts as folded past ~87 degrees from its rest normal (a margin to 90)


@dataclass
class Unfolded:
    displacements: np.ndarray   # (K,N,3) the relaxed motion
    folded_before: int          # most triangles folded in one frame before
    folded_after: int           # ... and after (0 unless ROUNDS were not enough)
    relaxed: int                # vertices whose motion was replaced


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def folded(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """(K,F) True where a triangle faces more than ~87 degrees away from its rest normal
    (triangles of zero rest area never count)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    first, second = vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    rest = _cross(first, second)
    length = np.linalg.norm(rest, axis=1)
    valid = length > 1e-9 * max(float(length.max(initial=0.0)), 1e-30)
    out = np.zeros((len(displacements), len(faces)), dtype=bool)
    step = max(1, 2_000_000 // max(len(faces), 1))       # frames per batch: ~50 MB of work arrays
    for start in range(0, len(displacements), step):
        d = np.asarray(displacements[start:start + step], dtype=np.float64)
        moved = _cross(first + d[:, faces[:, 1]] - d[:, faces[:, 0]], second + d[:, faces[:, 2]] - d[:, faces[:, 0]])
        dot = np.einsum("kij,ij->ki", moved, rest)
        # cos < COS_LIMIT without a square root: dot < 0, or dot^2 < COS_LIMIT^2 |rest|^2 |moved|^2.
        bent = (dot < 0) | (dot * dot < COS_LIMIT ** 2 * length ** 2 * np.einsum("kij,kij->ki", moved, moved))
        out[start:start + step] = bent & valid
    return out


def _adjacency(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Edge weights 1 / length^2: vertices close together (across a thin lip-line triangle) are
    held together more than far ones, so the fill does not fold the thin triangles it spans."""
    rows = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    cols = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    adjacency = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(vertices),) * 2).tocsr()
    adjacency.sum_duplicates()
    adjacency.data[:] = 1.0
    coo = adjacency.tocoo()
    length = np.linalg.norm(vertices[coo.row] - vertices[coo.col], axis=1)
    scale = float(np.median(length)) if len(length) else 1.0
    adjacency.data[:] = 1.0 / np.maximum(length / max(scale, 1e-30), 1e-3) ** 2
    return adjacency


def _harmonic_fill(adjacency: sp.csr_matrix, region: np.ndarray, source: np.ndarray, target: np.ndarray) -> None:
    """target[:, region] = the harmonic fill (edge weights of `adjacency`) of source's motion
    around the region. A piece of the region with no vertex outside keeps about its own motion
    (a tiny pull towards it keeps the system regular)."""
    inside = np.flatnonzero(region)
    rows = adjacency[inside].tocoo()
    degree = np.bincount(rows.row, rows.data, len(inside))
    pull = 1e-6 * max(float(degree.mean()), 1e-30)
    position = np.full(len(region), -1)
    position[inside] = np.arange(len(inside))
    within = region[rows.col]
    inner = sp.coo_matrix((rows.data[within], (rows.row[within], position[rows.col[within]])),
                          shape=(len(inside),) * 2)
    system = (sp.diags(degree + pull) - inner).tocsc()
    border, slot = np.unique(rows.col[~within], return_inverse=True)
    ring = sp.coo_matrix((rows.data[~within], (rows.row[~within], slot)), shape=(len(inside), len(border))).tocsr()
    frames = source.shape[0]

    def columns(index):   # (K,n,3) -> (n, K*3)
        return np.ascontiguousarray(source[:, index].astype(np.float64).transpose(1, 0, 2).reshape(len(index), -1))

    right = ring @ columns(border) + pull * columns(inside)
    # A region is a few hundred vertices: dense is fastest there (SuperLU's many-column solve is slow).
    if len(inside) <= DENSE_MAX:
        solved = np.linalg.solve(system.toarray(), right)
    else:
        solved = splu(system).solve(np.asfortranarray(right))
    target[:, inside] = solved.reshape(len(inside), frames, 3).transpose(1, 0, 2)


def even_band(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray, band: np.ndarray) -> np.ndarray:
    """(K,N,3) with the motion of `band` (N, bool) replaced by the smooth fill of the motion around
    it: where the lips are one surface, the band between the upper lip's motion and the lower
    lip's stretches evenly instead of jumping at the contact."""
    values = np.array(displacements, copy=True)
    if np.any(band):
        _harmonic_fill(_adjacency(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)),
                       np.asarray(band, dtype=bool), np.asarray(displacements), values)
    return values


def unfold(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray,
           movable: np.ndarray | None = None) -> Unfolded:
    """Relax the motion where a triangle of the user's mesh would turn over.

    vertices (N,3), faces (F,3) triangles, displacements (K,N,3) in the same units; movable (N,)
    the vertices whose motion may change (the rest, e.g. rigid parts or vertices kept still, stay
    exactly as they are). Frames with no fold come back unchanged, to the bit, when none folds."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    out = np.asarray(displacements)
    count = len(vertices)
    movable = np.ones(count, dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
    checked = faces[movable[faces].any(axis=1)]
    if len(checked) == 0 or len(out) == 0:
        return Unfolded(out, 0, 0, 0)
    flags = folded(vertices, checked, out)
    before = int(flags.sum(axis=1).max())
    if before == 0:
        return Unfolded(out, 0, 0, 0)
    adjacency = _adjacency(vertices, faces)
    region = np.zeros(count, dtype=bool)
    values = out.copy()
    bad = checked[flags.any(axis=0)]
    for attempt in range(ROUNDS):
        grown = np.zeros(count, dtype=bool)
        grown[bad.ravel()] = True
        # The folded triangles' corners and a ring more, one ring wider each round: a fold that
        # survives inside the region needs room for a gentler fill.
        for _ in range(attempt + 1):
            grown |= adjacency @ grown.astype(np.float64) > 0
        region |= grown & movable
        _harmonic_fill(adjacency, region, out, values)
        # Only triangles touching the region changed: only they are looked at again.
        near = checked[region[checked].any(axis=1)]
        flags = folded(vertices, near, values)
        bad = near[flags.any(axis=0)]
        if not len(bad):
            break
    return Unfolded(values, before, int(flags.sum(axis=1).max()), int(region.sum()))
