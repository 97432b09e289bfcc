"""Principal component analysis of mesh frames, shared by the classifier's frame encoder and the
PCA blendshape baseline: numpy only, deterministic for a given seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCA:
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (N,D) orthonormal rows, largest variance first
    variance: np.ndarray    # (N,) variance along each component

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(...,V,3) frames -> (...,N) coefficients."""
        lead = frames.shape[:-2]
        flat = np.asarray(frames, np.float32).reshape(-1, self.mean.size) - self.mean
        return (flat @ self.components.T).reshape(*lead, len(self.components))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(...,N) coefficients -> (...,V,3) frames."""
        lead = codes.shape[:-1]
        flat = np.asarray(codes, np.float32).reshape(-1, len(self.components)) @ self.components
        return (flat + self.mean).reshape(*lead, -1, 3)

    def state(self) -> dict:
        return {"mean": self.mean, "components": self.components, "variance": self.variance}

    @classmethod
    def from_state(cls, state: dict) -> "PCA":
        return cls(*(np.asarray(state[key], np.float32) for key in ("mean", "components", "variance")))


def fit_pca(frames: np.ndarray, components: int = 64, max_frames: int = 8000, seed: int = 0) -> PCA:
    """PCA of (N,V,3) frames. At most `max_frames` frames (drawn with `seed`) are used: the
    covariance of ~1,000-vertex frames is well estimated by a few thousand of them."""
    flat = np.asarray(frames, np.float32).reshape(len(frames), -1)
    if len(flat) > max_frames:
        flat = flat[np.sort(np.random.default_rng(seed).choice(len(flat), max_frames, replace=False))]
    mean = flat.mean(axis=0)
    centred = (flat - mean).astype(np.float64)
    # Economy SVD of the smaller Gram side keeps this to seconds for ~3,000-dim frames.
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    count = min(components, rows.shape[0])
    # Fix each component's sign so refits give identical bases.
    rows = rows[:count]
    signs = np.sign(rows[np.arange(count), np.abs(rows).argmax(axis=1)])
    rows = rows * signs[:, None]
    variance = singular[:count] ** 2 / max(len(centred) - 1, 1)
    return PCA(mean.astype(np.float32), rows.astype(np.float32), variance.astype(np.float32))
