"""A dense face that is not the face model's, for measuring motion where the artist sees it.

The evaluation carries template deformations onto it as the Blender extension does (registration,
binding, smooth carry: core.fit.registration, core.carry.transfer, core.carry.smooth_carry), so lumps that the
1,000-vertex template hides but the dense surface shows are counted. Default: MeshMonk's average face
(`shared/data/real-faces/meshmonk_Template.obj`, 7,160 vertices, Apache-2.0) with the landmarks
listed beside it; without that folder the dense-face figures are left out and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme.paths import REPO_ROOT
from animateme_blender.core.errors import AnimateMeError

from .surface import graph_laplacian

REAL_FACES = REPO_ROOT.parent / "shared" / "data" / "real-faces"
DEFAULT_FACE = "meshmonk_Template"


@dataclass
class DenseFace:
    name: str
    vertices: np.ndarray
    faces: np.ndarray
    binding: object            # core.carry.transfer.Binding
    carrier: object            # core.carry.smooth_carry.SmoothCarry of it: how the extension carries frames
    laplacian: object          # scipy sparse (N,N)
    fit_score: str             # the registration's own quality line, for the report
    neutral: np.ndarray        # (V,3) the template fitted to this face, template frame mm
    fitted: np.ndarray         # (V,3) the same fitted template in the face's own frame and units

    def carry(self, deformations: np.ndarray) -> np.ndarray:
        """(S,V,3) template deformations, mm -> (S,N,3) displacements of the dense face."""
        return self.carrier.apply(np.asarray(deformations, np.float64))


def real_face_landmarks(name: str, folder: Path = REAL_FACES) -> tuple[Path, dict]:
    """The OBJ of a face in the real-faces folder and its landmark vertices from landmarks.json."""
    index = folder / "landmarks.json"
    try:
        entry = json.loads(index.read_text())[name]
    except (OSError, ValueError, KeyError) as error:
        raise AnimateMeError(f"no real face {name!r} in {index} ({error}): check ../shared/data/real-faces") from None
    return folder / entry["file"], dict(entry["landmarks"])


def load_dense_face(path: Path, landmarks: dict | None, template, name: str | None = None) -> DenseFace:
    from animateme.meshio import read_mesh

    vertices, faces = read_mesh(path)
    return dense_face(vertices, faces, landmarks, template, name or Path(path).stem)


def dense_face(vertices, faces, landmarks: dict | None, template, name: str) -> DenseFace:
    """Register and bind a face given as arrays (any units and pose)."""
    from animateme_blender.core.fit.registration import fit_template
    from animateme_blender.core.carry.smooth_carry import SmoothCarry
    from animateme_blender.core.carry.transfer import bind

    # The registration judges on the template's face region, so a front-only mask passes as it is;
    # a refused fit is no basis for a measurement.
    try:
        fit = fit_template(vertices, faces, template, landmarks=landmarks)
    except AnimateMeError as error:
        raise AnimateMeError(f"the dense face {name} does not fit the template ({error}): "
                             "give its landmarks or another face") from None
    binding = bind(fit, vertices, faces)
    # Roughness is a ratio, so the face's own units do not matter.
    return DenseFace(name, np.asarray(vertices), np.asarray(faces), binding, SmoothCarry(binding),
                     graph_laplacian(faces, len(vertices)), fit.score.describe(),
                     np.asarray(fit.neutral_space, np.float32), np.asarray(fit.vertices, np.float32))


def default_dense_face(template) -> tuple[DenseFace | None, str]:
    """(MeshMonk's average face, "") when ../shared/data/real-faces is there and the template
    registers onto it; else (None, why not) — the report then says the figure was not measured."""
    if not (REAL_FACES / "landmarks.json").is_file():
        return None, f"no {REAL_FACES}"
    path, landmarks = real_face_landmarks(DEFAULT_FACE)
    try:
        return load_dense_face(path, landmarks, template, DEFAULT_FACE), ""
    except AnimateMeError as error:   # e.g. a test template that is not a face
        return None, str(error)
