"""The template face: the one topology the model is trained on and generates.

Built at set-up from the face model (`animateme data template`) and shipped inside the extension;
never committed. A fingerprint (vertex count + hash of topology and rest positions) ties models,
corpora and cached fits to the exact template they were made with.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .errors import AnimateMeError


def mesh_fingerprint(vertices: np.ndarray, faces: np.ndarray) -> str:
    """`v<V>-<hash>`: faces exactly, positions rounded to 1e-3 units so float noise does not count."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(faces, dtype=np.int32).tobytes())
    digest.update(np.round(np.asarray(vertices, dtype=np.float64) * 1e3).astype(np.int64).tobytes())
    return f"v{len(vertices)}-{digest.hexdigest()[:16]}"


OPTIONAL = ("landmark_index", "landmark_weight", "landmark_offset", "jaw_twist", "jaw_identity")   # absent from older template files


def vertex_landmark_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index, weight, offset) placing each landmark exactly at its template vertex."""
    table = np.asarray(landmarks, dtype=np.int32)
    return (np.repeat(table[:, None], 3, axis=1), np.tile(np.array([1.0, 0.0, 0.0], np.float32), (len(table), 1)),
            np.zeros((len(table), 3), np.float32))


@dataclass
class Template:
    vertices: np.ndarray          # (V,3) mm, face-model frame (+Y up, looking down +Z)
    faces: np.ndarray             # (F,3)
    spirals: np.ndarray           # (V,L)
    source_index: np.ndarray      # (V,) full-resolution face-model vertex of each template vertex
    full_index: np.ndarray        # (Nf,) the full-resolution skin vertices up-sampling covers
    upsample_index: np.ndarray    # (Nf,3) template vertices of the triangle holding each skin vertex
    upsample_weight: np.ndarray   # (Nf,3) barycentric weights
    landmarks: np.ndarray         # (68,) template vertex nearest each Multi-PIE landmark
    identity_modes: np.ndarray    # (M,V,3) mm
    expression_modes: np.ndarray  # (E,V,3) mm
    expression_names: np.ndarray  # (E,)
    fingerprint: str
    # Where each landmark lies on the template surface: three template vertices, barycentric
    # weights and an offset (landmarks.SurfacePoints). A landmark is its vertex, except where the face model defines it better than
    # a template vertex can (`animateme.template_build.landmark_points`: the nose tip). Templates
    # built before 2026-11-30 lack them: their landmarks are the vertices.
    landmark_index: np.ndarray | None = None     # (68,3) template vertices
    landmark_weight: np.ndarray | None = None    # (68,3) barycentric weights over them
    landmark_offset: np.ndarray | None = None    # (68,3) mm, in that triangle's frame
    # (E,6) the rigid motion of the lower teeth in each expression shape (rotation vector, then
    # translation, mm): what moves a user's lower teeth with the jaw (core/carry/jaw.py). Templates built
    # before 2026-12-07 lack it: their mouth interiors stay still.
    jaw_twist: np.ndarray | None = None
    # (M,3) mm: where each identity mode moves the middle of the lower teeth (core/carry/jaw.py reads
    # the jaw's motion where the user's teeth would sit on the template). Absent before 2026-12-08.
    jaw_identity: np.ndarray | None = None

    def __post_init__(self):
        if self.landmark_index is None or self.landmark_weight is None or self.landmark_offset is None:
            self.landmark_index, self.landmark_weight, self.landmark_offset = vertex_landmark_points(self.landmarks)

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @classmethod
    def load(cls, path: str | Path) -> "Template":
        path = Path(path)
        if not path.exists():
            raise AnimateMeError(f"template not found at {path}: run `animateme data template` (make setup) first")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {f.name: data[f.name] for f in fields(cls) if f.name not in OPTIONAL or f.name in data}
        except KeyError as missing:
            raise AnimateMeError(f"{path} lacks {missing}: rebuild it with `animateme data template`") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise AnimateMeError(f"cannot read template {path} ({error}): rebuild it with `animateme data template`") from None
        arrays["fingerprint"] = str(arrays["fingerprint"])
        template = cls(**arrays)
        if mesh_fingerprint(template.vertices, template.faces) != template.fingerprint:
            raise AnimateMeError(f"{path} does not match its fingerprint: rebuild it with `animateme data template`")
        return template

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(partial, **{f.name: getattr(self, f.name) for f in fields(self)
                                        if getattr(self, f.name) is not None})
        partial.replace(path)  # nothing half-written is ever left under the real name

    def upsample(self, values: np.ndarray) -> np.ndarray:
        """(..., V, 3) values on the template -> (..., Nf, 3) on the full-resolution skin."""
        gathered = values[..., self.upsample_index, :]             # (..., Nf, 3, 3)
        return np.einsum("...nkc,nk->...nc", gathered, self.upsample_weight)

    def check_fingerprint(self, fingerprint: str, what: str) -> None:
        if fingerprint != self.fingerprint:
            raise AnimateMeError(
                f"{what} was made for template {fingerprint}, but this template is {self.fingerprint}: "
                "use files built with the same template, or rebuild them"
            )
