"""No triangle of the user's mesh turns over: where one would, the motion there is relaxed.

The carry follows the template's smooth motion, but where the user's mesh is much finer than the
template's (the mouth corners, the inner eye corners) a squeeze the template takes in one triangle
lands on several of the user's, and one of them can face backwards: a white nick at the corner of
the mouth. The face model's own expressions do the same on such meshes; the artist still sees a tear.

`unfold` finds the triangles that face away from their rest normal in any frame, and smooths the
motion of their vertices (and a ring around them) over the user's edges, a little at first and
longer each round, growing the region by the next folds' rings, until no triangle turns over: the
same shape of the mouth, without the fold. The region and the smoothing are the same for every
frame (the smoothing is linear), so the animation stays continuous in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

NEEDLE = 0.2         # a triangle whose height is below this share of its longest edge is a needle
TIP_ROUNDS = 4       # rounds of needle tips following their long edges (neighbouring needles answer)
ROUNDS = 12          # rounds of each kind before giving up (smoothing, then filling)
MAX_SHARE = 0.1      # the relaxed region never grows past this share of the movable vertices
MAX_STEPS = 64       # smoothing steps a round at most (1, 2, 4, ... then 64 a round)
DENSE_MAX = 2000     # regions up to this many vertices are solved densely
COS_LIMIT = 0.05     # a triangle counts as folded past ~87 degrees from its rest normal (a margin to 90)


@dataclass
class Unfolded:
    displacements: np.ndarray   # (K,N,3) the relaxed motion
    folded_before: int          # most triangles folded in one frame before
    folded_after: int           # ... and after (0 unless the region reached its limits)
    relaxed: int                # vertices whose motion was replaced


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def _per_vertex(displacements: np.ndarray) -> np.ndarray:
    """(K,N,3) -> (N,K,3) contiguous: a triangle's corners then gather whole rows (fast)."""
    return np.ascontiguousarray(np.asarray(displacements).transpose(1, 0, 2))


