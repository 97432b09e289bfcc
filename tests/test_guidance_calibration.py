"""Choosing a label-guidance weight per label from measured apex amplitude ratios."""

import pytest

from animateme.evaluation.calibration import choose, weight_for
from animateme_blender.core.errors import AnimateMeError


def test_the_weight_is_where_the_ratio_crosses_the_target():
    weights = [0.0, 0.5, 1.0]
    assert weight_for(weights, [0.6, 0.8, 1.2]) == (pytest.approx(0.75), True)    # linear between 0.5 and 1
    assert weight_for(weights, [1.1, 1.3, 1.6]) == (0.0, True)                     # already there unguided
    assert weight_for(weights, [0.5, 0.7, 0.9]) == (1.0, False)                    # never reached


def test_a_label_that_never_reaches_its_ground_truth_is_refused_by_name():
    figures = {"weights": [0.0, 1.0], "ratio": {"happy": [0.8, 1.4], "angry": [0.5, 0.7]}}
    with pytest.raises(AnimateMeError, match="angry \\(0.70 at most\\)"):
        choose(figures)
    figures["ratio"]["angry"] = [0.5, 1.5]
    assert choose(figures) == {"happy": pytest.approx(1 / 3, abs=1e-3), "angry": 0.5}
