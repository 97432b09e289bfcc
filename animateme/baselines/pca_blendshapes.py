"""The expression-blendshape baseline of Potamias et al. §5.2: PCA of neutral-subtracted training
deformations (64 components, the latent size of the LSTM model), driven by the same LSTM latent.

The LSTM encoder is the trained one of the spiral model, frozen; only the map from its 64-d
latent to the 64 blendshape weights is fitted, by least squares over all training frames (the
components are orthonormal, so this is the least-squares fit of the deformations themselves within
the PCA space). Deterministic, and seconds to fit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from animateme.evaluation.pca import PCA

from .lstm_decoder import LATENT, LSTMEncoder


class PCABlendshapeModel(nn.Module):
    """(B,K,C) signal -> LSTM latent -> blendshape weights -> (B,K,V,3) deformation, mm."""

    def __init__(self, labels: int, pca: PCA):
        super().__init__()
        self.encoder = LSTMEncoder(labels)
        self.mapping = nn.Linear(LATENT, len(pca.components))
        self.register_buffer("mean", torch.as_tensor(pca.mean))
        self.register_buffer("components", torch.as_tensor(pca.components))

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        weights = self.mapping(self.encoder(signal))
        flat = weights @ self.components + self.mean
        return flat.reshape(*flat.shape[:-1], -1, 3)


def fit_mapping(model: PCABlendshapeModel, signal: np.ndarray, deform: np.ndarray, pca: PCA,
                ridge: float = 1e-4, batch: int = 64) -> None:
    """Least-squares map latent -> PCA weights over training sequences, signal (S,K,C), deform
    (S,K,V,3); a small ridge keeps it well posed when latent dimensions are nearly collinear."""
    latents = []
    with torch.no_grad():
        for start in range(0, len(signal), batch):
            latents.append(model.encoder(torch.as_tensor(signal[start:start + batch])).numpy())
    latent = np.concatenate(latents).reshape(-1, LATENT).astype(np.float64)
    design = np.concatenate([latent, np.ones((len(latent), 1))], axis=1)
    targets = pca.encode(deform.reshape(-1, *deform.shape[-2:])).astype(np.float64)
    gram = design.T @ design + ridge * len(design) * np.eye(design.shape[1])
    solution = np.linalg.solve(gram, design.T @ targets)               # (65, N)
    with torch.no_grad():
        model.mapping.weight.copy_(torch.as_tensor(solution[:-1].T, dtype=torch.float32))
        model.mapping.bias.copy_(torch.as_tensor(solution[-1], dtype=torch.float32))
