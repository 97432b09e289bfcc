"""Remeshing for test and benchmark faces: the same surface on another topology, with the exact
correspondence kept.

Every function returns, besides the new mesh, a sparse matrix `W` (new vertices x original
vertices) of barycentric weights: `W @ original_vertices` is where each new vertex lies on the
original surface, and `W @ any_per_vertex_field` (an expression's displacements, another subject
of the same model) carries that field to the new vertices exactly. Subdivision is our own code;
decimation uses meshmonk's quadric downsampler, which keeps a subset of the vertices unmoved, so
the correspondence stays exact.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from animateme_blender.core.errors import AnimateMeError


def triangulate(faces: np.ndarray) -> np.ndarray:
    """(F,3) triangles or (F,4) quads with -1 padding for triangles -> (T,3) triangles."""
    faces = np.asarray(faces)
    if faces.shape[1] == 3:
        return faces.astype(np.int32)
    first = faces[:, [0, 1, 2]]
    quads = faces[faces[:, 3] >= 0]
    return np.concatenate([first, quads[:, [0, 2, 3]]]).astype(np.int32)


def compact(vertices: np.ndarray, faces: np.ndarray, weights: sp.csr_matrix | None = None):
    """Drop vertices no face uses; returns (vertices, faces, weights-rows-kept, kept-index)."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    weights = weights[used] if weights is not None else None
    return vertices[used], remap[faces].astype(np.int32), weights, used


