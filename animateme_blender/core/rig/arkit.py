"""ARKit's 52 blendshapes from the face model's expression shapes, personalised to a subject.

The face model's shapes carry ARKit's names in its own spelling (`eyeBlink_L` for `eyeBlinkLeft`;
`_L` is the subject's own left, +X in the face-model frame, as ARKit's `Left` is the face's own
left). Two ARKit shapes are single where the face model has a pair (`browInnerUp`, `cheekPuff`:
the sum of both sides), and `tongueOut` has no counterpart (the face model's skin has no tongue):
it is kept as an all-zero shape so a rig always carries all 52 names, and its weight stays 0.
The face model's extra shapes (`cheekRaiser_*`, `PupilDilate_*`) are not ARKit's and are not used.

`personalise` carries the generic shapes onto a subject's own face by deformation transfer
(Sumner & Popović 2004, edge form): each template triangle's deformation gradient under the
generic shape is applied to the subject's triangle, and the subject's vertices are solved in least
squares, so a wide mouth smiles as wide as it is. One factorisation serves every shape.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ..errors import AnimateMeError

# Apple's ARFaceAnchor.BlendShapeLocation names, in Apple's documentation order.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
NO_SOURCE = ("tongueOut",)     # no face-model shape: an all-zero shape, weight always 0
# Sideways motions of the whole jaw or mouth: one shape each, named as in ARKit.
WHOLE = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")
DT_ANCHOR = 1e-3               # weak pull to the generic offsets: fixes the free translation


def face_model_sources(arkit_name: str) -> tuple[str, ...]:
    """The face-model shapes whose sum is this ARKit shape (empty for `tongueOut`)."""
    if arkit_name in NO_SOURCE:
        return ()
    if arkit_name in WHOLE:
        return (arkit_name,)
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit_name.endswith(side):
            return (arkit_name[: -len(side)] + suffix,)
    if arkit_name in ("browInnerUp", "cheekPuff"):
        return (arkit_name + "_L", arkit_name + "_R")
    return (arkit_name,)


def arkit_basis(expression_modes: np.ndarray, expression_names) -> np.ndarray:
    """(52, V, 3) generic ARKit shapes, mm, from the face model's (E, V, 3) expression shapes."""
    names = [str(n) for n in expression_names]
    basis = np.zeros((len(ARKIT_NAMES),) + expression_modes.shape[1:], dtype=np.float64)
    for row, arkit_name in enumerate(ARKIT_NAMES):
        for source in face_model_sources(arkit_name):
            if source not in names:
                raise AnimateMeError(f"the template lacks the face-model shape {source!r} for ARKit's "
                                     f"{arkit_name}: rebuild it with `animateme data template`")
            basis[row] += expression_modes[names.index(source)]
    return basis


def _edge_operator(faces: np.ndarray, num_vertices: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Each triangle's three edges as rows of a (3F, V) difference matrix, and their (3F, 2)
    (triangle, corner) pairs: row r is vertex corner+1 minus vertex corner of triangle r // 3."""
    starts = faces
    ends = np.roll(faces, -1, axis=1)
    rows = np.arange(3 * len(faces))
    data = np.concatenate([np.ones(len(rows)), -np.ones(len(rows))])
    matrix = sp.csr_matrix((data, (np.concatenate([rows, rows]),
                                   np.concatenate([ends.ravel(), starts.ravel()]))),
                           shape=(len(rows), num_vertices))
    return matrix, np.stack([rows // 3, rows % 3], axis=1)


def _frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,3,3) per-triangle columns [e1, e2, n/sqrt|n|]: the classic deformation-gradient frame."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    e1, e2 = b - a, c - a
    normal = np.cross(e1, e2)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = normal / np.sqrt(np.maximum(length, 1e-12))
    return np.stack([e1, e2, normal], axis=2)


def personalise(basis: np.ndarray, generic_neutral: np.ndarray, subject_neutral: np.ndarray,
                faces: np.ndarray) -> np.ndarray:
    """(S,V,3) generic shapes on the generic neutral -> (S,V,3) the same expressions on the
    subject's neutral (same topology, same frame and units), by deformation transfer."""
    generic_neutral = np.asarray(generic_neutral, dtype=np.float64)
    subject_neutral = np.asarray(subject_neutral, dtype=np.float64)
    if generic_neutral.shape != subject_neutral.shape or basis.shape[1:] != generic_neutral.shape:
        raise AnimateMeError("shapes, generic neutral and subject neutral must share one topology")
    faces = np.asarray(faces)
    rest = _frames(generic_neutral, faces)
    if np.abs(np.linalg.det(rest)).min() < 1e-12:
        raise AnimateMeError("the template has degenerate triangles: rebuild it with `animateme data template`")
    rest_inverse = np.linalg.inv(rest)
    edges, pairs = _edge_operator(faces, len(generic_neutral))
    subject_edges = edges @ subject_neutral                                    # (3F,3)
    system = (edges.T @ edges + DT_ANCHOR * sp.identity(len(generic_neutral))).tocsc()
    solve = splu(system)
    out = np.empty_like(basis, dtype=np.float64)
    for s, shape in enumerate(basis):
        if not shape.any():      # tongueOut: stays exactly still, not 1e-11 of solver noise
            out[s] = 0.0
            continue
        gradient = _frames(generic_neutral + shape, faces) @ rest_inverse      # (F,3,3)
        target = np.einsum("rij,rj->ri", gradient[pairs[:, 0]], subject_edges)  # Q applied to edges
        rhs = edges.T @ target + DT_ANCHOR * (subject_neutral + shape)
        out[s] = solve.solve(rhs) - subject_neutral
    return out
