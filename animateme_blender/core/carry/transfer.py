"""Carry template deformations to the user's own vertices.

Binding (once per mesh): each user vertex, mapped into the template frame (mm) by the fit's
similarity, is bound to its closest triangle of the fitted template: the closest point's
barycentric coordinates, and the offset from that point to the vertex written in the triangle's
own frame (edge, in-plane perpendicular, normal). A frame moves the template; each bound vertex
follows its triangle: the closest point by the barycentric coordinates, the offset rotated with
the triangle. So a rigid motion of the template moves bound vertices exactly rigidly, and a zero
deformation moves nothing.

Coverage: the binding's weight fades smoothly (smoothstep) from 1 at `fade_start_mm` to 0 at
`fade_end_mm` of distance from the template surface. The back of the head, ears, neck and a body
lie beyond the template's border or far below its surface, so they stay still, without a seam.

Separate rigid parts (documented behaviour): every connected component of the user's mesh other
than the fitted face part (eyeballs, teeth, tongue, lashes as separate objects) moves as one
piece: by the mean of the displacements its vertices would get. Eyeballs and teeth sit well
below the skin, so their mean is ~0 and they stay still; lashes or brows as separate shells
follow the skin under them. The jaw does not carry lower teeth (limitation: the template has no
teeth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import AnimateMeError
from ..geometry import closest_on_mesh, closest_points_on_triangles, components, incident_triangles, triangle_frames
from .jaw import SHELL, classify_parts, jaw_map, jaw_pivot, rigid_motion
from .lips import closest_allowed, template_sides, user_sides

__all__ = ["Binding", "bind", "closest_points_on_triangles", "incident_triangles", "smoothstep_fade",
           "triangle_frames"]

CHUNK = 20_000         # user vertices bound per batch (memory stays ~100 MB for any mesh)
CANDIDATES = 2         # nearest template vertices whose triangles are tested


def smoothstep_fade(distance: np.ndarray, start: float, end: float) -> np.ndarray:
    """1 up to `start`, 0 from `end`, C1-smooth between."""
    x = np.clip((np.asarray(distance, dtype=np.float64) - start) / max(end - start, 1e-12), 0.0, 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)


@dataclass
class Binding:
    rest: np.ndarray          # (V,3) fitted template, template frame mm
    faces: np.ndarray         # (F,3) template triangles
    triangle: np.ndarray      # (N,) template triangle of each user vertex
    barycentric: np.ndarray   # (N,3)
    offset: np.ndarray        # (N,3) vertex - closest point, in the triangle's frame, mm
    weight: np.ndarray        # (N,) fade in [0,1]
    group: np.ndarray         # (N,) -1: bound per vertex; g >= 0: member of rigid part g
    scale: float              # template mm -> user units
    rotation: np.ndarray      # template frame -> user frame
    side: np.ndarray | None = None       # (N,) lips.py side code of each user vertex (NONE: -1)
    template_side: np.ndarray | None = None  # (V,) side code of each template vertex
    # Along a lip contact that the user's mesh does not cut (fused lips, the corners): these
    # vertices take `blend` of the other side's motion, carried by `alternate` (their binding to it).
    alternate: "Binding | None" = None
    mixed: np.ndarray | None = None      # (M,) user vertices with an alternate binding
    blend: np.ndarray | None = None      # (M,) in (0, 0.5]
    # Separate parts inside the head (jaw.py): kind STILL / JAW / SHELL per vertex, the share of the
    # jaw's rigid motion each takes, the map from a template frame to that motion, its pivot.
    kind: np.ndarray | None = None
    jaw: np.ndarray | None = None
    jaw_map: np.ndarray | None = None
    jaw_centre: np.ndarray | None = None
    jaw_anchor: np.ndarray | None = None      # where the jaw's field is read for the centre (jaw.py)

    def mix(self, own: np.ndarray, other: np.ndarray) -> np.ndarray:
        """(K,N,3) own-side displacements, (K,M,3) the mixed vertices' other-side ones -> blended."""
        if self.alternate is None:
            return own
        out = own.copy()
        face = self.group[self.mixed] < 0            # rigid parts move as parts
        index, share = self.mixed[face], self.blend[face][None, :, None]
        out[:, index] = (1.0 - share) * own[:, index] + share * other[:, face]
        return out

    @property
    def distance_mm(self) -> np.ndarray:
        return np.linalg.norm(self.offset, axis=1)

    def apply(self, deform: np.ndarray, mix: bool = True) -> np.ndarray:
        """(K,V,3) or (V,3) template deformations in mm -> (K,N,3) or (N,3) displacements of the
        user's vertices in the user's units and frame. mix=False: each vertex by its own side only."""
        deform = np.asarray(deform, dtype=np.float64)
        single = deform.ndim == 2
        frames = deform[None] if single else deform
        if frames.ndim != 3 or frames.shape[1:] != self.rest.shape:
            raise AnimateMeError(f"deformations must be (K,{len(self.rest)},3) on the template; got {deform.shape}")
        if not np.isfinite(frames).all():
            raise AnimateMeError("the deformations contain NaN or infinite values: regenerate them")
        rest_frames = triangle_frames(self.rest, self.faces)[self.triangle]          # (N,3,3)
        corners = self.faces[self.triangle]                                           # (N,3)
        rest_points = np.einsum("nk,nkc->nc", self.barycentric, self.rest[corners])
        rest_points += np.einsum("nr,nrc->nc", self.offset, rest_frames)
        out = np.empty((len(frames), len(self.triangle), 3), dtype=np.float32)
        inside = np.zeros(len(self.group), bool) if self.kind is None else (self.group >= 0) & (self.kind != SHELL)
        members = (self.group >= 0) & ~inside
        groups = self.group[members]
        counts = np.bincount(groups) if members.any() else np.zeros(0)
        for k, frame in enumerate(frames):
            moved = self.rest + frame
            new_frames = triangle_frames(moved, self.faces)[self.triangle]
            points = np.einsum("nk,nkc->nc", self.barycentric, moved[corners])
            points += np.einsum("nr,nrc->nc", self.offset, new_frames)
            motion = (points - rest_points) * self.weight[:, None]
            if members.any():
                # Rigid parts: one translation each, the mean of what their vertices would get.
                mean = np.stack([np.bincount(groups, weights=motion[members, c]) for c in range(3)], 1)
                motion[members] = (mean / np.maximum(counts, 1)[:, None])[groups]
            if inside.any():
                # Teeth, gums, tongue, eyeballs: still, or with the jaw, rigidly (jaw.py).
                motion[inside] = 0.0
                if self.jaw_map is not None:
                    twist = self.jaw_map @ frame.reshape(-1)
                    motion[inside] = self.jaw[inside, None] * rigid_motion(twist, rest_points[inside],
                                                                           self.jaw_centre, self.jaw_anchor)
            out[k] = self.scale * motion @ self.rotation.T
        if mix and self.alternate is not None:
            out = self.mix(out, self.alternate.apply(frames))
        return out[0] if single else out


