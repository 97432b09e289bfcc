"""The expression signal e_k = p_k * m and its validation."""

from __future__ import annotations

import numpy as np
import pytest

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import (LABELS, TIMING_PRESETS, Timing, expression_signal,
                                                label_mix, progression_curve)


def test_label_mix_interpolates_between_two_expressions():
    np.testing.assert_array_equal(label_mix("happy"), np.eye(6)[0])
    mix = label_mix("happy", "sad", 0.25)
    assert mix[LABELS.index("happy")] == 0.75 and mix[LABELS.index("sad")] == 0.25 and mix.sum() == 1
    np.testing.assert_array_equal(label_mix("happy", "sad", 1.0), np.eye(6)[1])


def test_progression_rises_holds_and_falls():
    p = progression_curve(41, intensity=0.8, timing=Timing(0.1, 0.3, 0.7, 0.9))
    assert p[:5].max() == 0 and p[-4:].max() == 0
    assert np.allclose(p[12:28], 0.8)
    assert (np.diff(p[4:13]) > 0).all() and (np.diff(p[28:37]) < 0).all()


def test_hold_preset_ends_at_apex():
    p = progression_curve(40, 1.0, TIMING_PRESETS["hold"])
    assert p[-1] == 1.0


def test_signal_is_progression_times_mix():
    p = progression_curve(40, 0.5)
    e = expression_signal(p, label_mix("fear", "angry", 0.5))
    np.testing.assert_allclose(e.sum(1), p)
    assert e.shape == (40, 6)


@pytest.mark.parametrize("call, message", [
    (lambda: label_mix("joy"), "unknown expression"),
    (lambda: label_mix("happy", "sad", 1.5), r"\[0, 1\]"),
    (lambda: progression_curve(0), "frame count"),
    (lambda: progression_curve(10**6), "frame count"),
    (lambda: progression_curve(40, intensity=float("nan")), "intensity"),
    (lambda: progression_curve(40, timing=Timing(0.5, 0.2, 0.7, 0.9)), "onset <= apex"),
    (lambda: expression_signal(np.array([0.1, -0.2]), np.eye(6)[0]), "negative"),
    (lambda: expression_signal(np.array([0.1, np.inf]), np.eye(6)[0]), "NaN or infinite"),
])
def test_bad_conditions_are_refused_with_a_reason(call, message):
    with pytest.raises(AnimateMeError, match=message):
        call()
