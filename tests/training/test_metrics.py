"""Each metric on cases whose answer is known by construction."""

import numpy as np
import pytest

from animateme.evaluation import metrics


def random_sequences(count=4, frames=6, vertices=10, seed=0):
    return np.random.default_rng(seed).normal(0, 3, (count, frames, vertices, 3)).astype(np.float32)


def test_identical_sequences_have_zero_error():
    sequences = random_sequences()
    assert metrics.per_vertex_error(sequences, sequences) == 0.0
    assert np.all(metrics.per_frame_error(sequences, sequences) == 0.0)
    assert np.all(metrics.error_map(sequences, sequences) == 0.0)


def test_shifted_copy_gives_the_shift():
    sequences = random_sequences()
    shifted = sequences + np.float32([3.0, 4.0, 0.0])  # a 5 mm shift everywhere
    assert metrics.per_vertex_error(shifted, sequences) == pytest.approx(5.0, abs=1e-5)
    assert metrics.per_frame_error(shifted, sequences) == pytest.approx(np.full(6, 5.0), abs=1e-5)
    assert metrics.error_map(shifted, sequences) == pytest.approx(np.full(10, 5.0), abs=1e-5)


def test_per_frame_error_locates_the_frame_that_differs():
    truth = random_sequences(count=1)[0]
    generated = truth.copy()
    generated[2] += np.float32([0.0, 0.0, 2.0])
    assert metrics.per_frame_error(generated, truth) == pytest.approx([0, 0, 2, 0, 0, 0], abs=1e-5)
    assert metrics.per_vertex_error(generated, truth) == pytest.approx(2.0 / 6, abs=1e-5)


def test_specificity_is_zero_for_training_sequences_and_the_shift_otherwise():
    training = random_sequences(count=20, seed=1)
    assert np.all(metrics.specificity(training[[3, 7, 11]], training, candidates=4) == 0.0)
    # a copy of sequence 5 shifted by 0.3 mm is far closer to it than to any other random sequence
    shifted = training[[5]] + np.float32([0.0, 0.3, 0.0])
    assert metrics.specificity(shifted, training, candidates=4) == pytest.approx([0.3], abs=1e-5)


def test_specificity_shortlist_finds_the_exact_nearest():
    rng = np.random.default_rng(3)
    training = random_sequences(count=30, seed=2)
    generated = training[:5] + rng.normal(0, 0.5, training[:5].shape).astype(np.float32)
    brute = [min(metrics.per_vertex_error(g, t) for t in training) for g in generated]
    assert metrics.specificity(generated, training) == pytest.approx(brute, rel=1e-6)


def test_diversity():
    sample = random_sequences(count=1)[0]
    assert metrics.diversity(np.stack([sample, sample, sample])) == 0.0  # deterministic
    assert metrics.diversity(sample[None]) == 0.0                       # a single sample
    offset = np.float32([0.0, 1.0, 0.0])
    three = np.stack([sample, sample + offset, sample + 2 * offset])
    assert metrics.diversity(three) == pytest.approx((1 + 2 + 1) / 3, abs=1e-5)


def test_smoothness():
    frames = np.arange(8, dtype=np.float32)[:, None, None]
    direction = np.float32([1.0, 2.0, 2.0])  # length 3
    constant_velocity = np.broadcast_to(frames * direction, (8, 5, 3))
    assert metrics.smoothness(constant_velocity) == pytest.approx(0.0, abs=1e-6)
    accelerating = np.broadcast_to(0.5 * frames ** 2 * direction, (8, 5, 3))  # second diff = direction
    assert metrics.smoothness(accelerating) == pytest.approx(3.0, abs=1e-5)
    assert metrics.smoothness(np.stack([accelerating, constant_velocity])) == pytest.approx(1.5, abs=1e-5)


def test_classification_scores_on_a_known_confusion():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    scores = metrics.classification_scores(truth, predicted, ("a", "b", "c"))
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert scores["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert scores["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert scores["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    perfect = metrics.classification_scores(truth, truth, ("a", "b", "c"))
    assert perfect["accuracy"] == 1.0 and perfect["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
