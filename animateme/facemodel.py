"""The ICT Face Model: identities and expression shapes on one topology.

Two sources: the packed `ict_facekit.npz` (default), or an ICT-FaceKit `FaceXModel/` folder of OBJs,
which is what a user outside this workplace gets by cloning ICT-FaceKit. Both give the same
`FaceModel`, in the face model's own units (centimetres, +Y up, looking down +Z).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

from .paths import face_model_path

NEUTRAL_OBJ = "generic_neutral_mesh.obj"
IDENTITY_OBJ = re.compile(r"^identity(\d{3})\.obj$")
SKIN_MATERIAL = "M_Face"
# Vertex ranges from the ICT-FaceKit documentation (see the data README).
SKIN_VERTICES = range(0, 9409)
TEETH_VERTICES = range(17039, 21451)   # ICT-FaceKit's documented teeth range (upper and lower)

# The order in which the packed model lists its expression shapes; a folder is read in this order,
# with any shape not listed here appended alphabetically.
EXPRESSION_ORDER = (
    "browDown_L browDown_R browInnerUp_L browInnerUp_R browOuterUp_L browOuterUp_R cheekPuff_L "
    "cheekPuff_R cheekSquint_L cheekSquint_R eyeBlink_L eyeBlink_R eyeLookDown_L eyeLookDown_R "
    "eyeLookIn_L eyeLookIn_R eyeLookOut_L eyeLookOut_R eyeLookUp_L eyeLookUp_R eyeSquint_L "
    "eyeSquint_R eyeWide_L eyeWide_R jawForward jawLeft jawOpen jawRight mouthClose mouthDimple_L "
    "mouthDimple_R mouthFrown_L mouthFrown_R mouthFunnel mouthLeft mouthLowerDown_L "
    "mouthLowerDown_R mouthPress_L mouthPress_R mouthPucker mouthRight mouthRollLower "
    "mouthRollUpper mouthShrugLower mouthShrugUpper mouthSmile_L mouthSmile_R mouthStretch_L "
    "mouthStretch_R mouthUpperUp_L mouthUpperUp_R noseSneer_L noseSneer_R PupilDilate_L "
    "PupilDilate_R cheekRaiser_L cheekRaiser_R"
).split()


@dataclass
class FaceModel:
    neutral: np.ndarray            # (N,3) f4, cm
    faces: np.ndarray              # (F,4) i4, -1 as 4th index for triangles
    face_material: np.ndarray      # (F,) index into materials
    materials: np.ndarray          # (M,) str
    identity_modes: np.ndarray     # (I,N,3) f4, offsets from neutral
    expression_modes: np.ndarray   # (E,N,3) f4, offsets from neutral at full activation
    expression_names: np.ndarray   # (E,) str
    landmarks68: np.ndarray | None = None   # (68,) vertex indices, when the source has them
    source: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return self.neutral.shape[0]

    def expression(self, name: str) -> np.ndarray:
        names = list(self.expression_names)
        if name not in names:
            raise AnimateMeError(f"the face model has no expression shape {name!r}")
        return self.expression_modes[names.index(name)]

    def skin_triangles(self) -> np.ndarray:
        """(T,3) triangles of the face skin (quads split along one diagonal), original winding."""
        materials = list(self.materials)
        if SKIN_MATERIAL not in materials:
            raise AnimateMeError(f"the face model has no {SKIN_MATERIAL} material group")
        quads = self.faces[self.face_material == materials.index(SKIN_MATERIAL)]
        return triangulate(quads)


def triangulate(polys: np.ndarray) -> np.ndarray:
    """(F,4) quads or -1-padded triangles -> (T,3) triangles with the same winding."""
    first = polys[:, [0, 1, 2]]
    quads = polys[polys[:, 3] >= 0]
    return np.concatenate([first, quads[:, [0, 2, 3]]]).astype(np.int32)


def load_face_model(path: str | Path | None = None) -> FaceModel:
    """Read the packed npz or a FaceXModel folder; clear one-line errors on anything wrong."""
    path = face_model_path(path)
    if not path.exists():
        raise AnimateMeError(
            f"face model not found at {path}: pass --face-model PATH or set ANIMATEME_FACE_MODEL "
            "to ict_facekit.npz or an ICT-FaceKit FaceXModel/ folder"
        )
    if path.is_dir():
        return _load_folder(path)
    return _load_npz(path)


def _load_npz(path: Path) -> FaceModel:
    required = ("neutral", "faces", "face_material", "materials", "identity_modes",
                "expression_modes", "expression_names")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in required if k not in data.files]
            if missing:
                raise AnimateMeError(
                    f"{path} is not a packed ICT face model (missing {', '.join(missing)}): "
                    "point --face-model at ict_facekit.npz or a FaceXModel/ folder"
                )
            arrays = {k: data[k] for k in data.files}
    except AnimateMeError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise AnimateMeError(
            f"cannot read face model {path} ({type(error).__name__}: {error}): the file is "
            "corrupt or truncated; copy it again"
        ) from None
    model = FaceModel(
        neutral=arrays["neutral"].astype(np.float32),
        faces=arrays["faces"].astype(np.int32),
        face_material=arrays["face_material"].astype(np.int32),
        materials=arrays["materials"],
        identity_modes=arrays["identity_modes"].astype(np.float32),
        expression_modes=arrays["expression_modes"].astype(np.float32),
        expression_names=arrays["expression_names"],
        landmarks68=arrays.get("landmarks68"),
        source=str(path),
    )
    _check_shapes(model, path)
    return model


def _check_shapes(model: FaceModel, where: Path) -> None:
    n = model.num_vertices
    for name in ("identity_modes", "expression_modes"):
        modes = getattr(model, name)
        if modes.ndim != 3 or modes.shape[1:] != (n, 3):
            raise AnimateMeError(
                f"{where}: {name} has shape {modes.shape}, expected (*, {n}, 3); the file is "
                "damaged or from another model version"
            )
    if model.faces.max() >= n:
        raise AnimateMeError(f"{where}: faces reference vertex {model.faces.max()} of {n}")


# ---- the FaceXModel folder of OBJs ---------------------------------------------------------------

def _load_folder(folder: Path) -> FaceModel:
    neutral_path = folder / NEUTRAL_OBJ
    if not neutral_path.exists():
        raise AnimateMeError(
            f"{folder} has no {NEUTRAL_OBJ}: point --face-model at ICT-FaceKit's FaceXModel/ folder"
        )
    neutral, faces, groups, materials = read_facex_obj(neutral_path, with_faces=True)
    identity_files = sorted(p for p in folder.iterdir() if IDENTITY_OBJ.match(p.name))
    expression_files = {p.stem: p for p in folder.glob("*.obj")
                        if p.name != NEUTRAL_OBJ and not IDENTITY_OBJ.match(p.name)}
    if not identity_files:
        raise AnimateMeError(f"{folder} has no identityNNN.obj files: the FaceXModel folder is incomplete")
    numbers = [int(IDENTITY_OBJ.match(p.name).group(1)) for p in identity_files]
    if numbers != list(range(len(numbers))):
        gap = next(i for i, n in enumerate(numbers) if n != i)
        raise AnimateMeError(f"{folder}: identity{gap:03d}.obj is missing; copy the whole FaceXModel folder")
    names = [n for n in EXPRESSION_ORDER if n in expression_files]
    names += sorted(set(expression_files) - set(names))

    def offsets(paths: list[Path]) -> np.ndarray:
        out = np.empty((len(paths),) + neutral.shape, dtype=np.float32)
        for i, p in enumerate(paths):
            vertices = read_facex_obj(p)[0]
            if vertices.shape != neutral.shape:
                raise AnimateMeError(
                    f"{p} has {len(vertices)} vertices but {NEUTRAL_OBJ} has {len(neutral)}: "
                    "it belongs to another model version; replace it"
                )
            out[i] = vertices - neutral
        return out

    return FaceModel(
        neutral=neutral,
        faces=faces,
        face_material=groups,
        materials=np.asarray(materials),
        identity_modes=offsets(identity_files),
        expression_modes=offsets([expression_files[n] for n in names]),
        expression_names=np.asarray(names),
        landmarks68=None,
        source=str(folder),
    )


def read_facex_obj(path: Path, with_faces: bool = False):
    """Vertices of an ICT OBJ; with_faces also its polygons (-1-padded to 4) and usemtl groups."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise AnimateMeError(f"cannot read {path} ({error}): replace the file") from None
    vertex_lines = [line[2:] for line in text.splitlines() if line.startswith("v ")]
    try:
        vertices = np.array([line.split()[:3] for line in vertex_lines], dtype=np.float32)
    except ValueError:
        raise AnimateMeError(f"{path} has a malformed vertex line: the OBJ is corrupt; replace it") from None
    if vertices.ndim != 2 or len(vertices) == 0:
        raise AnimateMeError(f"{path} has no vertices: it is not a face-model OBJ")
    if not with_faces:
        return vertices, None, None, None
    faces, groups, materials = [], [], []
    current = -1
    for line in text.splitlines():
        if line.startswith("usemtl "):
            name = line.split(maxsplit=1)[1].strip()
            if name not in materials:
                materials.append(name)
            current = materials.index(name)
        elif line.startswith("f "):
            corners = [int(c.split("/")[0]) - 1 for c in line.split()[1:]]
            if not 3 <= len(corners) <= 4:
                raise AnimateMeError(f"{path}: a face with {len(corners)} corners; expected triangles or quads")
            faces.append(corners + [-1] * (4 - len(corners)))
            groups.append(current)
    return vertices, np.asarray(faces, dtype=np.int32), np.asarray(groups, dtype=np.int32), materials


def write_facex_folder(model: FaceModel, folder: Path, identities: int | None = None,
                       expressions: list[str] | None = None) -> Path:
    """Write a FaceXModel-style folder of OBJs (vertices, faces and usemtl groups). Used by the
    tests to check the folder reader, and by anyone who wants OBJs of the packed model."""
    folder.mkdir(parents=True, exist_ok=True)
    identities = model.identity_modes.shape[0] if identities is None else identities
    expressions = list(model.expression_names) if expressions is None else expressions

    def write(name: str, vertices: np.ndarray, with_faces: bool) -> None:
        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        if with_faces:
            current = None
            for face, group in zip(model.faces, model.face_material):
                if group != current:
                    current = group
                    lines.append(f"usemtl {model.materials[group]}")
                lines.append("f " + " ".join(str(i + 1) for i in face if i >= 0))
        (folder / name).write_text("\n".join(lines) + "\n")

    write(NEUTRAL_OBJ, model.neutral, True)
    for i in range(identities):
        write(f"identity{i:03d}.obj", model.neutral + model.identity_modes[i], False)
    for name in expressions:
        write(f"{name}.obj", model.neutral + model.expression(name), False)
    return folder
