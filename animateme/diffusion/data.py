"""Corpus frames for the denoiser: each training example is one frame (deformation, e_k, neutral).

Normalisation (stored with the model): every vertex's deformation is divided by its RMS motion over
the training data, floored at 5 % of the largest so still vertices are not blown up. The optional
neutral feature is each subject's neutral centred on its own centroid and divided by a fixed
length, so the model card carries no face geometry.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.runtime import neutral_feature

SCALE_FLOOR = 0.05


def load_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray | None]:
    """`keys` (required) and `optional` (None where absent) from one read of the file."""
    path = Path(path)
    if not path.exists():
        raise AnimateMeError(f"{path} not found: build it first (`animateme data template` / `animateme data build`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {key: data[key] for key in keys}
            found.update({key: data[key] if key in data else None for key in optional})
            return found
    except KeyError as missing:
        raise AnimateMeError(f"{path} lacks {missing}: rebuild it") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise AnimateMeError(f"cannot read {path} ({error}): rebuild it") from None


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
        data = load_npz(Path(path), ("neutral", "deform", "label", "label_names", "progression", "fingerprint"),
                        optional=("subject",))
        deform = data["deform"].astype(np.float32, copy=False)
        if deform.ndim != 4 or deform.shape[-1] != 3:
            raise AnimateMeError(f"{path}: deform must be (S,K,V,3), got {deform.shape}")
        S, K, V, _ = deform.shape
        names = tuple(str(n) for n in data["label_names"])
        labels = data["label"].astype(np.int64)
        if labels.min() < 0 or labels.max() >= len(names):
            raise AnimateMeError(f"{path}: labels outside label_names; rebuild the corpus")
        if scale is None:
            scale = per_vertex_scale(deform)
        frames = deform.reshape(S * K, V, 3)
        frames /= scale[None, :, None]                       # in place: no second 0.5 GB copy
        onehot = np.eye(len(names), dtype=np.float32)[labels]
        signal = (data["progression"].astype(np.float32)[:, :, None] * onehot[:, None, :]).reshape(S * K, -1)
        return cls(frames=frames, signal=signal, subject_of=np.repeat(np.arange(S), K),
                   neutral=neutral_feature(data["neutral"]), scale=scale, label_names=names,
                   fingerprint=str(data["fingerprint"]),
                   identity=None if data["subject"] is None else data["subject"].astype(np.int64))

    @property
    def num_vertices(self) -> int:
        return self.frames.shape[1]


def load_template_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The template fields training, export and the bench need (a full `Template` is not required)."""
    data = load_npz(Path(path), ("vertices", "faces", "spirals", "fingerprint"),
                    optional=("landmarks",))   # landmarks: only for --upper-face-weight
    data["fingerprint"] = str(data["fingerprint"])
    return data
