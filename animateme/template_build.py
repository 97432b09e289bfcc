"""Build the template: the face skin decimated to a vertex subset a 2-core CPU can train on.

Why a vertex subset: every template vertex *is* a face-model vertex, so ground truth at the
template is exact (no resampling error) and `source_index` maps it back.

How:
1. Geodesic farthest-point sampling over the skin's edge graph, seeded with the 68 landmarks, with
   edge lengths stretched where expressions move the skin (`motion_weight`), so the mouth, eyes and
   brows get denser vertices than the neck or the temples.
2. The triangulation is the dual of the geodesic Voronoi regions of the samples: a template
   triangle wherever one skin triangle touches three regions. It follows the surface and keeps its
   holes (mouth, eyes) open, with the skin's own winding.
3. An up-sampling operator back to the full skin: each skin vertex's barycentric coordinates in
   the nearest template triangle (exact, weight 1, at template vertices).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from tqdm import tqdm

from animateme_blender.core.errors import AnimateMeError

from animateme_blender.core.template import Template, mesh_fingerprint

from .facemodel import SKIN_VERTICES, FaceModel

CM_TO_MM = 10.0
DEFAULT_VERTICES = 1000
DEFAULT_SPIRAL_LENGTH = 24


def build_template(model: FaceModel, num_vertices: int = DEFAULT_VERTICES,
                   spiral_length: int = DEFAULT_SPIRAL_LENGTH, motion_weight: float = 4.0,
                   show_progress: bool = True) -> Template:
    skin = np.asarray(SKIN_VERTICES)
    triangles = model.skin_triangles()
    if triangles.max() >= len(skin):
        raise AnimateMeError("the face model's skin uses vertices beyond 0-9408: unsupported model version")
    if not 200 <= num_vertices <= len(skin) // 2:
        raise AnimateMeError(f"template size must be between 200 and {len(skin) // 2} vertices, got {num_vertices}")
    positions = model.neutral[skin].astype(np.float64) * CM_TO_MM
    motion = np.sqrt((model.expression_modes[:, skin].astype(np.float64) ** 2).sum(-1).mean(0))
    importance = 1.0 + motion_weight * motion / motion.max()
    graph = _edge_graph(triangles, positions, importance)

    seeds = list(np.unique(model.landmarks68)) if model.landmarks68 is not None else [int(np.argmax(positions[:, 2]))]
    samples = _farthest_points(graph, seeds, num_vertices, show_progress)
    samples, faces = _voronoi_dual(graph, triangles, samples)
    order = np.argsort(samples)  # template vertices in face-model order: stable and readable
    samples = samples[order]
    faces = np.argsort(order)[faces].astype(np.int32)

    vertices = positions[samples].astype(np.float32)
    up_index, up_weight = _upsampling(positions, vertices, faces, samples)
    landmarks = (_nearest(vertices, positions[model.landmarks68]) if model.landmarks68 is not None
                 else np.zeros(0, dtype=np.int32))
    landmark_index, landmark_weight, landmark_offset = landmark_points(
        positions, vertices, model.landmarks68, up_index, up_weight, landmarks)
    reference = int(np.argmax(vertices[:, 2]))  # the nose tip: most forward point of the face
    from animateme.spirals import compute_spirals

    spirals = compute_spirals(faces, len(vertices), spiral_length, reference, vertices=vertices)
    lower = _lower_teeth(model)
    return Template(
        vertices=vertices,
        faces=faces,
        spirals=spirals.astype(np.int32),
        source_index=samples.astype(np.int32),
        full_index=skin.astype(np.int32),
        upsample_index=up_index,
        upsample_weight=up_weight,
        landmarks=landmarks,
        landmark_index=landmark_index,
        landmark_weight=landmark_weight,
        landmark_offset=landmark_offset,
        identity_modes=(model.identity_modes[:, samples] * CM_TO_MM).astype(np.float32),
        expression_modes=(model.expression_modes[:, samples] * CM_TO_MM).astype(np.float32),
        expression_names=np.asarray(model.expression_names),
        fingerprint=mesh_fingerprint(vertices, faces),
        jaw_twist=jaw_twists(model, lower),
        jaw_identity=jaw_identity(model, lower),
    )


def _lower_teeth(model: FaceModel) -> np.ndarray:
    """The face model's lower-teeth vertices: the teeth pieces below the mouth's middle, found by
    their own geometry (connected pieces), not by number."""
    from animateme_blender.core.geometry import components
    from .facemodel import TEETH_VERTICES, triangulate

    teeth = np.asarray(TEETH_VERTICES)
    triangles = triangulate(model.faces)
    triangles = triangles[np.isin(triangles, teeth).all(axis=1)]
    labels = components(triangles, model.num_vertices)[teeth]
    mouth = model.neutral[model.landmarks68[[48, 54, 62, 66]], 1].mean()
    return np.concatenate([teeth[labels == label] for label in np.unique(labels[labels >= 0])
                           if model.neutral[teeth[labels == label], 1].mean() < mouth])


def jaw_twists(model: FaceModel, lower: np.ndarray) -> np.ndarray:
    """(E,6) how each expression shape moves the lower teeth, as the rigid motion nearest its
    offsets (rotation vector w, then translation v, mm, in the template's frame: offset ~ w x X + v).
    The core estimates the jaw of a generated frame from them (core/carry/jaw.py)."""
    lower = _lower_teeth(model)
    points = model.neutral[lower].astype(np.float64) * CM_TO_MM
    # offset = -[X]x w + v: three rows per vertex, six unknowns.
    x, y, z = points.T
    zero, one = np.zeros_like(x), np.ones_like(x)
    system = np.stack([np.stack([zero, z, -y, one, zero, zero], 1),
                       np.stack([-z, zero, x, zero, one, zero], 1),
                       np.stack([y, -x, zero, zero, zero, one], 1)], axis=1).reshape(-1, 6)
    offsets = model.expression_modes[:, lower].astype(np.float64).reshape(len(model.expression_modes), -1) * CM_TO_MM
    twists, *_ = np.linalg.lstsq(system, offsets.T, rcond=None)
    return twists.T.astype(np.float32)


def jaw_identity(model: FaceModel, lower: np.ndarray) -> np.ndarray:
    """(M,3) mm: where each identity mode moves the middle of the lower teeth. The expression
    shapes move every identity's teeth alike, so the jaw's motion of a user is read where their
    teeth would sit on the template (core/carry/jaw.py), not where they sit on the user."""
    lower = _lower_teeth(model)
    return (model.identity_modes[:, lower].mean(axis=1) * CM_TO_MM).astype(np.float32)


def _edge_graph(triangles: np.ndarray, positions: np.ndarray, importance: np.ndarray):
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    a, b = edges.T
    length = np.linalg.norm(positions[a] - positions[b], axis=1) * 0.5 * (importance[a] + importance[b])
    n = len(positions)
    return coo_matrix((np.r_[length, length], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()


def _farthest_points(graph, seeds: list[int], count: int, show_progress: bool) -> np.ndarray:
    samples = list(seeds)
    distance = dijkstra(graph, indices=samples, min_only=True)
    with tqdm(total=count, initial=len(samples), desc="template: sampling", unit="vertex",
              disable=not show_progress) as bar:
        while len(samples) < count:
            nxt = int(np.argmax(distance))
            samples.append(nxt)
            # Only vertices closer to the new sample than to all others change.
            distance = np.minimum(distance, dijkstra(graph, indices=nxt, limit=distance[nxt]))
            bar.update(1)
    return np.asarray(samples)


def _voronoi_dual(graph, triangles: np.ndarray, samples: np.ndarray):
    """Triangles of the dual; samples whose region touches no triangle of three regions are
    dropped (they would be isolated vertices) and the regions recomputed."""
    for _ in range(10):
        _, _, owner = dijkstra(graph, indices=samples, min_only=True, return_predecessors=True)
        region = _index_of(samples, owner)
        labels = region[triangles]
        distinct = (labels[:, 0] != labels[:, 1]) & (labels[:, 1] != labels[:, 2]) & (labels[:, 0] != labels[:, 2])
        faces = labels[distinct]
        _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
        faces = faces[np.sort(first)]
        used = np.zeros(len(samples), dtype=bool)
        used[faces.ravel()] = True
        if used.all():
            _check_manifold(faces)
            return samples, faces
        samples = samples[used]
    raise AnimateMeError("template decimation did not converge: try another --vertices count")


def _index_of(samples: np.ndarray, owner: np.ndarray) -> np.ndarray:
    lookup = np.full(owner.max() + 1, -1, dtype=np.int64)
    lookup[samples] = np.arange(len(samples))
    return lookup[owner]


def _check_manifold(faces: np.ndarray) -> None:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    if (counts > 2).any():
        raise AnimateMeError(
            f"template decimation made {int((counts > 2).sum())} non-manifold edges: try another --vertices count"
        )


def _upsampling(positions: np.ndarray, vertices: np.ndarray, faces: np.ndarray, samples: np.ndarray):
    """Barycentric weights of every skin vertex at its closest point on the template, searched
    among the triangles around its three nearest template vertices."""
    from animateme_blender.core.carry.transfer import closest_points_on_triangles, incident_triangles

    near = _nearest(vertices, positions, k=3)                      # (N,3) nearest template vertices
    candidates = incident_triangles(faces, len(vertices))[near].reshape(len(positions), -1)
    valid = candidates >= 0
    tri = faces[np.where(valid, candidates, 0)]                     # (N, C, 3)
    corners = vertices.astype(np.float64)[tri]                      # (N, C, 3, 3)
    points = np.repeat(positions, tri.shape[1], axis=0)
    weights = closest_points_on_triangles(points, *(corners[:, :, k].reshape(-1, 3) for k in range(3)))
    weights = weights.reshape(tri.shape)
    closest = np.einsum("nck,nckd->ncd", weights, corners)
    error = np.linalg.norm(closest - positions[:, None, :], axis=-1)
    error[~valid] = np.inf
    best = np.argmin(error, axis=1)
    rows = np.arange(len(positions))
    index = tri[rows, best].astype(np.int32)
    weight = weights[rows, best].astype(np.float32)
    index[samples] = np.arange(len(samples))[:, None]               # exact at template vertices
    weight[samples] = (1.0, 0.0, 0.0)
    return index, weight


PRONASALE_SEARCH_MM = 15.0


def landmark_points(positions, vertices, landmarks68, up_index, up_weight, landmarks):
    """(68,3) template vertices, (68,3) barycentric weights and (68,3) offsets (mm, in the
    triangle's own frame) of each landmark on the template.

    Each is its template vertex, except the nose tip: Multi-PIE point 30 is drawn in photographs,
    and on the face model it sits about 3 mm above the pronasale, the most forward point of the
    nose, which is what people (and geometric detectors) mark on a mesh. It becomes the pronasale:
    the most forward skin point within PRONASALE_SEARCH_MM of point 30, where the template's surface
    holds it (its up-sampling row) plus the offset from there to the skin, in that triangle's frame
    (the coarse triangles cut about 1.5 mm under the tip)."""
    from animateme_blender.core.geometry import triangle_frames
    from animateme_blender.core.template import vertex_landmark_points

    index, weight, offset = vertex_landmark_points(landmarks)
    if landmarks68 is None or len(index) < 68:
        return index, weight, offset
    near = np.flatnonzero(np.linalg.norm(positions - positions[landmarks68[30]], axis=1) < PRONASALE_SEARCH_MM)
    pronasale = near[np.argmax(positions[near, 2])]
    index[30], weight[30] = up_index[pronasale], up_weight[pronasale]
    on_triangle = weight[30] @ vertices[index[30]]
    offset[30] = triangle_frames(vertices, index[[30]])[0] @ (positions[pronasale] - on_triangle)
    return index, weight, offset


def _nearest(points: np.ndarray, queries: np.ndarray, k: int = 1) -> np.ndarray:
    from scipy.spatial import cKDTree

    _, index = cKDTree(points).query(queries, k=k)
    return np.asarray(index, dtype=np.int32)
