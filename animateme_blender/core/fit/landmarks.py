"""Landmarks: the names a user may give (left/right are the face's own), where each sits on the
template (a Multi-PIE 68-point index, the template's `landmarks` table; the point on its surface,
`SurfacePoints`), and the similarity they give. Front ends store them under these exact names
(Blender: vertex groups AM_landmark_<name>)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnimateMeError
from .fitresult import Similarity
from ..geometry import triangle_frames
from .pose import umeyama
from ..remedies import MIN_LANDMARKS

# Multi-PIE 68: the subject's right side is the image's left (indices 36-41, 48).
LANDMARK_NAMES = {
    "nose_tip": 30, "mouth_left": 54, "mouth_right": 48,
    "eye_inner_left": 42, "eye_inner_right": 39, "eye_outer_left": 45, "eye_outer_right": 36,
    "chin": 8,
}


def check_landmarks(landmarks: dict | None, vertex_count: int) -> dict[str, int] | None:
    """{name: vertex index} validated (known names, 3 or more, inside the mesh, not all on one
    spot), or None when none are given."""
    if not landmarks:
        return None
    unknown = sorted(n for n in landmarks if n not in LANDMARK_NAMES)
    if unknown:
        raise AnimateMeError(f"unknown landmark names {unknown}: use {', '.join(LANDMARK_NAMES)}")
    if len(landmarks) < MIN_LANDMARKS:
        raise AnimateMeError(f"give at least {MIN_LANDMARKS} landmarks (of {', '.join(LANDMARK_NAMES)}); "
                             f"got {len(landmarks)}")
    try:
        out = {name: int(index) for name, index in landmarks.items()}
    except (TypeError, ValueError):
        raise AnimateMeError("landmarks must be vertex indices (whole numbers)") from None
    if min(out.values()) < 0 or max(out.values()) >= vertex_count:
        raise AnimateMeError("a landmark vertex index is outside the mesh: place the landmarks again")
    if len(set(out.values())) < len(out):
        raise AnimateMeError("two landmarks are on the same vertex: place each on its own vertex")
    return out


@dataclass
class SurfacePoints:
    """Points on the template's surface: (P,3) template vertices, (P,3) barycentric weights and
    (P,3) offsets in mm from that point, in the triangle's own frame (geometry.triangle_frames), so
    they turn with it (zero where the point is a vertex)."""
    index: np.ndarray
    weight: np.ndarray
    offset: np.ndarray

    def on(self, shape: np.ndarray) -> np.ndarray:
        """(P,3) the points on a template-shaped (V,3) array in the template frame, mm."""
        shape = np.asarray(shape, dtype=np.float64)
        points = np.einsum("pk,pkc->pc", self.weight, shape[self.index])
        lifted = np.abs(self.offset).sum(axis=1) > 0
        if lifted.any():
            frames = triangle_frames(shape, self.index[lifted])               # (L,3,3), rows
            points[lifted] += np.einsum("lr,lrc->lc", self.offset[lifted], frames)
        return points


def template_landmark_points(template, names) -> SurfacePoints:
    """Where each named landmark lies on the template (a vertex, or the nose tip's pronasale;
    see Template.landmark_index)."""
    table = np.asarray(template.landmarks)
    if len(table) < 68:
        raise AnimateMeError("this template has no landmark table: rebuild it with `animateme data template`")
    rows = [LANDMARK_NAMES[n] for n in names]
    return SurfacePoints(np.asarray(template.landmark_index, dtype=np.int64)[rows],
                         np.asarray(template.landmark_weight, dtype=np.float64)[rows],
                         np.asarray(template.landmark_offset, dtype=np.float64)[rows])


def landmark_alignment(source: np.ndarray, targets: np.ndarray) -> Similarity:
    """The similarity taking the template's landmark points `source` onto the user's `targets`."""
    if np.linalg.matrix_rank(source - source.mean(0), tol=1e-6) < 2 or \
            np.linalg.matrix_rank(targets - targets.mean(0), tol=1e-9 * max(np.ptp(targets), 1e-30)) < 2:
        raise AnimateMeError("the landmarks lie on one line: add one off that line (e.g. the nose tip or the chin)")
    scale, rotation, translation = umeyama(source, targets, np.ones(len(source)))
    return Similarity(scale, rotation, translation)
