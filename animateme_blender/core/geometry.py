"""Triangle-mesh geometry shared by the fit and the transfer: normals, open boundaries, connected
components, the triangles around each vertex, the graph Laplacian, closest points on triangles."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,3) a x b row by row: np.cross's products in its order (the same bits), without its
    per-call overhead, which costs more than the arithmetic for the fit's ~1000 rows."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,3) (b - a) x (c - a): twice the area, along the face normal."""
    first = vertices[faces[:, 0]]
    return cross(vertices[faces[:, 1]] - first, vertices[faces[:, 2]] - first)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,3) unit area-weighted vertex normals (zero-length for vertices in no face)."""
    area_normals = face_cross(vertices, faces)
    # Every face's first corner, then second, then third: np.add.at's order (the same sums, bit for
    # bit), by bincount, which is ~20x faster.
    corners = faces.T.ravel()
    normals = np.stack([np.bincount(corners, weights=np.tile(area_normals[:, c], 3), minlength=len(vertices))
                        for c in range(3)], axis=1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-30)


def edge_use(faces: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Every undirected edge once, as a key a*count+b (a<b), and how many faces use it."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(edges[:, 0].astype(np.int64) * count + edges[:, 1], return_counts=True)


def boundary_vertices(faces: np.ndarray, count: int) -> np.ndarray:
    """(count,) bool: on an edge used by one face only (an open border)."""
    key, uses = edge_use(faces, count)
    single = key[uses == 1]
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


def incident_triangles(faces: np.ndarray, count: int) -> np.ndarray:
    """(count, w) the triangles around each vertex; short rows repeat their first triangle (a
    vertex in no triangle gets triangle 0, so every entry is a valid index)."""
    flat = np.asarray(faces).ravel()
    triangles = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(flat, kind="stable")
    flat, triangles = flat[order], triangles[order]
    counts = np.bincount(flat, minlength=count)
    start = np.cumsum(counts) - counts
    table = np.full((count, max(int(counts.max()) if len(counts) else 1, 1)), -1, dtype=np.int64)
    table[flat, np.arange(len(flat)) - start[flat]] = triangles
    table = np.where(table >= 0, table, table[:, :1])
    return np.where(table >= 0, table, 0)


def laplacian(faces: np.ndarray, count: int) -> sp.csr_matrix:
    """Graph (umbrella) Laplacian D - A of the mesh's edges."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    return (sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency).tocsr()


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", u, v)


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric (n,3) of the closest point on triangle (a,b,c) to each point (all (n,3)),
    by the Voronoi regions of the triangle's vertices, edges and face (exact)."""
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp = points - b
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    cp = points - c
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    tiny = 1e-300
    # Face region by default.
    denominator = va + vb + vc
    denominator = np.where(np.abs(denominator) > tiny, denominator, 1.0)
    out = np.empty((len(points), 3))
    out[:, 1] = vb / denominator
    out[:, 2] = vc / denominator
    out[:, 0] = 1.0 - out[:, 1] - out[:, 2]

    def put(mask, first, second, third):
        """Only where mask holds: the edge and vertex regions are a small share of the pairs."""
        where = np.flatnonzero(mask)
        if len(where):
            out[where] = np.column_stack([np.broadcast_to(x, len(where)) if np.ndim(x) == 0 else x[where]
                                          for x in (first, second, third)])

    # Edge regions (later assignments win, so order from faces to vertices).
    t_bc = (d4 - d3) / np.where(np.abs((d4 - d3) + (d5 - d6)) > tiny, (d4 - d3) + (d5 - d6), 1.0)
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), 0.0, 1 - t_bc, t_bc)
    t_ac = d2 / np.where(np.abs(d2 - d6) > tiny, d2 - d6, 1.0)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, 0.0, t_ac)
    t_ab = d1 / np.where(np.abs(d1 - d3) > tiny, d1 - d3, 1.0)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, 0.0)
    put((d6 >= 0) & (d5 <= d6), 0.0, 0.0, 1.0)
    put((d3 >= 0) & (d4 <= d3), 0.0, 1.0, 0.0)
    put((d1 <= 0) & (d2 <= 0), 1.0, 0.0, 0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-300)


def closest_on_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, tree, incident: np.ndarray,
                    neighbours: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point, the closest point among the triangles around its `neighbours` nearest
    vertices (tree: a cKDTree of `vertices`; incident: `incident_triangles`). Returns (triangle
    index (n,), barycentric (n,3), closest point (n,3))."""
    k = min(neighbours, len(vertices))
    _, nearest = tree.query(points, k=k)
    nearest = np.asarray(nearest).reshape(len(points), -1)
    # Only each vertex's own triangles, not the padding of its row: one pole of valence 40 (a UV
    # sphere) would otherwise make every point test 80 triangles.
    rows = incident[nearest]                                            # (n,k,w)
    own = np.concatenate([np.ones(rows.shape[:2] + (1,), bool), rows[..., 1:] != rows[..., :1]], axis=-1)
    owner = np.broadcast_to(np.arange(len(points))[:, None, None], rows.shape)[own]
    flat = rows[own]
    corners = vertices[faces[flat]]                                     # (pairs,3,3)
    paired = points[owner]
    bary = closest_points_on_triangles(paired, corners[:, 0], corners[:, 1], corners[:, 2])
    closest = np.einsum("nk,nkc->nc", bary, corners)
    squared = _dot(paired - closest, paired - closest)
    pick = _nearest_per_group(owner, squared)      # pairs are grouped by point, in point order
    return flat[pick], bary[pick], closest[pick]


def _nearest_per_group(owner: np.ndarray, squared: np.ndarray) -> np.ndarray:
    """Index of each group's smallest `squared` (the first of equals), for `owner` grouped in
    ascending runs with every group present: what a stable sort by (owner, squared) picks, without
    sorting a few million pairs."""
    squared = np.where(np.isnan(squared), np.inf, squared)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    least = np.repeat(np.minimum.reduceat(squared, starts), np.diff(np.r_[starts, len(squared)]))
    candidates = np.flatnonzero(squared == least)
    groups = owner[candidates]
    return candidates[np.r_[True, groups[1:] != groups[:-1]]]


def triangle_frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,3,3) orthonormal frames, rows: first edge direction, in-plane perpendicular, normal."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    normal = np.cross(b - a, c - a)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-300)
    edge = b - a
    edge /= np.maximum(np.linalg.norm(edge, axis=-1, keepdims=True), 1e-300)
    return np.stack([edge, np.cross(normal, edge), normal], axis=-2)


def graph_laplacian(faces: np.ndarray, count: int) -> sp.csr_matrix:
    """(V,V) uniform Laplacian I - D^-1 A of a triangle mesh; isolated vertices get a zero row."""
    faces = np.asarray(faces, np.int64)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adjacency = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(count, count)).tocsr()
    adjacency.data[:] = 1.0   # an edge shared by two triangles counts once
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    return (sp.diags((degree > 0).astype(float)) - sp.diags(inverse) @ adjacency).tocsr()
