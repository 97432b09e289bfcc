"""Set-level and stochastic-fair measures on small fixtures whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from animateme.evaluation import distribution, surface, variety
from tests.mesh_fixtures import grid_faces


def gaussian_set(count: int, dims: int = 6, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dims)) + shift


def test_identical_sets_are_zero_apart():
    features = gaussian_set(200)
    assert distribution.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_shifting_a_set_adds_the_squared_shift():
    features = gaussian_set(200)
    shift = np.zeros(features.shape[1])
    shift[0] = 3.0
    # Same covariance, so only the mean term remains: exactly |shift|².
    assert distribution.frechet_distance(features, features + shift) == pytest.approx(9.0, rel=1e-4)
    further = distribution.frechet_distance(features, features + 2 * shift)
    assert further == pytest.approx(36.0, rel=1e-4)


def test_a_set_without_spread_pays_for_the_missing_variance():
    real = gaussian_set(400, seed=1)
    mean_only = np.repeat(real.mean(axis=0, keepdims=True), len(real), axis=0)
    # Right mean, no spread: the distance is the real set's total variance tr(S).
    expected = np.trace(np.cov(real, rowvar=False))
    assert distribution.frechet_distance(real, mean_only) == pytest.approx(expected, rel=1e-3)
    other_draw = gaussian_set(400, seed=2)
    assert distribution.frechet_distance(real, other_draw) < 0.25 * expected


def test_precision_and_recall_of_a_set_against_itself_are_one():
    features = gaussian_set(100, seed=3)
    assert distribution.precision_recall(features, features) == (1.0, 1.0)


def test_a_mean_collapses_recall_but_keeps_precision():
    real = gaussian_set(150, seed=4)
    mean_only = np.repeat(real.mean(axis=0, keepdims=True), 150, axis=0)
    precision, recall = distribution.precision_recall(real, mean_only)
    assert precision == 1.0        # the mean lies inside the real manifold
    assert recall < 0.05           # but covers (almost) none of the real samples
    fresh_precision, fresh_recall = distribution.precision_recall(real, gaussian_set(150, seed=5))
    assert fresh_recall > 0.5 and fresh_precision > 0.5


def test_a_distant_set_has_no_precision():
    real = gaussian_set(100, seed=6)
    precision, recall = distribution.precision_recall(real, real + 50.0)
    assert precision == 0.0 and recall == 0.0


def sequences(count: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((count, 5, 8, 3))


def test_best_of_n_is_the_closest_sample_and_never_worse_than_any():
    truth = sequences(1, 0)[0]
    samples = truth[None] + np.array([3.0, 0.5, 2.0])[:, None, None, None]
    best = variety.best_of_n_error(samples, truth)
    assert best == pytest.approx(0.5 * np.sqrt(3))
    assert all(best <= variety.per_vertex_error(s, truth) for s in samples)


def test_amplitude_ratio_sees_an_undershoot():
    truth = sequences(6, 1)
    assert variety.amplitude_ratio(truth, truth) == pytest.approx(1.0)
    assert variety.amplitude_ratio(0.6 * truth, truth) == pytest.approx(0.6)


def test_spread_ratio_is_one_for_the_truth_and_zero_for_a_constant():
    truth = sequences(8, 2)
    groups = np.repeat(np.arange(4), 2)                 # four (subject, label) pairs, two takes each
    assert variety.spread_ratio(truth, truth, groups) == pytest.approx(1.0)
    constant = np.repeat(truth[:1], 8, axis=0)
    assert variety.spread_ratio(constant, truth, groups) == 0.0
    assert variety.spread_ratio(2 * truth, truth, groups) == pytest.approx(2.0)
    assert np.isnan(variety.spread_ratio(truth, truth, np.arange(8)))   # nobody has two takes


def test_roughness_is_zero_for_a_translation_and_grows_with_noise():
    n = 10
    u = np.arange(n, dtype=float)
    vertices = np.stack(np.meshgrid(u, u), -1).reshape(-1, 2)
    vertices = np.c_[vertices, np.zeros(len(vertices))]
    faces = grid_faces(n)
    laplacian = surface.graph_laplacian(faces, len(vertices))
    translation = np.tile([0.0, 0.0, 2.0], (len(vertices), 1))[None]
    assert surface.roughness(laplacian, translation) == pytest.approx(0.0, abs=1e-12)
    x = vertices[:, :1] / np.ptp(vertices[:, 0])
    smooth = (np.sin(np.pi * x) * np.array([0.0, 0.0, 3.0]))[None]
    lumpy = smooth + np.random.default_rng(7).normal(0, 0.3, smooth.shape)
    assert surface.roughness(laplacian, smooth) < surface.roughness(laplacian, lumpy)
    assert surface.roughness_ratio(laplacian, smooth, smooth) == pytest.approx(1.0)
    assert surface.roughness_ratio(laplacian, lumpy, smooth) > 2.0
    # Blind to amplitude: scaling the deformation leaves the share unchanged.
    assert surface.roughness(laplacian, 5 * lumpy) == pytest.approx(surface.roughness(laplacian, lumpy))


def test_frechet_gap_of_a_generator_against_itself_is_zero():
    real = [gaussian_set(120, seed=5), gaussian_set(120, dims=4, seed=6)]   # two feature networks
    same = [gaussian_set(120, seed=7), gaussian_set(120, dims=4, seed=8)]
    subjects = np.repeat(np.arange(12), 10)
    gap = distribution.frechet_gap(same, same, real, subjects, draws=50)
    assert gap["per_network"] == [0.0, 0.0] and gap["mean"] == 0.0
    assert gap["interval_per_network"] == [[0.0, 0.0], [0.0, 0.0]] and gap["interval_mean"] == [0.0, 0.0]
    assert gap["closer_share_mean"] == 0.0 and gap["subjects"] == 12 and gap["draws"] == 50


def test_frechet_gap_ranks_a_closer_generator_beyond_its_interval():
    real = [gaussian_set(200, seed=9)]
    close = [gaussian_set(200, seed=10)]        # another draw of the same distribution
    far = [gaussian_set(200, seed=11, shift=3.0)]   # every feature off by 3: FD about 6 * 9 = 54 more
    subjects = np.repeat(np.arange(20), 10)
    gap = distribution.frechet_gap(close, far, real, subjects, draws=200)
    low, high = gap["interval_per_network"][0]
    assert low <= gap["per_network"][0] <= high < -20 and gap["closer_share_mean"] == 1.0
    swapped = distribution.frechet_gap(far, close, real, subjects, draws=200)
    assert swapped["per_network"][0] == pytest.approx(-gap["per_network"][0]) and swapped["interval_mean"][0] > 20
    with pytest.raises(ValueError, match="two subjects"):
        distribution.frechet_gap(close, far, real, np.zeros(200), draws=10)


def test_accuracy_gap_is_in_points_with_an_interval_by_subject():
    subjects = np.repeat(np.arange(10), 6)
    right = np.ones(60, bool)
    same = distribution.accuracy_gap(right, right, subjects, draws=50)
    assert same["points"] == 0.0 and same["interval"] == [0.0, 0.0]
    wrong_for_half = right.copy()
    wrong_for_half[subjects < 5] = False      # five subjects' samples all misread
    gap = distribution.accuracy_gap(wrong_for_half, right, subjects, draws=400)
    low, high = gap["interval"]
    assert gap["points"] == pytest.approx(-50.0) and -100 < low < -50 < high < 0   # neither end all or none
