"""Per-sample measures that do not punish a generator for varying: best-of-N error, apex amplitude
and spread against the ground truth's own spread. All in millimetres on (…,K,V,3) deformations.

A stochastic generator's single sample is one plausible performance, not the mean one, so its
single-sample error to one ground truth is inflated by exactly the variety it is built for. The
best of N samples asks instead whether the ground truth is among what it plays; the amplitude
ratio shows an under-shooting sampler (or a mean, which averages apexes down); the spread ratio
asks whether it varies as much as the same person does across takes.
"""

from __future__ import annotations

import numpy as np

from .metrics import per_vertex_error, vertex_distances


def best_of_n_error(samples: np.ndarray, truth: np.ndarray) -> float:
    """Smallest per-vertex error among N samples (N,K,V,3) of one condition to its truth (K,V,3)."""
    samples = np.asarray(samples)
    return float(min(per_vertex_error(sample, truth) for sample in samples))


def apex_amplitude(sequences: np.ndarray) -> np.ndarray:
    """(S,) largest mean vertex displacement over the frames of each (K,V,3) sequence, mm."""
    magnitude = np.linalg.norm(np.asarray(sequences, np.float64), axis=-1).mean(axis=-1)   # (S,K)
    return magnitude.max(axis=-1)


def apex_frames(sequences: np.ndarray) -> np.ndarray:
    """(S,) index of each (K,V,3) sequence's most displaced frame."""
    magnitude = np.linalg.norm(np.asarray(sequences, np.float64), axis=-1).mean(axis=-1)
    return magnitude.argmax(axis=-1)


def amplitude_ratio(generated: np.ndarray, truth: np.ndarray) -> float:
    """Mean apex amplitude of the generated sequences over the ground truth's (1 = same reach)."""
    reference = apex_amplitude(truth).mean()
    return float(apex_amplitude(generated).mean() / reference) if reference > 0 else float("nan")


def group_spread(sequences: np.ndarray, groups: np.ndarray) -> float:
    """Mean pairwise per-vertex distance between sequences of the same group (subject and label),
    averaged over groups with at least two members; nan when no group has two."""
    sequences = np.asarray(sequences)
    groups = np.asarray(groups)
    spreads = []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        pairs = [vertex_distances(sequences[i], sequences[j]).mean()
                 for a, i in enumerate(members) for j in members[a + 1:]]
        spreads.append(np.mean(pairs))
    return float(np.mean(spreads)) if spreads else float("nan")


def spread_ratio(generated: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> float:
    """Spread of the generated sequences within each (subject, label) group over the ground
    truth's spread in the same groups: 1 varies like the person does, 0 plays one thing."""
    reference = group_spread(truth, groups)
    if not np.isfinite(reference) or reference <= 0:
        return float("nan")
    return group_spread(generated, groups) / reference
