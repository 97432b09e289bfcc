"""Corpus frames for the denoiser: each training example is one frame (deformation, e_k, neutral).

Normalisation (stored with the model): every vertex's deformation is divided by its RMS motion over
the training data, floored at 5 % of the largest so still vertices are not blown up. The optional
neutral feature is each subject's neutral centred on its own centroid and divided by a fixed
length, so the model card carries no face geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme_blender.core.sample.runtime import neutral_feature

from ..splits import load_split, read_npz

SCALE_FLOOR = 0.05


def per_vertex_scale(deform: np.ndarray) -> np.ndarray:
    """(..., V, 3) deformations -> (V,) RMS motion per vertex, floored at 5 % of the largest."""
    flat = deform.reshape(-1, deform.shape[-2], 3)
    squares = np.zeros(flat.shape[1], dtype=np.float64)
    for start in range(0, flat.shape[0], 2048):  # chunked: the full corpus is ~0.5 GB
        squares += np.square(flat[start:start + 2048], dtype=np.float64).sum(axis=(0, 2))
    rms = np.sqrt(squares / (flat.shape[0] * 3))
    return np.maximum(rms, SCALE_FLOOR * rms.max()).astype(np.float32)


@dataclass
class FrameCorpus:
    frames: np.ndarray       # (N,V,3) normalised deformations, N = S*K
    signal: np.ndarray       # (N,C) e_k
    subject_of: np.ndarray   # (N,) row into `neutral`
    neutral: np.ndarray      # (S,V,3) neutral features
    scale: np.ndarray        # (V,)
    label_names: tuple[str, ...]
    fingerprint: str
    identity: np.ndarray | None = None   # (S,) the person each sequence plays (the corpus's `subject`)

    @classmethod
    def load(cls, path: str | Path, scale: np.ndarray | None = None) -> "FrameCorpus":
        split = load_split(path)
        deform = split.deform
        S, K, V, _ = deform.shape
        if scale is None:
            scale = per_vertex_scale(deform)
        frames = deform.reshape(S * K, V, 3)
        frames /= scale[None, :, None]                       # in place: no second 0.5 GB copy
        return cls(frames=frames, signal=split.signal().reshape(S * K, -1), subject_of=np.repeat(np.arange(S), K),
                   neutral=neutral_feature(split.neutral), scale=scale, label_names=split.label_names,
                   fingerprint=split.fingerprint, identity=split.subject)

    @property
    def num_vertices(self) -> int:
        return self.frames.shape[1]


def load_template_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The template fields training, export and the bench need (a full `Template` is not required)."""
    # landmarks: only for --upper-face-weight
    data = read_npz(path, ("vertices", "faces", "spirals", "fingerprint"), optional=("landmarks",),
                    what="template", command="`animateme data template`")
    data["fingerprint"] = str(data["fingerprint"])
    return data
