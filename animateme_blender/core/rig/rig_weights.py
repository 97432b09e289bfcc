"""A performance as blendshape weights: each generated frame's template deformation solved for
weights in [0, 1] of a rig's shapes, with a little temporal smoothing.

The problem for K frames and S shapes is one bounded least-squares problem:
    minimise  sum_k |B^T w_k - d_k|^2  +  smoothing * sum_k |w_k - w_(k-1)|^2,   0 <= w <= 1,
with B the (S, 3V) shapes. Reduced through the Cholesky factor of B B^T it has S rows per frame
instead of 3V. Each frame alone is an exact bounded-variable least squares of S unknowns (the
answer without smoothing, and the warm start); the smoothing couples the frames and is solved by
ADMM over all K x S unknowns with one sparse factorisation (a dense joint BVLS took 4 minutes here,
block Gauss-Seidel 6-17 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import lsq_linear
from scipy.sparse.linalg import splu

from ..errors import AnimateMeError

DEFAULT_SMOOTHING = 0.05   # relative to the shapes' mean energy: damps flicker, keeps onsets sharp
ADMM_ITERATIONS = 2000     # the smoothed solve stops earlier once weights settle to ADMM_TOLERANCE
ADMM_TOLERANCE = 1e-5
RIDGE = 1e-8               # relative: keeps B B^T positive definite with an all-zero shape (tongueOut)


@dataclass
class WeightFit:
    weights: np.ndarray       # (K, S) in [0, 1]
    residual_mm: np.ndarray   # (K,) mean per-vertex distance between the rig's frame and the target
    target_mm: np.ndarray     # (K,) mean per-vertex size of the target frame


class SpanProjection:
    """Frames -> what the shapes can say of them: each frame's bounded least-squares weights in
    [0, 1] (no temporal smoothing) and the frame they rebuild. Set up once per rig (the Cholesky
    factor of the shapes' Gram matrix); the sampler calls it at every step of a clip sampled in the
    rig's span."""

    def __init__(self, basis: np.ndarray):
        basis = np.asarray(basis, dtype=np.float64)
        if basis.ndim != 3 or not np.isfinite(basis).all():
            raise AnimateMeError(f"the shapes must be finite (S,V,3), got {basis.shape}")
        self.basis = basis
        self.flat = basis.reshape(len(basis), -1)
        gram = self.flat @ self.flat.T
        self.scale = max(float(np.trace(gram)) / len(basis), 1e-12)
        self.gram = gram + RIDGE * self.scale * np.eye(len(basis))
        self.upper = np.linalg.cholesky(self.gram).T                  # gram = U^T U

    def weights(self, frames: np.ndarray) -> np.ndarray:
        """(K,V,3) frames -> (K,S) weights in [0, 1], each frame alone (exact BVLS)."""
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim != 3 or frames.shape[1:] != self.basis.shape[1:]:
            raise AnimateMeError(f"shapes {self.basis.shape} and frames {frames.shape} must share (V,3)")
        if not np.isfinite(frames).all():
            raise AnimateMeError("the shapes or frames contain NaN or infinite values: regenerate them")
        # |B^T w - d|^2 = |U w - U^-T B d|^2 + const: S rows per frame instead of 3V.
        reduced = np.linalg.solve(self.upper.T, self.flat @ frames.reshape(len(frames), -1).T).T   # (K,S)
        weights = np.zeros((len(frames), len(self.basis)))
        for k, row in enumerate(reduced):
            weights[k] = lsq_linear(self.upper, row, bounds=(0.0, 1.0), method="bvls").x
        return weights

    def rebuild(self, weights: np.ndarray) -> np.ndarray:
        return np.einsum("ks,svc->kvc", np.asarray(weights, dtype=np.float64), self.basis)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(K,V,3) frames -> (K,V,3) their reconstruction from weights in [0, 1]."""
        return self.rebuild(self.weights(frames))


def solve_weights(basis: np.ndarray, frames: np.ndarray, smoothing: float = DEFAULT_SMOOTHING) -> WeightFit:
    """(S,V,3) shapes and (K,V,3) frames, both template mm -> weights per frame in [0, 1]."""
    if smoothing < 0:
        raise AnimateMeError(f"smoothing must be >= 0, got {smoothing}")
    projection = SpanProjection(basis)
    frames = np.asarray(frames, dtype=np.float64)
    weights = projection.weights(frames)   # each frame alone: the answer without smoothing, and a warm start
    if smoothing > 0 and len(frames) > 1:
        weights = _smoothed(projection.gram, projection.flat @ frames.reshape(len(frames), -1).T,
                            smoothing * projection.scale, weights)
    weights = np.clip(weights, 0.0, 1.0)
    residual = np.linalg.norm(projection.rebuild(weights) - frames, axis=-1).mean(axis=1)
    return WeightFit(weights=weights.astype(np.float32), residual_mm=residual,
                     target_mm=np.linalg.norm(frames, axis=-1).mean(axis=1))


def _smoothed(gram: np.ndarray, projections: np.ndarray, strength: float, start: np.ndarray) -> np.ndarray:
    """The coupled problem by ADMM (Boyd et al. 2011, box-constrained QP): minimise
    1/2 w^T H w - q^T w over 0 <= w <= 1, H = I (x) gram + strength * (D^T D (x) I); the linear
    step reuses one sparse factorisation of H + rho I for every iteration."""
    shapes, frame_count = gram.shape[0], projections.shape[1]
    difference = sp.diags([-np.ones(frame_count - 1), np.ones(frame_count - 1)], [0, 1],
                          shape=(frame_count - 1, frame_count))
    hessian = sp.kron(sp.identity(frame_count), sp.csr_matrix(gram)) \
        + strength * sp.kron((difference.T @ difference), sp.identity(shapes))
    rho = float(np.trace(gram)) / shapes
    solve = splu((hessian + rho * sp.identity(shapes * frame_count)).tocsc()).solve
    linear = projections.T.ravel()                                   # frame-major, like w
    z = start.ravel().copy()
    u = np.zeros_like(z)
    for _ in range(ADMM_ITERATIONS):
        x = solve(linear + rho * (z - u))
        z_new = np.clip(x + u, 0.0, 1.0)
        u += x - z_new
        settled = np.abs(x - z_new).max() < ADMM_TOLERANCE and np.abs(z_new - z).max() < ADMM_TOLERANCE
        z = z_new
        if settled:
            break
    return z.reshape(frame_count, shapes)
