"""How eval-faces counts what several classifiers read on the real faces (evaluation/real_faces.py)."""

from types import SimpleNamespace

import numpy as np

from animateme.evaluation.real_faces import FaceRun, clips_read_right, seed_verdict, summary


def _run(name, predicted, probability):
    face = SimpleNamespace(name=name, vertices=np.zeros((5, 3)), fit_score="accepted")
    return FaceRun(face, ["happy", "angry"], predicted, probability, [[], []])


def test_every_classifier_and_seed_counts():
    # Two classifiers, two seeds: classifier 1 reads angry's seed 1 as disgust.
    one = _run("a", [[["happy", "happy"], ["happy", "happy"]], [["angry", "angry"], ["angry", "disgust"]]],
               [[[0.9, 0.8], [0.7, 0.6]], [[0.9, 0.9], [0.8, 0.1]]])
    two = _run("b", [[["happy", "sad"], ["happy", "happy"]], [["angry", "angry"], ["angry", "angry"]]],
               [[[0.9, 0.2], [0.9, 0.9]], [[1.0, 1.0], [1.0, 1.0]]])
    figures = summary([one, two])
    angry = figures["a"]["labels"]["angry"]
    assert angry["recognised"] == 0.75 and angry["recognised_by_classifier"] == [1.0, 0.5]
    assert np.isclose(angry["probability_of_intended"], 0.675)
    assert figures["b"]["labels"]["happy"]["recognised_by_classifier"] == [0.5, 1.0]
    assert clips_read_right(figures) == [(7, 8), (7, 8)]
    assert figures["a"]["labels"]["angry"]["apex_mm"] is None       # no amplitudes given


def test_a_seed_read_wrong_by_some_classifiers_says_so():
    assert seed_verdict(["angry", "angry", "angry"], "angry") == "ok"
    assert seed_verdict(["angry", "disgust", "disgust"], "angry") == "1/3 ok, disgust"


def test_the_reference_take_sits_at_the_asked_percentile_of_its_label():
    from animateme.evaluation.real_faces import reference_takes

    # Label 0 has takes reaching 1, 3 and 9 mm; label 1 one take of 2 mm.
    reach = [3.0, 2.0, 9.0, 1.0]
    deform = np.zeros((4, 5, 2, 3))
    for take, mm in enumerate(reach):
        deform[take, 2, :, 0] = mm
    split = SimpleNamespace(label=np.array([0, 1, 0, 0]), deform=deform)
    assert reference_takes(split, ("happy", "angry"), percentile=50) == [0, 1]
    assert reference_takes(split, ("happy", "angry")) == [2, 1]       # the 90th: the 9 mm take


def test_a_label_without_takes_is_refused():
    import pytest

    from animateme.evaluation.real_faces import reference_takes
    from animateme_blender.core.errors import AnimateMeError

    split = SimpleNamespace(label=np.array([0, 0]), deform=np.zeros((2, 3, 2, 3)))
    with pytest.raises(AnimateMeError, match="no take of angry"):
        reference_takes(split, ("happy", "angry"))


def test_each_classifier_reads_each_take():
    from animateme.evaluation.real_faces import read_takes

    class Reader:
        def __init__(self, choice):
            self.choice = choice

        def probabilities(self, clips):
            out = np.zeros((len(clips), 2))
            out[np.arange(len(clips)), self.choice] = 1.0
            return out

    takes = np.zeros((2, 3, 4, 3))
    assert read_takes(takes, [Reader([0, 1]), Reader([0, 0])], ("happy", "angry")) == [["happy", "happy"],
                                                                                      ["angry", "happy"]]
