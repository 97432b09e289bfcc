"""A down-sampling hierarchy of the template for the spiral mesh decoder (002 §3.2, Table 1).

The paper up-samples through meshes decimated by quadric edge collapse (COMA). Our template has a
single resolution, so the coarse levels are built here instead, as nested vertex subsets:

- one farthest-point ordering of the template vertices under geodesic (mesh-edge) distance;
  level l keeps its first ceil(V / factor**l) vertices, so every level contains the next;
- coarse triangles: each template vertex joins the region of its geodesically nearest kept
  vertex; a template triangle whose corners lie in three different regions becomes a triangle of
  the kept vertices (the dual of the geodesic Voronoi regions, i.e. a surface Delaunay mesh);
- spirals per level with `animateme/spirals.compute_spirals` on those triangles;
- up-sampling from level l+1 to l: each level-l vertex is the inverse-distance blend of its three
  geodesically nearest level-(l+1) vertices (weight 1 on itself where it is kept). Geodesic rather
  than straight-line distance, so an upper-lip vertex never borrows from the lower lip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from animateme.spirals import compute_spirals


@dataclass
class MeshHierarchy:
    levels: list[np.ndarray]           # template vertex indices kept at each level; levels[0] = all
    spirals: list[np.ndarray]          # (n_l, L) spirals in each level's local indices
    up_index: list[np.ndarray]         # up_index[l] (n_l, 3): level-(l+1) local indices feeding level l
    up_weight: list[np.ndarray]        # up_weight[l] (n_l, 3), rows sum to 1

    def state(self) -> dict:
        return {"levels": self.levels, "spirals": self.spirals,
                "up_index": self.up_index, "up_weight": self.up_weight}

    @classmethod
    def from_state(cls, state: dict) -> "MeshHierarchy":
        return cls(*(list(state[key]) for key in ("levels", "spirals", "up_index", "up_weight")))


def edge_graph(vertices: np.ndarray, faces: np.ndarray):
    """Sparse symmetric (V,V) matrix of mesh-edge lengths."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    lengths = np.maximum(lengths, 1e-9)  # a zero length would read as "no edge"
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    return coo_matrix((np.concatenate([lengths, lengths]), (rows, cols)),
                      shape=(len(vertices), len(vertices))).tocsr()


def farthest_point_order(graph, count: int, start: int) -> np.ndarray:
    """The first `count` vertices of a geodesic farthest-point ordering from `start`. Unreachable
    vertices (another connected piece) are infinitely far, so every piece gets a vertex early."""
    order = [start]
    nearest = dijkstra(graph, indices=start)
    for _ in range(count - 1):
        nearest[order] = -1.0
        candidate = int(np.argmax(nearest))
        order.append(candidate)
        nearest = np.minimum(nearest, dijkstra(graph, indices=candidate))
    return np.asarray(order)


def coarse_faces(faces: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Triangles between regions: template triangles whose three corners lie in three regions,
    mapped to region ids, orientation kept, duplicates dropped."""
    mapped = region[faces]
    distinct = (mapped[:, 0] != mapped[:, 1]) & (mapped[:, 1] != mapped[:, 2]) & (mapped[:, 0] != mapped[:, 2])
    mapped = mapped[distinct]
    # Rotate each triangle so its smallest index is first (orientation preserved), then dedupe.
    roll = np.argmin(mapped, axis=1)
    rotated = np.stack([np.roll(row, -shift) for row, shift in zip(mapped, roll)]) if len(mapped) else mapped
    _, first = np.unique(rotated, axis=0, return_index=True)
    return rotated[np.sort(first)].astype(np.int64)


def level_spiral(triangles: np.ndarray, positions: np.ndarray, distance: np.ndarray,
                 length: int) -> np.ndarray:
    """Spirals of one coarse level. A level too coarse to hold a triangle (a few vertices of a
    tiny test mesh) orders each vertex's neighbours by geodesic distance instead."""
    if len(triangles):
        return np.asarray(compute_spirals(triangles, len(positions), length, 0, vertices=positions),
                          dtype=np.int64)
    order = np.argsort(distance, axis=1, kind="stable")[:, :length]
    if order.shape[1] < length:  # pad with the centre, as compute_spirals does
        order = np.concatenate([order, np.repeat(order[:, :1], length - order.shape[1], axis=1)], axis=1)
    return order.astype(np.int64)


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, spirals: np.ndarray,
                    depth: int = 3, factor: int = 4, spiral_length: int = 9) -> MeshHierarchy:
    """Levels 0..depth of the template (V, V/factor, V/factor², ...); `spirals` are the
    template's own, of which a prefix of `spiral_length` is used at level 0."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    count = len(vertices)
    graph = edge_graph(vertices, faces)
    sizes = [int(np.ceil(count / factor ** level)) for level in range(depth + 1)]
    start = int(np.argmin(np.linalg.norm(vertices - vertices.mean(axis=0), axis=1)))
    order = farthest_point_order(graph, sizes[1], start) if depth else np.arange(0)
    levels = [np.arange(count)] + [order[:size] for size in sizes[1:]]
    level_spirals = [np.asarray(spirals)[:, :spiral_length].astype(np.int64)]
    up_index, up_weight = [], []
    for level in range(1, depth + 1):
        kept = levels[level]
        distance = dijkstra(graph, indices=kept)                   # (n_kept, V)
        region = np.argmin(distance, axis=0)                       # nearest kept vertex, local id
        triangles = coarse_faces(faces, region)
        level_spirals.append(level_spiral(triangles, vertices[kept], distance[:, kept], spiral_length))
        finer = distance[:, levels[level - 1]]                     # (n_kept, n_finer)
        nearest = np.argsort(finer, axis=0, kind="stable")[:3].T   # (n_finer, 3)
        gaps = np.take_along_axis(finer.T, nearest, axis=1)
        weights = 1.0 / np.maximum(gaps, 1e-6)
        weights[~np.isfinite(gaps)] = 0.0
        exact = gaps[:, 0] < 1e-6                                  # the vertex itself is kept
        weights[exact] = [1.0, 0.0, 0.0]
        weights[weights.sum(axis=1) == 0] = [1.0, 0.0, 0.0]        # a piece with no kept vertex
        up_index.append(nearest.astype(np.int64))
        up_weight.append((weights / weights.sum(axis=1, keepdims=True)).astype(np.float32))
    return MeshHierarchy(levels, level_spirals, up_index, up_weight)
