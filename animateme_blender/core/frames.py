"""The two axis conventions the project meets, and one named function each way between them.

Face model (and everything the project stores): +Y up, the face looks down +Z.
Blender: +Z up, the face looks down -Y (Blender's "front" view looks along +Y).
The map is a proper rotation (no mirror): x stays, face-model +Y becomes Blender +Z, face-model +Z
(the face's forward direction) becomes Blender -Y. Lengths are not touched: units are a separate
matter (the registration finds the scale).
"""

from __future__ import annotations

import numpy as np

# Rows: Blender axes written in face-model coordinates, so blender = face_model @ MATRIX.T
FACE_MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0],
                                  [0.0, 0.0, -1.0],
                                  [0.0, 1.0, 0.0]])


def face_model_to_blender(points: np.ndarray) -> np.ndarray:
    """(..., 3) points or displacements in the face model's Y-up frame -> Blender's Z-up frame."""
    points = np.asarray(points)
    out = np.empty(points.shape, dtype=np.result_type(points.dtype, np.float32))
    out[..., 0] = points[..., 0]
    out[..., 1] = -points[..., 2]
    out[..., 2] = points[..., 1]
    return out


def blender_to_face_model(points: np.ndarray) -> np.ndarray:
    """(..., 3) points or displacements in Blender's Z-up frame -> the face model's Y-up frame."""
    points = np.asarray(points)
    out = np.empty(points.shape, dtype=np.result_type(points.dtype, np.float32))
    out[..., 0] = points[..., 0]
    out[..., 1] = points[..., 2]
    out[..., 2] = -points[..., 1]
    return out
