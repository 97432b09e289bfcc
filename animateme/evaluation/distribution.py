"""Set-level measures that are fair to stochastic generators: they compare the *distribution* of
generated sequences with the distribution of real ones, in a feature space (the expression
classifier's penultimate layer), instead of comparing each sample with one ground truth.

- Fréchet distance (Heusel et al. 2017, "FID", here on whole sequences): distance between two
  Gaussians fitted to the feature sets; a generator that always plays the mean has the right
  mean but no spread, and the covariance term charges for it.
- k-NN precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  reaching each sample's k-th nearest neighbour in that set; precision is the share of generated
  samples inside the real manifold (fidelity), recall the share of real samples inside the
  generated one (coverage). A mean collapses recall.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 3   # Kynkäänniemi et al. use k = 3 as their default


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D,D) of (N,D) features (N >= 2)."""
    features = np.asarray(features, np.float64)
    if len(features) < 2:
        raise ValueError("a Fréchet distance needs at least two samples in each set")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² + tr(S_a + S_b - 2 (S_a S_b)^1/2) between (N,D) and (M,D) feature sets."""
    mean_a, cov_a = gaussian(a)
    mean_b, cov_b = gaussian(b)
    # tr (S_a S_b)^1/2 = tr (S_a^1/2 S_b S_a^1/2)^1/2, a symmetric PSD matrix: eigenvalues, no
    # complex rounding, and exact for singular covariances (a set with no spread).
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    cross = np.sum(np.sqrt(np.clip(middle, 0, None)))
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross
    return float(max(distance, 0.0))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def knn_radii(features: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """(N,) distance of each sample to its k-th nearest neighbour in its own set (itself excluded)."""
    distances = _pairwise(features, features)
    k = min(k, len(features) - 1)
    if k < 1:
        return np.zeros(len(features))
    return np.sort(distances, axis=1)[:, k]   # column 0 is the sample itself


def coverage(queries: np.ndarray, manifold: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Share of `queries` inside the k-NN manifold of `manifold` (a ball per manifold sample)."""
    radii = knn_radii(manifold, k)
    inside = _pairwise(queries, manifold) <= radii[None, :] * (1 + 1e-9) + 1e-12
    return float(inside.any(axis=1).mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of (M,D) generated features
    against (N,D) real ones."""
    return coverage(generated, real, k), coverage(real, generated, k)


def frechet_gap(candidate: list, baseline: list, real: list, groups: np.ndarray, draws: int = 1000,
                seed: int = 0, level: float = 0.95) -> dict:
    """How much closer `candidate` is to `real` than `baseline` is, per feature network and on their
    mean, with a bootstrap interval: is a difference in Fréchet distance more than the sampling
    error of a few hundred held-out sequences?

    Each argument is one (N,D) feature set per network, row n of every set answering the same
    held-out condition; `groups` (N,) names the subject of each row. The bootstrap draws subjects
    with replacement (a subject's sequences share a face and a style, so they are not independent
    draws) and recomputes FD(candidate, real) - FD(baseline, real) on the same rows for both
    generators (paired): negative means the candidate is closer."""
    return gap_of_draws(frechet_draws(candidate, real, groups, draws, seed),
                        frechet_draws(baseline, real, groups, draws, seed), len(np.unique(groups)), level)


def frechet_draws(features: list, real: list, groups: np.ndarray, draws: int = 1000, seed: int = 0) -> np.ndarray:
    """(1 + draws, networks) Fréchet distance of one generator's feature sets (one per network) to the
    real ones: on every row (row 0), then on each subject draw. Two generators' tables drawn with the
    same groups and seed are paired row for row (`gap_of_draws`)."""
    rows = [np.arange(len(groups))] + subject_draws(groups, draws, seed)
    return np.array([[frechet_distance(f[r], q[r]) for f, q in zip(features, real)] for r in rows])


def gap_of_draws(candidate: np.ndarray, baseline: np.ndarray, subjects: int, level: float = 0.95) -> dict:
    """frechet_gap's figures from two paired `frechet_draws` tables."""
    difference = np.asarray(candidate) - np.asarray(baseline)
    observed, drawn = difference[0], difference[1:]
    tails = _tails(level)
    return {"per_network": observed.tolist(), "mean": float(observed.mean()),
            "interval_per_network": np.percentile(drawn, tails, axis=0).T.tolist(),
            "interval_mean": np.percentile(drawn.mean(axis=1), tails).tolist(),
            "closer_share_mean": float(np.mean(drawn.mean(axis=1) < 0)),
            "draws": int(len(drawn)), "level": float(level), "subjects": int(subjects)}


def accuracy_gap(correct: np.ndarray, reference_correct: np.ndarray, groups: np.ndarray, draws: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict:
    """Accuracy of a generator's samples minus the ground truth's on the same held-out conditions
    ((N,) bools each), in points, with the subject-bootstrap interval of `frechet_gap`."""
    correct, reference_correct = np.asarray(correct, float), np.asarray(reference_correct, float)
    gap = lambda rows: 100.0 * (correct[rows].mean() - reference_correct[rows].mean())  # noqa: E731
    drawn = [gap(rows) for rows in subject_draws(groups, draws, seed)]
    return {"points": float(gap(np.arange(len(correct)))),
            "interval": np.percentile(drawn, _tails(level)).tolist(), "draws": int(draws), "level": float(level)}


def subject_draws(groups: np.ndarray, draws: int, seed: int) -> list[np.ndarray]:
    """`draws` bootstrap resamples of the rows, drawn by subject (`groups` (N,) names each row's):
    a subject's sequences share a face and a style, so they are not independent draws."""
    groups = np.asarray(groups)
    people = np.unique(groups)
    if len(people) < 2:
        raise ValueError("a bootstrap over subjects needs at least two subjects")
    rows_of = [np.flatnonzero(groups == person) for person in people]
    rng = np.random.default_rng(seed)
    return [np.concatenate([rows_of[i] for i in rng.integers(0, len(people), len(people))])
            for _ in range(draws)]


def _tails(level: float) -> np.ndarray:
    return 100 * np.array([(1 - level) / 2, (1 + level) / 2])