def _folded(vertices: np.ndarray, faces: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """(F,K) of motion (N,K,3): True where a triangle faces more than ~87 degrees away from its
    rest normal (triangles of zero rest area never count). float32: a fold is no rounding matter."""
    rest_first = (vertices[faces[:, 1]] - vertices[faces[:, 0]]).astype(np.float32)
    rest_second = (vertices[faces[:, 2]] - vertices[faces[:, 0]]).astype(np.float32)
    rest = _cross(rest_first, rest_second)
    length = np.linalg.norm(rest, axis=1)
    valid = length > 1e-9 * max(float(length.max(initial=0.0)), 1e-30)
    out = np.zeros((len(faces), motion.shape[1]), dtype=bool)
    step = max(1, 2_000_000 // max(motion.shape[1], 1))      # triangles per batch: ~50 MB of work arrays
    for lo in range(0, len(faces), step):
        tri = faces[lo:lo + step]
        base = motion[tri[:, 0]]
        moved = _cross(rest_first[lo:lo + step, None] + (motion[tri[:, 1]] - base),
                       rest_second[lo:lo + step, None] + (motion[tri[:, 2]] - base))
        dot = np.einsum("fkj,fj->fk", moved, rest[lo:lo + step])
        # cos < COS_LIMIT without a square root: dot < 0, or dot^2 < COS_LIMIT^2 |rest|^2 |moved|^2.
        size = (length[lo:lo + step] ** 2)[:, None] * np.einsum("fkj,fkj->fk", moved, moved)
        out[lo:lo + step] = ((dot < 0) | (dot * dot < COS_LIMIT ** 2 * size)) & valid[lo:lo + step, None]
    return out


def folded(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """(K,F) True where a triangle faces more than ~87 degrees away from its rest normal in a frame."""
    motion = _per_vertex(np.asarray(displacements, dtype=np.float32))
    return _folded(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), motion).T


def adjacency(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Edge weights 1 / length^2: vertices close together (across a thin lip-line triangle) are
    held together more than far ones, so the fill does not fold the thin triangles it spans."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    rows = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    cols = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(vertices),) * 2).tocsr()
    graph.sum_duplicates()
    coo = graph.tocoo()
    length = np.linalg.norm(vertices[coo.row] - vertices[coo.col], axis=1)
    scale = float(np.median(length)) if len(length) else 1.0
    graph.data[:] = 1.0 / np.maximum(length / max(scale, 1e-30), 1e-3) ** 2
    return graph


def _harmonic_fill(graph: sp.csr_matrix, region: np.ndarray, source: np.ndarray, target: np.ndarray) -> None:
    """target[region] = the harmonic fill (edge weights of `graph`) of source's motion around the
    region; source and target (N,K,3). A piece of the region with no vertex outside keeps about
    its own motion (a tiny pull towards it keeps the system regular)."""
    inside = np.flatnonzero(region)
    rows = graph[inside].tocoo()
    degree = np.bincount(rows.row, rows.data, len(inside))
    pull = 1e-6 * max(float(degree.mean()), 1e-30)
    position = np.full(len(region), -1)
    position[inside] = np.arange(len(inside))
    within = region[rows.col]
    inner = sp.coo_matrix((rows.data[within], (rows.row[within], position[rows.col[within]])),
                          shape=(len(inside),) * 2)
    system = (sp.diags(degree + pull) - inner).tocsc()
    border, slot = np.unique(rows.col[~within], return_inverse=True)
    ring = sp.coo_matrix((rows.data[~within], (rows.row[~within], slot.ravel())),
                         shape=(len(inside), len(border))).tocsr()
    width = source.shape[1] * 3
    right = ring @ source[border].reshape(len(border), width).astype(np.float64)
    right += pull * source[inside].reshape(len(inside), width)
    # A region is a few hundred vertices: dense is fastest there (SuperLU's many-column solve is slow).
    if len(inside) <= DENSE_MAX:
        solved = np.linalg.solve(system.toarray(), right)
    else:
        solved = splu(system).solve(np.asfortranarray(right))
    target[inside] = solved.reshape(target[inside].shape)


def even_band(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray, band: np.ndarray,
              graph: sp.csr_matrix | None = None) -> np.ndarray:
    """(K,N,3) with the motion of `band` (N, bool) replaced by the smooth fill of the motion around
    it: where the lips are one surface, the band between the upper lip's motion and the lower
    lip's stretches evenly instead of jumping at the contact."""
    band = np.asarray(band, dtype=bool)
    if not band.any():
        return displacements
    motion = _per_vertex(displacements)
    _harmonic_fill(adjacency(vertices, faces) if graph is None else graph, band, motion.copy(), motion)
    return np.ascontiguousarray(motion.transpose(1, 0, 2))


def _needle(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T,) True for needle-thin triangles: height over the longest edge below NEEDLE."""
    points = vertices[triangles]
    lengths = np.linalg.norm(points[:, [1, 2, 0]] - points, axis=2).max(axis=1)
    area2 = np.linalg.norm(np.cross(points[:, 1] - points[:, 0], points[:, 2] - points[:, 0]), axis=1)
    return area2 < NEEDLE * lengths ** 2


def _tips_follow_long_edges(vertices: np.ndarray, triangles: np.ndarray, values: np.ndarray,
                            movable: np.ndarray, region: np.ndarray, limit: int) -> bool:
    """In place, unless the region would pass `limit` vertices (then False): the corner opposite each triangle's longest edge takes the motion of the nearest
    point of that edge, as if the needle were part of the edge (a needle folds when its tip
    crosses its base, however smooth the motion around it)."""
    points = vertices[triangles]                                     # (T,3,3)
    lengths = np.linalg.norm(points[:, [1, 2, 0]] - points, axis=2)  # edge k: corner k -> k+1
    k = np.argmax(lengths, axis=1)
    rows = np.arange(len(triangles))
    start, end, tip = triangles[rows, k], triangles[rows, (k + 1) % 3], triangles[rows, (k + 2) % 3]
    edge = vertices[end] - vertices[start]
    along = np.einsum("tc,tc->t", vertices[tip] - vertices[start], edge) / np.maximum(np.einsum("tc,tc->t", edge, edge), 1e-30)
    along = np.clip(along, 0.0, 1.0)[:, None, None]
    keep = movable[tip]
    grown = region.copy()
    grown[tip[keep]] = True
    if grown.sum() > limit:
        return False
    values[tip[keep]] = ((1 - along) * values[start] + along * values[end])[keep]
    region[tip[keep]] = True
    return True


def unfold(vertices: np.ndarray, faces: np.ndarray, displacements: np.ndarray,
           movable: np.ndarray | None = None, graph: sp.csr_matrix | None = None,
           watch: np.ndarray | slice | None = None) -> Unfolded:
    """Relax the motion where a triangle of the user's mesh would turn over.

    vertices (N,3), faces (F,3) triangles, displacements (K,N,3) in the same units; movable (N,)
    the vertices whose motion may change (the rest, e.g. rigid parts or vertices kept still, stay
    exactly as they are); graph: `adjacency(vertices, faces)` when the caller keeps it; watch: the
    frames whose folds count (default all; every frame is relaxed alike, so a rig's shapes can be
    relaxed for the clip that plays them). When no triangle folds, `displacements` come back as
    they are."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    count = len(vertices)
    movable = np.ones(count, dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
    checked = faces[movable[faces].any(axis=1)]
    watch = slice(None) if watch is None else watch

    def _folded_watched(_vertices, triangles, motion):
        return _folded(_vertices, triangles, np.ascontiguousarray(motion[:, watch]))

    if len(checked) == 0 or len(displacements) == 0:
        return Unfolded(displacements, 0, 0, 0)
    source = _per_vertex(displacements)
    flags = _folded_watched(vertices, checked, source)
    before = int(flags.sum(axis=0).max())
    if before == 0:
        return Unfolded(displacements, 0, 0, 0)
    graph = adjacency(vertices, faces) if graph is None else graph
    degree = np.asarray(graph.sum(axis=1)).ravel()
    # Folds are local (a mouth corner); motion that folds all over (an untrained model's noise)
    # is not relaxed away: it is left as it is and reported.
    limit = max(int(MAX_SHARE * movable.sum()), 1)
    region = np.zeros(count, dtype=bool)
    values = source.astype(np.float64)
    bad = checked[flags.any(axis=1)]
    for attempt in range(ROUNDS):
        grown = np.zeros(count, dtype=bool)
        grown[bad.ravel()] = True
        grown |= graph @ grown.astype(np.float64) > 0          # the folded corners and a ring more
        if ((region | grown) & movable).sum() > limit:
            break                                               # local relaxation, or none
        region |= grown & movable
        # Smoothed where it folds, gently first and twice as long each round: the motion keeps its
        # shape (a smile's pull at the corners) and only the fold's own variation goes.
        inside = np.flatnonzero(region)
        rows = graph[inside]
        for _ in range(min(2 ** attempt, MAX_STEPS)):
            mean = (rows @ values.reshape(count, -1)) / degree[inside, None]
            values[inside] = 0.5 * values[inside] + 0.5 * mean.reshape(values[inside].shape)
        near = checked[region[checked].any(axis=1)]
        flags = _folded_watched(vertices, near, values)
        bad = near[flags.any(axis=1)]
        if not len(bad):
            break
    # What smoothing leaves folded is mostly needle-thin triangles (a scan's mouth corners), which
    # stay folded under any smoothing: each needle's tip follows its long edge first, and only what
    # still folds is filled: the motion there replaced by the harmonic fill of the motion around
    # it, the region a ring wider each round. (Filling the needles alone took a fifth of a scan's
    # smile: 485 vertices relaxed for 3 needles; tips first, 136.)
    for _ in range(TIP_ROUNDS if len(bad) else 0):
        needles = bad[_needle(vertices, bad)]
        if not len(needles):
            break
        if not _tips_follow_long_edges(vertices, needles, values, movable, region, limit):
            break
        near = checked[region[checked].any(axis=1)]
        flags = _folded_watched(vertices, near, values)
        bad = near[flags.any(axis=1)]
        if not len(bad):
            break
    filled = np.zeros(count, dtype=bool)
    smoothed = values.copy()
    for attempt in range(ROUNDS if len(bad) else 0):
        grown = np.zeros(count, dtype=bool)
        grown[bad.ravel()] = True
        for _ in range(attempt + 1):
            grown |= graph @ grown.astype(np.float64) > 0
        if ((filled | grown) & movable).sum() > limit:
            break
        filled |= grown & movable
        _harmonic_fill(graph, filled, smoothed, values)
        near = checked[filled[checked].any(axis=1)]
        flags = _folded_watched(vertices, near, values)
        bad = near[flags.any(axis=1)]
        if not len(bad):
            break
    region |= filled
    values = values.astype(source.dtype)
    after = int(_folded_watched(vertices, checked, values).sum(axis=0).max()) if len(bad) else 0
    return Unfolded(np.ascontiguousarray(values.transpose(1, 0, 2)), before, after, int(region.sum()))
