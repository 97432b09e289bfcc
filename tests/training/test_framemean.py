"""The per-frame conditional-mean yardstick (`animateme eval --models framemean`)."""

import numpy as np

from animateme.evaluation.framemean import BINS, mean_table, read_table
from animateme.splits import Split

LABELS = ("happy", "sad", "surprise")


def linear_split(rng, sequences=12, frames=9, vertices=5):
    """Deformation = progression * the label's pattern + zero-mean noise, progression on the bin grid."""
    patterns = rng.normal(size=(len(LABELS), vertices, 3))
    label = np.arange(sequences) % len(LABELS)
    progression = rng.integers(0, BINS + 1, size=(sequences, frames)) / BINS
    noise = rng.normal(scale=0.01, size=(sequences, frames, vertices, 3))
    noise -= noise.mean(axis=0, keepdims=True)
    deform = progression[..., None, None] * patterns[label][:, None] + noise
    split = Split(np.zeros((sequences, vertices, 3)), deform, label, LABELS, progression,
                  np.arange(sequences), "v5-test")
    return split, patterns


def test_the_table_recovers_a_linear_motion_and_interpolates_between_bins():
    split, patterns = linear_split(np.random.default_rng(0), sequences=60, frames=40)
    table = mean_table(split)
    assert table.shape == (len(LABELS), BINS + 1, 5, 3)
    progression = np.array([0.0, 0.333, 0.5, 1.0])
    out = read_table(table, np.array([0.0, 1.0, 0.0]), progression)
    expected = progression[:, None, None] * patterns[1]
    assert np.abs(out - expected).max() < 0.02
    assert np.abs(out[0]).max() < 0.02                               # progression 0 is neutral


def test_a_label_mix_blends_the_labels_and_empty_bins_borrow_from_neighbours():
    split, patterns = linear_split(np.random.default_rng(1), sequences=60, frames=40)
    keep = split.progression < 0.71                                  # no frames above 0.7
    split.progression[~keep] = 0.7
    split.deform[~keep] = 0.7 * patterns[split.label][:, None].repeat(40, 1)[~keep]
    table = mean_table(split)
    high = read_table(table, np.array([1.0, 0.0, 0.0]), np.array([1.0]))
    assert np.abs(high[0] - 0.7 * patterns[0]).max() < 0.02          # the nearest filled bin
    mixed = read_table(table, np.array([0.5, 0.0, 0.5]), np.array([0.5]))
    assert np.abs(mixed[0] - 0.25 * (patterns[0] + patterns[2])).max() < 0.02
