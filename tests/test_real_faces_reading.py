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


def test_a_seed_read_wrong_by_some_classifiers_says_so():
    assert seed_verdict(["angry", "angry", "angry"], "angry") == "ok"
    assert seed_verdict(["angry", "disgust", "disgust"], "angry") == "1/3 ok, disgust"
