"""Surface roughness of a deformation: the share of its energy at high spatial frequency.

roughness(d) = sum ||L d||² / sum ||d||², with L the uniform graph Laplacian of the mesh
(L d_i = d_i - mean of d over i's neighbours). A smooth deformation (a jaw drop, a smile) changes
slowly from vertex to vertex and scores low; sampling noise and lumps score high. Dividing by the
energy of d makes it blind to amplitude (that is the amplitude ratio's job). The artist sees the
dense face, not the template, so it is measured on both: on the template, and after carrying the
motion onto a dense face through the same binding the Blender extension uses.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from animateme_blender.core.geometry import graph_laplacian  # noqa: F401  (the metric's Laplacian)


def laplacian_energy(laplacian: sp.csr_matrix, deformations: np.ndarray) -> tuple[float, float]:
    """(sum ||L d||², sum ||d||²) over all frames of (…,V,3) deformations."""
    frames = np.asarray(deformations, np.float64).reshape(-1, laplacian.shape[0], 3)
    stacked = np.moveaxis(frames, 0, 1).reshape(laplacian.shape[0], -1)     # (V, frames*3)
    return float(np.sum((laplacian @ stacked) ** 2)), float(np.sum(stacked ** 2))


def roughness(laplacian: sp.csr_matrix, deformations: np.ndarray) -> float:
    """High-frequency share of the deformations' energy (0 for a rigid translation)."""
    high, total = laplacian_energy(laplacian, deformations)
    return high / total if total > 0 else float("nan")


def roughness_ratio(laplacian: sp.csr_matrix, generated: np.ndarray, truth: np.ndarray) -> float:
    """roughness(generated) / roughness(truth): 1 as smooth as real motion, above 1 lumpier."""
    reference = roughness(laplacian, truth)
    return roughness(laplacian, generated) / reference if reference > 0 else float("nan")
