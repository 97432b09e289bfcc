"""The input mesh as the fit sees it: checked, cleaned of unusable faces, split into candidate
face parts, and queried for closest points (the correspondences every fitting step uses)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import AnimateMeError, FitRefused
from ..geometry import boundary_vertices, closest_on_mesh, components, face_cross, incident_triangles, vertex_normals

MIN_VERTICES = 300
MAX_VERTICES = 20_000_000       # beyond this the arrays alone approach the memory of a laptop
MAX_FIT_POINTS = 60_000         # the fit uses at most this many input vertices (random subset)
PROJECT_BELOW = 5_000           # parts with fewer vertices: correspondences on triangles, not vertices


@dataclass
class Surface:
    """The part of the input the fit uses, in input units, with what the fit needs of it."""
    points: np.ndarray        # (n,3) vertices of the part (subset when huge)
    normals: np.ndarray       # (n,3) unit area-weighted vertex normals
    boundary: np.ndarray      # (n,) bool: on an open boundary of the input
    index: np.ndarray         # (n,) their indices into the input's vertices
    tree: cKDTree
    faces: np.ndarray | None = None      # (F,3) triangles over `points` (None: a vertex subset)
    incident: np.ndarray | None = None   # (n,w) triangles around each point

    def subset(self, index: np.ndarray) -> "Surface":
        """A vertex subset (no triangles): for quick pose searches."""
        return Surface(self.points[index], self.normals[index], self.boundary[index], self.index[index],
                       cKDTree(self.points[index]))


def check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64/int64 copies; raises AnimateMeError (FitRefused with a fix) otherwise."""
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
    bad = ~np.isfinite(vertices).all(1)
    if bad.any():
        count = int(bad.sum())
        raise FitRefused(f"{count:,} of the mesh's {len(vertices):,} vertices {'has' if count == 1 else 'have'} "
                         "NaN or infinite coordinates", ("remove_nonfinite",))
    if faces.size == 0:
        raise FitRefused(f"the mesh has {len(vertices):,} vertices but no faces (a point cloud)", ("add_faces",))
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise AnimateMeError(f"the faces must be triangles, an (F,3) array; got shape {faces.shape}: "
                             "triangulate the mesh first")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise AnimateMeError("face indices point outside the vertex list: the mesh is corrupt; re-export it")
    if len(np.unique(faces)) < MIN_VERTICES:
        raise AnimateMeError(f"the mesh has only {len(np.unique(faces))} vertices in faces, too few to be a face "
                             f"(at least {MIN_VERTICES}; scans and sculpts have thousands): select the face mesh "
                             "itself. Only a low-poly face cage should be subdivided first")
    return vertices, faces


def usable_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces with three distinct corners and a non-zero area (the rest are ignored)."""
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[distinct]
    area2 = np.linalg.norm(face_cross(vertices, faces), axis=1)
    scale = np.ptp(vertices, axis=0).max()
    return faces[area2 > 1e-12 * max(scale, 1e-30) ** 2]


def _unwelded(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Many vertices on the same spot and no large connected part: exported without welding."""
    size = max(float(np.ptp(vertices, axis=0).max()), 1e-30)
    used = np.unique(faces)
    distinct = len(np.unique(np.round(vertices[used] / size * 1e6), axis=0))
    return distinct < 0.75 * len(used)


def candidate_parts(vertices: np.ndarray, faces: np.ndarray, part) -> list[np.ndarray]:
    """Vertex index sets to try as the face: the named region, else large components by area."""
    if part is not None:
        part = np.asarray(part)
        if part.dtype == bool and len(part) != len(vertices):
            raise AnimateMeError("the face-region mask must have one entry per vertex")
        index = np.flatnonzero(part) if part.dtype == bool else np.unique(part.astype(np.int64))
        if len(index) == 0 or index.min() < 0 or index.max() >= len(vertices):
            raise AnimateMeError("the face region (vertex group) is empty or points outside the mesh: "
                                 "assign the face's vertices to it")
        if len(index) < MIN_VERTICES:
            raise AnimateMeError(f"the face region (vertex group) has {len(index)} vertices; a face needs at "
                                 f"least {MIN_VERTICES}: assign the whole face to it")
        return [index]
    labels = components(faces, len(vertices))
    area = np.linalg.norm(face_cross(vertices, faces), axis=1)
    per_label = np.bincount(labels[faces[:, 0]], weights=area, minlength=labels.max() + 1)
    counts = np.bincount(labels[labels >= 0], minlength=labels.max() + 1)
    order = np.argsort(-per_label)
    keep = [c for c in order[:4] if per_label[c] >= 0.2 * per_label[order[0]] and counts[c] >= MIN_VERTICES]
    if not keep:
        if _unwelded(vertices, faces):
            raise FitRefused("the mesh's faces are not joined to each other (its vertices are not welded)",
                             ("merge_by_distance",))
        largest = int(counts.max()) if len(counts) else 0
        raise AnimateMeError(f"the mesh's largest connected piece has {largest} vertices; a face needs at least "
                             f"{MIN_VERTICES} in one piece: join the pieces that belong together (merge by "
                             "distance), or use a denser mesh")
    return [np.flatnonzero(labels == c) for c in keep]


