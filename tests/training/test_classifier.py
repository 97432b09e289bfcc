"""The PCA frame encoder and the expression classifier of Potamias et al. §5.3."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import numpy as np
import torch

from animateme.evaluation.classifier import train_classifier
from animateme.evaluation.pca import PCA, fit_pca
from animateme.evaluation.toy import expression_fields, grid_mesh


def toy_sequences(count_per_label, labels=4, frames=8, seed=0):
    """Separable toy data: each label moves its own bump, with random amplitude and noise."""
    vertices, _ = grid_mesh(8)
    fields = expression_fields(vertices, labels)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, frames, dtype=np.float32)[:, None, None]
    sequences, targets = [], []
    for label in range(labels):
        for _ in range(count_per_label):
            motion = rng.uniform(0.5, 1.0) * ramp * fields[label]
            sequences.append(motion + rng.normal(0, 0.1, motion.shape))
            targets.append(label)
    return np.asarray(sequences, np.float32), np.asarray(targets)


def test_pca_reconstructs_data_in_its_span_and_refits_identically():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(5, 20 * 3))
    frames = (rng.normal(size=(200, 5)) @ basis).reshape(200, 20, 3).astype(np.float32) + 7.0
    pca = fit_pca(frames, components=5)
    assert pca.components.shape == (5, 60)
    assert np.allclose(pca.components @ pca.components.T, np.eye(5), atol=1e-4)
    assert np.allclose(pca.decode(pca.encode(frames)), frames, atol=1e-3)
    assert np.all(np.diff(pca.variance) <= 0)  # largest variance first
    again = PCA.from_state(fit_pca(frames, components=5).state())
    assert np.array_equal(again.components, pca.components)


def test_classifier_reaches_100_percent_on_separable_toy_data():
    torch.set_num_threads(1)
    train, train_labels = toy_sequences(12, seed=0)
    test, test_labels = toy_sequences(5, seed=1)
    classifier = train_classifier(train, train_labels, classes=4, components=16, epochs=30,
                                  show_progress=False)
    assert classifier.encoder.components.shape[0] == 16
    assert np.array_equal(classifier.predict(test), test_labels)


def test_classifier_is_reproducible_from_its_seed():
    torch.set_num_threads(1)
    train, labels = toy_sequences(6, seed=0)
    first = train_classifier(train, labels, 4, components=8, epochs=3, seed=5, show_progress=False)
    second = train_classifier(train, labels, 4, components=8, epochs=3, seed=5, show_progress=False)
    for a, b in zip(first.network.parameters(), second.network.parameters()):
        assert torch.equal(a, b)
