"""evaluation/regions.py: where each label moves at the apex, against the ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from animateme.evaluation import regions

LANDMARKS = np.arange(68) + 5       # 68 landmark vertices on a 80-vertex stand-in template


def _apex(lower_lip_down=0.0, brows_up=0.0, corners_up=0.0) -> np.ndarray:
    deform = np.zeros((80, 3))
    deform[LANDMARKS[65:68], 1] -= lower_lip_down
    deform[LANDMARKS[17:27], 1] += brows_up
    deform[LANDMARKS[[48, 54]], 1] += corners_up
    deform[:, 0] += 3.0                                   # sideways motion is not a reading
    return deform


def test_readings_take_the_vertical_change_at_their_landmarks():
    values = regions.readings(np.stack([_apex(2.0, 0.0, -1.0), _apex(0.0, 1.5, 0.0)]), LANDMARKS)
    np.testing.assert_allclose(values["lips apart"], [2.0, 0.0])
    np.testing.assert_allclose(values["brows"], [0.0, 1.5])
    np.testing.assert_allclose(values["mouth corners"], [-1.0, 0.0])


@dataclass
class _Split:
    label: np.ndarray
    deform: np.ndarray
    neutral: np.ndarray
    progression: np.ndarray

    def mix(self, index):
        return np.eye(2)[self.label[index]]


def test_compare_reads_every_generator_at_the_ground_truths_apex_and_reports_the_ratio():
    frames = np.zeros((4, 5, 80, 3))
    for i, (lips, brows) in enumerate([(4.0, 0.0), (2.0, 0.0), (0.0, -1.0), (0.0, -3.0)]):
        for k, weight in enumerate([0.0, 0.5, 1.0, 0.5, 0.0]):       # apex at frame 2
            frames[i, k] = weight * _apex(lips, brows)
    test = _Split(np.array([0, 0, 1, 1]), frames, np.zeros((4, 80, 3)), np.ones((4, 5)))
    # The seed is the condition's index here (compare passes seed + index, seed 0).
    truth = lambda neutral, mix, progression, seed: test.deform[seed]                # noqa: E731
    double = lambda neutral, mix, progression, seed: 2.0 * test.deform[seed]         # noqa: E731
    results = regions.compare({"gt": truth, "twice": double}, test, ["open", "frown"], LANDMARKS, per_label=2)
    assert results["open"]["gt"]["lips apart"] == pytest.approx(3.0)
    assert results["open"]["twice"]["lips apart"] == pytest.approx(6.0)
    assert results["frown"]["twice"]["brows"] == pytest.approx(-4.0)
    assert results["frown"]["conditions"] == 2
    text = regions.markdown(results, "animateme eval-regions")
    assert "| open | 2 | +3.00 | +6.00 | 2.00 |" in text
    assert "| frown | 2 | +0.00 | +0.00 | - |" in text              # no ground-truth motion: no ratio


def test_a_generator_read_apex_only_is_asked_for_the_first_frame_and_the_apex():
    frames = np.zeros((2, 5, 80, 3))
    for k, weight in enumerate([0.0, 0.5, 1.0, 0.5, 0.0]):           # apex at frame 2
        frames[0, k] = weight * _apex(4.0, 0.0)
        frames[1, k] = weight * _apex(0.0, -2.0)
    progression = np.tile(np.array([0.0, 0.5, 1.0, 0.5, 0.0]), (2, 1))
    test = _Split(np.array([0, 1]), frames, np.zeros((2, 80, 3)), progression)
    asked = []

    def per_frame(neutral, mix, progression, seed):     # each frame from its own progression value
        asked.append(len(progression))
        return np.stack([p * test.deform[seed, 2] for p in progression])

    truth = lambda neutral, mix, progression, seed: test.deform[seed]                # noqa: E731
    results = regions.compare({"gt": truth, "model": per_frame}, test, ["open", "frown"], LANDMARKS,
                              per_label=1, apex_only=("model",))
    assert asked == [2, 2]
    assert results["open"]["model"]["lips apart"] == pytest.approx(results["open"]["gt"]["lips apart"])
    assert results["frown"]["model"]["brows"] == pytest.approx(-2.0)