def build_surface(vertices: np.ndarray, faces: np.ndarray, index: np.ndarray, rng) -> Surface:
    inside = np.zeros(len(vertices), dtype=bool)
    inside[index] = True
    part_faces = faces[inside[faces].all(1)]
    normals = vertex_normals(vertices, part_faces)
    boundary = boundary_vertices(part_faces, len(vertices))
    used = np.zeros(len(vertices), dtype=bool)
    used[part_faces.ravel()] = True
    index = np.flatnonzero(used)
    if len(index) < MIN_VERTICES:
        raise AnimateMeError(f"the face part has only {len(index)} vertices in usable faces; a face needs "
                             f"{MIN_VERTICES}: check for degenerate or zero-area faces")
    if len(index) > PROJECT_BELOW:
        # Dense enough that its vertices (point-to-plane) stand for its surface; beyond
        # MAX_FIT_POINTS a random subset of them (documented decimation of huge meshes).
        if len(index) > MAX_FIT_POINTS:
            index = np.sort(rng.choice(index, MAX_FIT_POINTS, replace=False))
        points = vertices[index]
        return Surface(points, normals[index], boundary[index], index, cKDTree(points))
    # Coarse: correspondences are closest points on its triangles (its vertices are too far
    # apart to stand for its surface: on a 2k-vertex head, 1.2 mm mean error with vertices, 0.4 mm
    # projected; on denser meshes the vertices, which lie on the true surface, do better).
    local = np.full(len(vertices), -1, dtype=np.int64)
    local[index] = np.arange(len(index))
    local_faces = local[part_faces]
    points = vertices[index]
    return Surface(points, normals[index], boundary[index], index, cKDTree(points),
                   local_faces, incident_triangles(local_faces, len(index)))


@dataclass
class Correspondence:
    target: np.ndarray        # (V,3) closest input points, template frame mm
    normal: np.ndarray        # (V,3) their normals, template frame
    weight: np.ndarray        # (V,) 0 = rejected
    distance_mm: np.ndarray   # (V,) point-to-point distance, mm


def closest_on_surface(points: np.ndarray, surface: Surface, reach: float = np.inf):
    """(closest point, interpolated normal, on the open boundary) for each point. With a finite
    `reach`, on a vertex surface, a point with no input vertex that close gets NaN point and normal
    (the tree's search stops at the reach: several times faster when much of the template is off
    the input)."""
    if surface.faces is None:
        _, nearest = surface.tree.query(points, distance_upper_bound=reach)
        found = nearest < len(surface.points)
        if found.all():
            return surface.points[nearest], surface.normals[nearest], surface.boundary[nearest]
        closest, normal = np.full(points.shape, np.nan), np.full(points.shape, np.nan)
        hit = nearest[found]
        closest[found], normal[found] = surface.points[hit], surface.normals[hit]
        return closest, normal, np.where(found, surface.boundary[np.minimum(nearest, len(surface.points) - 1)], True)
    triangle, bary, closest = closest_on_mesh(points, surface.points, surface.faces, surface.tree, surface.incident)
    corners = surface.faces[triangle]
    normal = np.einsum("nk,nkc->nc", bary, surface.normals[corners])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
    rim = bary.min(1) < 1e-9
    boundary = rim & (surface.boundary[corners] & (bary > 1e-9)).any(1)
    return closest, normal, boundary


def correspond(shape: np.ndarray, shape_normals: np.ndarray, transform, surface: Surface,
               max_mm: float, bounded: bool = False) -> Correspondence:
    """Closest input point of each template vertex; rejected (weight 0) when too far, on the
    input's open boundary, or on a surface facing the other way. `bounded`: the search stops at
    the rejection distance (the weights are the same; a rejected vertex may get NaN target and
    normal and an infinite distance), for callers that use only the accepted pairs."""
    moved = transform.apply(shape)
    reach = 2.5 * max_mm * transform.scale * (1.0 + 1e-6) if bounded else np.inf
    closest, normal, boundary = closest_on_surface(moved, surface, reach)
    distance = np.linalg.norm(moved - closest, axis=1)
    distance[np.isnan(distance)] = np.inf
    target = transform.inverse(closest)
    normal = normal @ transform.rotation
    distance_mm = distance / transform.scale
    facing = (normal * shape_normals).sum(1)
    weight = (1.0 / (1.0 + (distance_mm / max_mm) ** 2)) * (distance_mm < 2.5 * max_mm)
    weight = weight * (facing > 0.2) * ~boundary
    return Correspondence(target, normal, weight, distance_mm)
