"""The papers' 40-frame preprocessing and extremeness factors."""

from __future__ import annotations

import numpy as np
import pytest

from animateme.preprocess import extremeness, most_distinct_frames, to_fixed_length
from animateme_blender.core.errors import AnimateMeError


def ramp_sequence(length: int) -> tuple[np.ndarray, np.ndarray]:
    """A single vertex moving along x; the label is its position."""
    x = np.linspace(0, 1, length)
    frames = np.zeros((length, 1, 3), dtype=np.float32)
    frames[:, 0, 0] = x
    return frames, x.astype(np.float32)


def test_longer_sequences_keep_40_frames_with_ends_and_labels_aligned():
    frames, labels = ramp_sequence(150)
    out, out_labels = to_fixed_length(frames, labels)
    assert out.shape == (40, 1, 3) and out_labels.shape == (40,)
    assert out_labels[0] == 0 and out_labels[-1] == 1
    np.testing.assert_allclose(out[:, 0, 0], out_labels)  # the label travels with its frame
    assert (np.diff(out_labels) > 0).all()


def test_static_frames_are_dropped_before_moving_ones():
    still = np.zeros((60, 1, 3), dtype=np.float32)
    moving = np.zeros((20, 1, 3), dtype=np.float32)
    moving[:, 0, 0] = np.linspace(0.1, 2.0, 20)
    frames = np.concatenate([still, moving])
    keep = most_distinct_frames(frames, 25)
    assert set(range(60, 80)) <= set(keep)  # every moving frame survives
    assert keep[0] == 0 and keep[-1] == 79


def test_shorter_sequences_are_interpolated_between_the_most_different_frames():
    frames = np.zeros((3, 1, 3), dtype=np.float32)
    frames[:, 0, 0] = [0.0, 0.1, 10.0]
    labels = np.array([0.0, 0.1, 1.0], dtype=np.float32)
    out, out_labels = to_fixed_length(frames, labels, 6)
    # All three new frames go into the big gap between 0.1 and 10.
    np.testing.assert_allclose(out[:, 0, 0], [0.0, 0.1, 2.575, 5.05, 7.525, 10.0], rtol=1e-5)
    np.testing.assert_allclose(out_labels, [0.0, 0.1, 0.325, 0.55, 0.775, 1.0], rtol=1e-5)


def test_exact_length_is_left_alone():
    frames, labels = ramp_sequence(40)
    out, out_labels = to_fixed_length(frames, labels)
    np.testing.assert_array_equal(out, frames)


def test_bad_sequences_are_refused():
    with pytest.raises(AnimateMeError, match="at least 2 frames"):
        to_fixed_length(np.zeros((1, 4, 3)), np.zeros(1))
    with pytest.raises(AnimateMeError, match="one label per frame"):
        to_fixed_length(np.zeros((5, 4, 3)), np.zeros(4))


def test_extremeness_by_category_maximum_and_by_z_score():
    m = np.array([1.0, 2.0, 4.0, 10.0, 5.0])
    c = np.array([0, 0, 0, 1, 1])
    np.testing.assert_allclose(extremeness(m, c, "max"), [0.25, 0.5, 1.0, 1.0, 0.5])
    z = extremeness(m, c, "zscore")
    assert z[3] == 1.0 and np.isclose(z[4], 1e-3) and 0 < z[1] < 1  # floored: every take moves
    with pytest.raises(AnimateMeError, match="unknown extremeness"):
        extremeness(m, c, "median")


def test_held_out_extremeness_uses_the_training_scale_alone():
    """A held-out take beyond the training's largest passes 1 and leaves the others' scale alone
    (with the scale taken from both splits, one such take shrank every held-out e of its label)."""
    train, train_c = np.array([1.0, 2.0, 4.0, 10.0]), np.array([0, 0, 1, 1])
    test, test_c = np.array([1.0, 3.0, 5.0]), np.array([0, 0, 1])
    np.testing.assert_allclose(extremeness(test, test_c, "max", train, train_c), [0.5, 1.5, 0.5])
    z = extremeness(test, test_c, "zscore", train, train_c)
    assert z[1] == 1.0 and 0 < z[2] < 1
    with pytest.raises(AnimateMeError, match="training split"):
        extremeness(np.array([1.0]), np.array([2]), "max", train, train_c)