def subdivide(vertices: np.ndarray, faces: np.ndarray, weights: sp.csr_matrix | None = None):
    """Midpoint 1-to-4 subdivision (the surface is unchanged; every new vertex lies on it)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    n = len(vertices)
    if weights is None:
        weights = sp.identity(n, format="csr")
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.sort(edges, axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    inverse = inverse.reshape(3, -1)
    mid = n + inverse  # (3,F): midpoint vertex of edge 01, 12, 20
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    ab, bc, ca = mid
    new_faces = np.concatenate([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                                np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)])
    half = sp.csr_matrix((np.full(2 * len(unique), 0.5),
                          (np.repeat(np.arange(len(unique)), 2), unique.ravel())),
                         shape=(len(unique), n))
    new_vertices = np.concatenate([vertices, 0.5 * (vertices[unique[:, 0]] + vertices[unique[:, 1]])])
    new_weights = sp.vstack([weights, half @ weights]).tocsr()
    return new_vertices, new_faces.astype(np.int32), new_weights


def decimate(vertices: np.ndarray, faces: np.ndarray, target_vertices: int,
             weights: sp.csr_matrix | None = None):
    """Quadric decimation to about `target_vertices` (meshmonk; vertices kept are not moved)."""
    import meshmonk

    vertices = np.asarray(vertices, dtype=np.float32)
    if weights is None:
        weights = sp.identity(len(vertices), format="csr")
    if target_vertices >= len(vertices):
        return vertices.astype(np.float64), faces, weights
    normals = meshmonk.compute_normals(vertices, faces.astype(np.int32))
    features = np.ascontiguousarray(np.hstack([vertices, normals]), dtype=np.float32)
    ratio = 1.0 - target_vertices / len(vertices)
    _, new_faces, _, kept = meshmonk.downsample_mesh(
        features, np.ascontiguousarray(faces, dtype=np.int32),
        np.ones(len(vertices), np.float32), float(ratio))
    return vertices[kept].astype(np.float64), np.ascontiguousarray(new_faces), weights[kept].tocsr()


def remesh(vertices: np.ndarray, faces: np.ndarray, target_vertices: int):
    """The same surface with about `target_vertices` vertices on a new topology: subdivide until
    there are at least twice as many, then decimate. Returns (vertices, faces, W)."""
    if target_vertices < 100:
        raise AnimateMeError(f"remesh target of {target_vertices} vertices is too small; use >= 100")
    faces = triangulate(faces)
    vertices, faces, weights, used = compact(np.asarray(vertices, np.float64), faces)
    weights = sp.csr_matrix((np.ones(len(used)), (np.arange(len(used)), used)),
                            shape=(len(used), int(used.max()) + 1))
    while len(vertices) < 2 * target_vertices:
        vertices, faces, weights = subdivide(vertices, faces, weights)
    vertices, faces, weights = decimate(vertices, faces, target_vertices, weights)
    return vertices, faces, weights


def synthetic_head_landmarks(vertices: np.ndarray) -> dict[str, int]:
    """Landmark vertices of `synthetic_head` from where its code puts them: the nose tip (the
    front-most point), the mouth corners (ends of the mouth line at y = -58 mm, x = +-24 mm; the
    face looks down +Z, so its own left is +X) and the chin."""
    vertices = np.asarray(vertices, dtype=np.float64)
    front = np.flatnonzero(vertices[:, 2] > 40.0)

    def nearest(x, y):
        return int(front[np.argmin(np.hypot(vertices[front, 0] - x, vertices[front, 1] - y))])
    return {"nose_tip": int(front[np.argmax(vertices[front, 2])]), "mouth_left": nearest(24.0, -58.0),
            "mouth_right": nearest(-24.0, -58.0), "chin": nearest(0.0, -92.0)}


def synthetic_head(rows: int = 140, columns: int = 180) -> tuple[np.ndarray, np.ndarray]:
    """A procedural head (not from any face model): an ellipsoid in mm, +Y up, looking down +Z,
    and a neck open at the bottom, with a nose, brow ridge, eye sockets, cheekbones, lips, mouth
    line and chin pushed out along +Z on its front. For trying the registration on a face the face model never saw."""
    # Profile from the crown down: an ellipsoid to under the chin, then a neck open at the bottom.
    head_rows = int(rows * 0.8)
    theta = np.linspace(0.0, 0.85 * np.pi, head_rows)[1:]
    ring = np.sin(theta)
    height = 112.0 * np.cos(theta)
    neck = np.linspace(0.0, 1.0, rows - head_rows + 1)[1:]
    ring = np.concatenate([ring, ring[-1] + (0.58 - ring[-1]) * np.sqrt(neck)])
    height = np.concatenate([height, height[-1] - 95.0 * neck])
    back = np.concatenate([np.zeros(len(theta)), -18.0 * np.sqrt(neck)])    # the neck sits back
    phi = np.linspace(-np.pi, np.pi, columns, endpoint=False)    # around Y, 0 = front (+Z)
    r, p = np.meshgrid(ring, phi, indexing="ij")
    radii = np.array([74.0, 112.0, 96.0])
    points = np.stack([r * np.sin(p) * radii[0], np.broadcast_to(height[:, None], r.shape),
                       r * np.cos(p) * radii[2] + back[:, None]], -1)
    x, y = points[..., 0], points[..., 1]
    front = np.clip(np.cos(p), 0.0, None) ** 2

    def bump(cx, cy, sx, sy, height):
        return height * np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))

    # Nose: a ridge growing from the bridge to the tip, with a rounded tip and wings.
    along = np.clip((22.0 - y) / 52.0, 0.0, 1.0)                  # 0 at the bridge, 1 at the tip
    nose = (4.0 + 18.0 * along ** 1.5) * np.exp(-0.5 * (x / (5.0 + 6.0 * along)) ** 2) * (y > -34.0)
    nose = nose + bump(0.0, -33.0, 10.0, 5.0, 4.0) + bump(-13.0, -30.0, 5.0, 5.0, 4.0) + bump(13.0, -30.0, 5.0, 5.0, 4.0)
    nose = nose * np.clip((y + 40.0) / 6.0, 0.0, 1.0)            # under the nose: back to the lip
    relief = (nose
              + bump(-30.0, 30.0, 17.0, 6.0, 5.0) + bump(30.0, 30.0, 17.0, 6.0, 5.0)      # brows
              - bump(-31.0, 12.0, 13.0, 8.0, 11.0) - bump(31.0, 12.0, 13.0, 8.0, 11.0)    # eye sockets
              + bump(-31.0, 12.0, 7.0, 4.0, 6.0) + bump(31.0, 12.0, 7.0, 4.0, 6.0)        # eyeballs under lids
              + bump(-42.0, -18.0, 12.0, 12.0, 5.0) + bump(42.0, -18.0, 12.0, 12.0, 5.0)  # cheekbones
              + bump(0.0, -52.0, 20.0, 5.0, 7.0) + bump(0.0, -64.0, 18.0, 5.0, 6.0)       # lips
              - bump(0.0, -58.0, 22.0, 1.5, 4.0)                                          # mouth line
              - bump(0.0, -74.0, 20.0, 4.0, 3.0)                                          # under the lip
              + bump(0.0, -92.0, 17.0, 9.0, 8.0))                                         # chin
    points[..., 2] += relief * front
    vertices = np.concatenate([points.reshape(-1, 3), [[0.0, radii[1], 0.0]]])
    grid = np.arange(len(ring) * columns).reshape(len(ring), columns)
    right = np.roll(grid, -1, axis=1)
    quads_a, quads_b, quads_c, quads_d = grid[:-1], right[:-1], right[1:], grid[1:]
    faces = np.concatenate([np.stack([quads_a, quads_d, quads_c], -1).reshape(-1, 3),
                            np.stack([quads_a, quads_c, quads_b], -1).reshape(-1, 3)])
    top = len(vertices) - 1
    cap = np.stack([np.full(columns, top), grid[0], right[0]], -1)[:, [0, 2, 1]]
    return vertices, np.concatenate([faces, cap]).astype(np.int32)
