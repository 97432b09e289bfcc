"""Choosing a label-guidance weight per label from measured apex amplitude ratios."""

import pytest

from animateme.evaluation.calibration import choose, markdown, reached_weights, weight_for
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


def test_the_measured_table_names_a_label_that_falls_short_instead_of_losing_the_run():
    figures = {"weights": [0.0, 1.0], "ratio": {"happy": [0.8, 1.4], "fear": [0.6, 0.9]},
               "sequences_per_label": 4, "split": "test"}
    chosen = reached_weights(figures)
    assert chosen == {"happy": pytest.approx(1 / 3, abs=1e-3), "fear": None}
    text = markdown(figures, chosen, "animateme calibrate-guidance --split test")
    assert "not reached" in text and "4 test-split sequences" in text
