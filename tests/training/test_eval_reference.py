"""The reference sets behind the set-level measures: no subject on both sides."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import numpy as np

from animateme.evaluation.runner import hold_back_subjects, spread_over_labels


def test_held_back_subjects_are_not_the_feature_network_s():
    subjects = np.repeat(np.arange(20), 6)
    fit, reference = hold_back_subjects(subjects, 0.25, seed=0)
    assert len(np.unique(subjects[reference])) == 5
    assert not set(subjects[fit]) & set(subjects[reference])
    assert len(fit) + len(reference) == len(subjects)


def test_best_of_conditions_cover_every_label_evenly():
    labels = np.repeat(np.arange(6), 10)
    rows = spread_over_labels(labels, 3)
    assert np.bincount(labels[rows]).tolist() == [3] * 6
    assert len(spread_over_labels(labels, 50)) == len(labels)   # never more than there are
