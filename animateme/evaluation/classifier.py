"""The expression classifier of Potamias et al. §5.3: a PCA frame encoder (64 components, fitted on
training frames) whose per-frame codes are concatenated and fed to three fully connected layers.

It sees deformations from the neutral (identity removed), is trained on the training ground truth
only, and then labels the test ground truth and every generator's output alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .pca import PCA, fit_pca


class SequenceClassifier(nn.Module):
    """Concatenated per-frame codes (B, K*N) -> (B, C) logits through three FC layers."""

    def __init__(self, inputs: int, classes: int, hidden: tuple[int, int] = (256, 64)):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(inputs, hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
            nn.Linear(hidden[1], classes),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.layers(codes)


@dataclass
class ExpressionClassifier:
    encoder: PCA
    code_scale: np.ndarray  # (N,) std of each PCA coefficient over training frames
    network: SequenceClassifier

    def features(self, sequences: np.ndarray) -> torch.Tensor:
        """(S,K,V,3) deformations -> (S, K*N) standardised, concatenated frame codes."""
        codes = self.encoder.encode(sequences) / self.code_scale
        return torch.from_numpy(codes.reshape(len(sequences), -1).astype(np.float32))

    def probabilities(self, sequences: np.ndarray, batch: int = 256) -> np.ndarray:
        """(S,C) class probabilities of each (K,V,3) deformation sequence."""
        self.network.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(sequences), batch):
                logits = self.network(self.features(sequences[start:start + batch]))
                out.append(torch.softmax(logits, dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.network.layers[-1].out_features))

    def embedding(self, sequences: np.ndarray, batch: int = 256) -> np.ndarray:
        """(S, H) the network's penultimate activations: the feature space of the Fréchet distance
        and of k-NN precision/recall (as FID uses Inception's last pooling layer)."""
        self.network.eval()
        body = self.network.layers[:-1]
        out = []
        with torch.no_grad():
            for start in range(0, len(sequences), batch):
                out.append(body(self.features(sequences[start:start + batch])).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.network.layers[-1].in_features))

    def predict(self, sequences: np.ndarray) -> np.ndarray:
        """(S,) predicted label index of each (K,V,3) deformation sequence."""
        return self.probabilities(sequences).argmax(axis=1)


def train_classifier(sequences: np.ndarray, labels: np.ndarray, classes: int, components: int = 64,
                     epochs: int = 60, batch: int = 32, learning_rate: float = 1e-3,
                     weight_decay: float = 5e-3, seed: int = 0, show_progress: bool = True
                     ) -> ExpressionClassifier:
    """Fit the frame encoder and the FC layers on training sequences (S,K,V,3) with labels (S,).

    Adam with weight decay 5e-3 as in §5.3; more epochs than the paper's 13 because our corpus is
    a fraction of 4DFAB's size and each epoch is correspondingly shorter."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    frames = sequences.reshape(-1, *sequences.shape[-2:])
    encoder = fit_pca(frames, components, seed=seed)
    scale = np.sqrt(np.maximum(encoder.variance, 1e-12)).astype(np.float32)
    network = SequenceClassifier(sequences.shape[1] * len(encoder.components), classes)
    classifier = ExpressionClassifier(encoder, scale, network)
    features = classifier.features(sequences)
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    network.train()
    for _ in tqdm(range(epochs), desc="classifier", unit="epoch", disable=not show_progress, leave=False):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            loss = nn.functional.cross_entropy(network(features[rows]), targets[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    network.eval()
    return classifier
