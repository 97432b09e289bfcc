"""How the artist steers a fit: landmarks, a face region, and "use it anyway".

One frozen value per request, hashable, so the pipeline can key its fit cache on it (landmarks
and region give another fit; `force` judges the same fit differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnimateMeError
from ..vocabulary import LANDMARK_ALIASES, MIN_LANDMARKS


@dataclass(frozen=True)
class FitOptions:
    """How to fit: landmarks {vocabulary name: vertex index} (3+), the face region (vertex
    indices; everything else stays exactly still), and `force` (use a refused fit anyway)."""

    landmarks: tuple = ()          # sorted ((name, index), ...)
    region: tuple | None = None    # sorted vertex indices
    force: bool = False

    @classmethod
    def make(cls, landmarks: dict | None = None, region=None, force: bool = False) -> "FitOptions":
        region = None if region is None or len(region) == 0 else tuple(sorted({int(i) for i in region}))
        return cls(tuple(sorted((str(k), int(v)) for k, v in (landmarks or {}).items())), region, bool(force))

    def check(self, vertex_count: int) -> "FitOptions":
        bad = [f"{name}={index}" for name, index in self.landmarks if not 0 <= index < vertex_count]
        if bad:
            raise AnimateMeError(f"landmark {', '.join(bad)} is not a vertex of this {vertex_count}-vertex mesh: "
                                 "place the landmark again")
        if self.landmarks and len(self.landmarks) < MIN_LANDMARKS:
            raise AnimateMeError(f"{len(self.landmarks)} landmark(s) placed: place at least {MIN_LANDMARKS} "
                                 "(nose tip and both mouth corners are quickest), or remove them")
        if self.region is not None and not 0 <= self.region[-1] < vertex_count:
            raise AnimateMeError(f"the face region names vertex {self.region[-1]}, but the mesh has "
                                 f"{vertex_count}: choose the region again")
        return self

    def core_landmarks(self) -> dict | None:
        """The landmarks under the registration core's own names."""
        if not self.landmarks:
            return None
        from .registration import LANDMARK_NAMES as CORE_NAMES

        back = {new: old for old, new in LANDMARK_ALIASES.items()}
        return {(name if name in CORE_NAMES else back.get(name, name)): index for name, index in self.landmarks}

    def region_indices(self) -> np.ndarray | None:
        return None if self.region is None else np.asarray(self.region, dtype=np.int64)

    def outside_region(self, vertex_count: int) -> np.ndarray | None:
        """(N,) bool: the vertices that must stay exactly still (None without a region)."""
        if self.region is None:
            return None
        still = np.ones(vertex_count, dtype=bool)
        still[self.region_indices()] = False
        return still

    def fit_part(self, faces: np.ndarray, vertex_count: int) -> np.ndarray | None:
        """The vertices the fit looks at: the region; else, with landmarks, the connected parts
        that hold them (the landmarks say where the face is: a separate body shell, larger than
        the face, is not fitted instead); else None (the fit chooses)."""
        if self.region is not None:
            return self.region_indices()
        if not self.landmarks:
            return None
        from .registration import components

        labels = components(np.asarray(faces, dtype=np.int64), vertex_count)
        held = np.unique(labels[[index for _, index in self.landmarks]])
        held = held[held >= 0]
        if len(held) == 0:
            raise AnimateMeError("the landmarks are on vertices outside any face of the mesh: place them on "
                                 "the face's surface")
        return np.flatnonzero(np.isin(labels, held))