def bind(fit, vertices, faces=None, fade_start_mm: float = 2.0, fade_end_mm: float = 15.0,
         rigid_parts: bool = True, progress=None, region=None, template=None) -> Binding:
    """Bind every user vertex to the fitted template (`fit` from registration.fit_template).
    vertices (N,3) in the user's units; faces (F,3) optional, used to find separate rigid parts.
    region: the face region the user chose (vertex indices or a boolean mask), optional: every
    vertex outside it stays exactly still (weight 0, no rigid part). template: the core Template,
    whose jaw motions move lower teeth, gums and tongue with the jaw (without it they stay still)."""
    vertices = np.array(vertices, dtype=np.float64, copy=True)
    if vertices.ndim != 2 or vertices.shape[1:] != (3,) or len(vertices) == 0:
        raise AnimateMeError(f"cannot bind: vertices must be a non-empty (N,3) array, got {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise AnimateMeError("cannot bind: some vertices have NaN or infinite coordinates; fix the mesh")
    rest = np.asarray(fit.template_space, dtype=np.float64)
    template_faces = np.asarray(fit.template_faces, dtype=np.int64)
    if len(template_faces) == 0:
        raise AnimateMeError("this fit has no template triangles (made by an older version): register again")
    local = fit.transform.inverse(vertices)           # template frame, mm
    triangle, barycentric, offset = _closest_triangles(rest, template_faces, local, progress)
    # Lips and lids: each vertex binds to its own side's triangles only (lips.py), never the other's.
    sides = template_sides(rest, template_faces)
    side, blend = user_sides(sides, rest, template_faces, local, faces)
    _rebind_sides(sides, rest, template_faces, local, side, triangle, barycentric, offset)
    mixed = np.flatnonzero(blend > 0)
    weight = smoothstep_fade(np.linalg.norm(offset, axis=1), fade_start_mm, fade_end_mm)
    group = np.full(len(vertices), -1, dtype=np.int64)
    if region is not None:
        region = np.asarray(region)
        inside = np.zeros(len(vertices), dtype=bool)
        if region.dtype == bool:
            if len(region) != len(vertices):
                raise AnimateMeError("the face-region mask must have one entry per vertex")
            inside = region.copy()
        else:
            inside[region.astype(np.int64)] = True
        weight = np.where(inside, weight, 0.0)
    elif rigid_parts and faces is not None and len(faces):
        group = _rigid_groups(np.asarray(faces, dtype=np.int64), len(vertices), np.asarray(fit.part), weight)
    kind, jaw = classify_parts(local, group, offset, rest, sides, faces)
    to_jaw = jaw_map(template) if template is not None else None
    centre, anchor = jaw_pivot(local, jaw, group, fit, template, to_jaw)
    parts = dict(kind=kind, jaw=jaw, jaw_map=to_jaw, jaw_centre=centre, jaw_anchor=anchor)
    common = dict(rest=rest, faces=template_faces, scale=float(fit.transform.scale),
                  rotation=np.asarray(fit.transform.rotation, dtype=np.float64), template_side=sides.template)
    alternate = None
    if len(mixed):
        other = side[mixed] ^ 1
        found, bary, off = triangle[mixed].copy(), barycentric[mixed].copy(), offset[mixed].copy()
        _rebind_sides(sides, rest, template_faces, local[mixed], other, found, bary, off)
        alternate = Binding(triangle=found, barycentric=bary, offset=off, weight=weight[mixed],
                            group=np.full(len(mixed), -1, dtype=np.int64), side=other, **common)
    return Binding(triangle=triangle, barycentric=barycentric, offset=offset, weight=weight, group=group,
                   side=side, alternate=alternate, mixed=mixed if alternate is not None else None,
                   blend=blend[mixed] if alternate is not None else None, **parts, **common)


def _rebind_sides(sides, rest, faces, local, side, triangle, barycentric, offset) -> None:
    """In place: the vertices with a side take their closest triangle among that side's."""
    frames = triangle_frames(rest, faces)
    for code in np.unique(side[side >= 0]):
        members = np.flatnonzero(side == code)
        found, bary, closest = closest_allowed(local[members], rest, faces, sides.allowed_faces(faces, code))
        triangle[members], barycentric[members] = found, bary
        offset[members] = np.einsum("nc,nrc->nr", local[members] - closest, frames[found])


def _closest_triangles(rest, faces, points, progress=None):
    """(triangle, barycentric, offset in the triangle's frame) of each point's closest point on
    the template, in chunks so memory stays bounded for any mesh."""
    table = incident_triangles(faces, len(rest))
    tree = cKDTree(rest)
    frames = triangle_frames(rest, faces)
    triangle = np.empty(len(points), dtype=np.int64)
    barycentric = np.empty((len(points), 3))
    offset = np.empty((len(points), 3))
    for start in range(0, len(points), CHUNK):
        chunk = points[start:start + CHUNK]
        found, bary, closest = closest_on_mesh(chunk, rest, faces, tree, table, CANDIDATES)
        triangle[start:start + len(chunk)] = found
        barycentric[start:start + len(chunk)] = bary
        offset[start:start + len(chunk)] = np.einsum("nc,nrc->nr", chunk - closest, frames[found])
        if progress is not None:
            progress(min(1.0, (start + len(chunk)) / len(points)), "binding vertices")
    return triangle, barycentric, offset


def _rigid_groups(faces: np.ndarray, count: int, face_part: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Component index for vertices of separate parts; -1 for the face part's vertices."""
    faces = faces[(faces >= 0).all(1) & (faces < count).all(1)]
    labels = components(faces, count)
    if len(face_part):
        face_labels = np.unique(labels[face_part[face_part < count]])
    else:
        # No record of the part: the face is the component holding most bound weight.
        valid = labels >= 0
        face_labels = [np.argmax(np.bincount(labels[valid], weights=weight[valid]))] if valid.any() else []
    group = labels.copy()
    group[np.isin(labels, face_labels) | (labels < 0)] = -1
    _, group[group >= 0] = np.unique(group[group >= 0], return_inverse=True)
    return group
