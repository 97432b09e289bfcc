"""What a registration produces: the similarity, the score, the fitted template; its
fingerprint (the one cache key) and its file format."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import AnimateMeError

FIT_VERSION = 5                 # bump when the fit changes, so cached fits are redone


@dataclass
class Similarity:
    """Template frame (mm) -> input frame: y = scale * x @ rotation.T + translation."""
    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def apply_vector(self, vectors: np.ndarray) -> np.ndarray:
        """Displacements (no translation): template mm -> input units."""
        return self.scale * vectors @ self.rotation.T

    def inverse(self, points: np.ndarray) -> np.ndarray:
        return (points - self.translation) @ self.rotation / self.scale

    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out


@dataclass
class FitScore:
    """The judge's figures (judge.py says what they mean and decides `problem`)."""
    residual_mm: float                          # mean |point-to-plane| distance over the face region
    coverage: float                             # fraction of the face region that found the input
    core_coverage: float = float("nan")         # the same over its eyes, nose and mouth
    refined_residual_mm: float = float("nan")   # the same after the refinement
    identity_norm: float = float("nan")         # RMS identity weight (~1 for a typical face)
    nose_mm: float = float("nan")               # how far the nose stands out
    margin: float = float("nan")                # runner-up pose's cost / the best's (1: a tie)
    symmetry_mm: float = float("nan")           # input's mismatch with its own mirror image
    landmark_mm: float = float("nan")           # user landmarks to the fitted ones (nan: none)
    problem: str = ""                           # plain words; "" when the fit is accepted
    forced: bool = False                        # used although refused (the user said so)

    @property
    def accepted(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        figures = (f"residual {self.residual_mm:.2f} mm, face coverage {100 * self.coverage:.0f}%, identity "
                   f"{self.identity_norm:.1f}, nose {self.nose_mm:.0f} mm, pose margin {self.margin:.2f}, "
                   f"symmetry {self.symmetry_mm:.1f} mm")
        if np.isfinite(self.landmark_mm):
            figures += f", landmarks {self.landmark_mm:.1f} mm"
        verdict = "accepted" if self.accepted else f"refused ({self.problem})"
        return f"{verdict}{' but used anyway' if self.forced else ''}: {figures}"


@dataclass
class Fit:
    vertices: np.ndarray            # (V,3) fitted template in the input's own coordinates/units
    template_space: np.ndarray      # (V,3) the same shape in the template frame, mm
    transform: Similarity           # template frame mm -> input frame
    score: FitScore
    fingerprint: str                # of the input mesh (and options) the fit was made for
    template_fingerprint: str
    identity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    part: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # input vertices used
    template_faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int32))
    # (V,3) mm: the jaw and mouth expression the fit found in the input (an open mouth), part of
    # template_space; the model is conditioned on the face without it (neutral_space).
    expression: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.float32))

    @property
    def neutral_space(self) -> np.ndarray:
        """(V,3) template frame mm: the fitted face with its mouth closed, the model's neutral."""
        if len(self.expression) != len(self.template_space):
            return self.template_space
        return self.template_space - self.expression

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        score = {f"score_{f.name}": getattr(self.score, f.name) for f in fields(FitScore)}
        np.savez_compressed(
            partial, vertices=self.vertices, template_space=self.template_space,
            scale=self.transform.scale, rotation=self.transform.rotation,
            translation=self.transform.translation, accepted=self.score.accepted,
            fingerprint=self.fingerprint, template_fingerprint=self.template_fingerprint,
            identity=self.identity, part=self.part, template_faces=self.template_faces,
            expression=self.expression, fit_version=FIT_VERSION, **score)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Fit":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "fit_version" not in data.files or int(data["fit_version"]) != FIT_VERSION:
                    raise AnimateMeError(f"{path} was made by another version of the fit: register again")
                score = _score_from(data)
                return cls(
                    vertices=data["vertices"], template_space=data["template_space"],
                    transform=Similarity(float(data["scale"]), data["rotation"], data["translation"]),
                    score=score, fingerprint=str(data["fingerprint"]),
                    template_fingerprint=str(data["template_fingerprint"]),
                    identity=data["identity"], part=data["part"], template_faces=data["template_faces"],
                    expression=data["expression"])
        except (OSError, KeyError, ValueError) as error:
            raise AnimateMeError(f"cannot read fit {path} ({error}): register the mesh again") from None


def _score_from(data) -> FitScore:
    cast = {"str": str, "bool": bool}
    return FitScore(**{f.name: cast.get(f.type, float)(data[f"score_{f.name}"]) for f in fields(FitScore)})


def fit_fingerprint(vertices, faces, template_fingerprint: str, landmarks=None, part=None,
                    refine: bool = True) -> str:
    """The one key of a fit: geometry (rounded to 1e-6 of its size, and the size, so the same
    shape in metres and millimetres differs), topology, landmarks, face region, options, template."""
    digest = hashlib.sha256()
    vertices = np.asarray(vertices, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = float(np.ptp(vertices, axis=0).max()) if vertices.ndim == 2 and len(vertices) else 1.0
        scale = scale if np.isfinite(scale) and scale > 0 else 1.0
        digest.update(np.nan_to_num(np.round(vertices / scale * 1e6)).astype(np.int64).tobytes())
    digest.update(f"{scale:.6e}".encode())
    digest.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    marks = sorted((str(k), int(v)) for k, v in (landmarks or {}).items())
    digest.update(repr((template_fingerprint, marks, refine, FIT_VERSION)).encode())
    if part is not None:
        part = np.asarray(part)
        digest.update((np.flatnonzero(part) if part.dtype == bool else part.astype(np.int64)).tobytes())
    return f"n{len(vertices)}-{digest.hexdigest()[:20]}"
