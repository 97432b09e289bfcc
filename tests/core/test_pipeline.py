"""core/pipeline.py without Blender: requests and signals, one generation end to end with a tiny
model, the fit cache (memory and folder), determinism, progress, cancel and early refusals."""

from __future__ import annotations

import numpy as np
import pytest

from addon_fixture import TEMPLATE, session_model, neutral_face
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.pipeline import Cancelled, Pipeline
from animateme_blender.core.request import Request, timing_from_frames
from animateme_blender.core.sample.progression import LABELS, Timing, progression_curve


@pytest.fixture(scope="module")
def face():
    return neutral_face(2000, scale=1.0, z_up=False)           # millimetres, Y up


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return Pipeline(session_model() / "animateme.onnx", TEMPLATE, fit_cache_dir=tmp_path_factory.mktemp("fits"))


def test_request_signal_mix_and_labels():
    request = Request("happy", second="sad", mix=0.3, frames=40).validate()
    signal = request.signal()
    p = progression_curve(40, 1.0)
    np.testing.assert_allclose(signal[:, LABELS.index("happy")], 0.7 * p, atol=1e-6)
    np.testing.assert_allclose(signal[:, LABELS.index("sad")], 0.3 * p, atol=1e-6)
    assert request.label == "happy-sad30" and Request("fear").label == "fear"
    only_second = Request("happy", second="sad", mix=1.0).signal()
    assert only_second[:, LABELS.index("happy")].max() == 0.0


def test_transition_goes_from_first_to_second():
    request = Request("happy", second="angry", transition=True, frames=40, timing=Timing(0.1, 0.3, 0.7, 0.95))
    signal = request.signal()
    happy, angry = signal[:, LABELS.index("happy")], signal[:, LABELS.index("angry")]
    apex, offset = int(0.3 * 39), int(np.ceil(0.7 * 39))
    assert happy[apex] > 0.9 and angry[apex] < 1e-6          # first expression at its apex
    assert angry[offset] > 0.9 and happy[offset] < 1e-6      # the second by the offset
    np.testing.assert_allclose(signal.sum(1), request.progression(), atol=1e-6)
    assert request.label == "happy-to-angry"


@pytest.mark.parametrize("kwargs, message", [
    (dict(expression="joy"), "unknown expression"),
    (dict(second="sad", mix=1.5), "interpolation"),
    (dict(transition=True), "second expression"),
    (dict(quality="best"), "quality"),
    (dict(seed=-1), "seed"),
    (dict(frames=0), "frame count"),
    (dict(intensity=2.0), "intensity"),
    (dict(variation=1.5), "variation"),
    (dict(variation=-0.1), "variation"),
])
def test_bad_requests(kwargs, message):
    with pytest.raises(AnimateMeError, match=message):
        Request(**kwargs).validate()


def test_timing_from_frames():
    timing = timing_from_frames(41, 4, 14, 28, 40)
    assert (timing.onset, timing.apex, timing.offset, timing.end) == (0.1, 0.35, 0.7, 1.0)
    with pytest.raises(AnimateMeError, match="timing"):
        timing_from_frames(41, 20, 10, 28, 40)


@pytest.mark.slow
def test_generate_end_to_end_cached_and_deterministic(pipeline, face, tmp_path):
    vertices, faces = face
    steps = []
    first = pipeline.generate(vertices, faces, Request("happy", frames=12, seed=1), "cpu",
                              progress=lambda f, m: steps.append(f))
    assert first.displacements.shape == (12, len(vertices), 3)
    assert np.isfinite(first.displacements).all() and np.abs(first.displacements).max() > 0
    assert first.template_deform.shape[1] == 1000 and first.device == "CPUExecutionProvider"
    assert not first.fit_cached and steps[-1] == 1.0 and all(0 <= s <= 1 for s in steps)

    again = pipeline.generate(vertices, faces, Request("happy", frames=12, seed=1), "cpu")
    assert again.fit_cached and again.timings["register"] < 0.1 * first.timings["register"]
    np.testing.assert_array_equal(again.displacements, first.displacements)
    other_seed = pipeline.generate(vertices, faces, Request("happy", frames=12, seed=2), "cpu")
    assert not np.allclose(other_seed.displacements, first.displacements)
    # Variation 0 samples without noise: the seed no longer matters.
    calm = [pipeline.generate(vertices, faces, Request("happy", frames=12, seed=s, variation=0.0), "cpu")
            for s in (1, 2)]
    np.testing.assert_array_equal(calm[0].displacements, calm[1].displacements)

    # A fresh session finds the fit in the cache folder instead of fitting again.
    fresh = Pipeline(pipeline.model_path, TEMPLATE, fit_cache_dir=pipeline.fit_cache_dir)
    assert fresh.generate(vertices, faces, Request("sad", frames=12), "cpu").fit_cached


@pytest.mark.slow
def test_units_follow_the_input(pipeline, face):
    vertices, faces = face
    in_mm = pipeline.generate(vertices, faces, Request("surprise", frames=6, seed=0), "cpu")
    in_m = pipeline.generate(vertices / 1000.0, faces, Request("surprise", frames=6, seed=0), "cpu")
    ratio = np.abs(in_mm.displacements).max() / np.abs(in_m.displacements).max()
    assert 900 < ratio < 1100


def test_cancel_stops_the_sampler(pipeline, face):
    vertices, faces = face
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        pipeline.generate(vertices, faces, Request("fear", frames=8), "cpu", cancel=cancel)


def test_missing_model_and_gpu_fail_before_the_fit(face, tmp_path):
    vertices, faces = face
    missing = Pipeline(tmp_path / "animateme.onnx", TEMPLATE)
    with pytest.raises(AnimateMeError, match="not found"):
        missing.generate(vertices, faces, Request("happy"))
    assert not missing._registered
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(AnimateMeError, match="Device GPU asked for.*set Device to Auto or CPU"):
            Pipeline(session_model() / "animateme.onnx", TEMPLATE).generate(vertices, faces, Request("happy"), "gpu")


@pytest.mark.slow
def test_a_plane_is_not_a_face(pipeline):
    from addon_fixture import grid

    vertices, faces = grid(40)
    with pytest.raises(AnimateMeError, match="face"):
        pipeline.generate(vertices * 1000, faces, Request("happy"), "cpu")


def test_generate_command_writes_npz_objs_and_preview(tmp_path, face):
    from animateme.cli import main
    from animateme.meshio import read_obj, write_obj

    vertices, faces = face
    write_obj(tmp_path / "head.obj", vertices, faces)
    code = main(["generate", "--input", str(tmp_path / "head.obj"), "--expression", "sad", "--mix", "happy:0.4",
                 "--frames", "6", "--model", str(session_model() / "animateme.onnx"), "--template", str(TEMPLATE),
                 "--out", str(tmp_path / "out"), "--obj-sequence"])
    assert code == 0
    with np.load(tmp_path / "out" / "head_sad-happy40_s0.npz") as data:
        assert data["displacements"].shape == (6, len(vertices), 3)
        np.testing.assert_allclose(data["progression"], progression_curve(6, 1.0))
    moved, _ = read_obj(tmp_path / "out" / "head_sad-happy40_s0" / "frame_004.obj")
    assert moved.shape == vertices.shape
    assert (tmp_path / "out" / "head_sad-happy40_s0.gif").stat().st_size > 0
    assert main(["generate", "--input", str(tmp_path / "nope.obj"), "--out", str(tmp_path)]) == 2


# ------------------------------------------------------------- fit controls and the neutral frame
from addon_fixture import face_with_torso  # noqa: E402
from animateme_blender.core.errors import FitRefused  # noqa: E402
from animateme_blender.core.pipeline import FitOptions, anchor_to_neutral  # noqa: E402
from animateme_blender.core.request import build_request  # noqa: E402
from animateme_blender.core.vocabulary import (LANDMARK_NAMES, REMEDIES, explain_error, parse_indices,  # noqa: E402
                                               parse_landmarks)


def test_neutral_frames_are_exactly_zero_and_the_apex_is_kept():
    rng = np.random.default_rng(0)
    deform = rng.normal(0, 0.5, (20, 30, 3)).astype(np.float32)
    progression = progression_curve(20, 1.0)
    anchored = anchor_to_neutral(deform, progression)
    assert (anchored[progression == 0] == 0).all()
    apex = progression == progression.max()
    np.testing.assert_array_equal(anchored[apex], deform[apex])
    assert (anchor_to_neutral(deform, np.zeros(20)) == 0).all()          # intensity 0: no motion at all
    # Continuous: no frame jumps by more than the model's own frames do, plus the bias removed.
    steps = np.abs(np.diff(anchored, axis=0)).max()
    assert steps <= np.abs(np.diff(deform, axis=0)).max() + 2 * np.abs(deform).max()


@pytest.mark.slow
def test_landmarks_find_the_face_beside_a_larger_body(pipeline):
    vertices, faces, landmarks, face_count = face_with_torso()
    with pytest.raises(AnimateMeError) as refused:       # alone, the fit does not find the face
        pipeline.register(vertices, faces)
    assert "landmarks" in refused.value.remedies and "force" in refused.value.remedies
    options = FitOptions.make({k: landmarks[k] for k in ("nose_tip", "mouth_left", "mouth_right")})
    result = pipeline.generate(vertices, faces, Request("happy", frames=10), "cpu", options=options)
    moved = np.linalg.norm(result.displacements, axis=2)
    mouth = moved[:, [landmarks["mouth_left"], landmarks["mouth_right"]]].max()
    assert mouth > 0.1 and moved[:, face_count:].max() < 0.01 * mouth and not result.forced
    assert (result.displacements[0] == 0).all() and (result.displacements[-1] == 0).all()


def test_region_is_exactly_still_outside_and_force_is_reported(pipeline):
    vertices, faces, landmarks, face_count = face_with_torso(connected=True)
    region = np.arange(face_count)[vertices[:face_count, 1] < np.quantile(vertices[:face_count, 1], 0.9)]
    result = pipeline.generate(vertices, faces, Request("surprise", frames=8), "cpu",
                               options=FitOptions.make(region=region))
    outside = np.ones(len(vertices), bool)
    outside[region] = False
    assert (result.displacements[:, outside] == 0).all() and np.abs(result.displacements[:, region]).max() > 0.1
    assert pipeline.generate(vertices, faces, Request("happy", frames=8), "cpu",
                             options=FitOptions.make(region=region)).fit_cached   # same fit, reused


def test_vocabulary_parsers_and_remedy_words():
    assert parse_landmarks("nose_tip=3, mouth_left=5,left_eye_inner=9") == \
        {"nose_tip": 3, "mouth_left": 5, "eye_inner_left": 9}
    for bad, words in (("nose_tip=3,mouth_left=5", "at least 3"), ("nose=1,a=2,b=3", "unknown landmark"),
                       ("nose_tip=x,mouth_left=1,chin=2", "name=vertex_index")):
        with pytest.raises(AnimateMeError, match=words):
            parse_landmarks(bad)
    assert parse_indices("0-3,7") == [0, 1, 2, 3, 7] and parse_indices(None) is None
    assert len(LANDMARK_NAMES) == 8 and all(n.endswith(("left", "right")) or n in ("nose_tip", "chin")
                                            for n in LANDMARK_NAMES)
    error = FitRefused("the fit does not look like a face", ("region", "force"))
    panel, command = explain_error(error, "panel"), explain_error(error, "command")
    assert panel.index(REMEDIES["region"].panel) < panel.index(REMEDIES["force"].panel)
    assert "--region" in command and "--force" in command and "Use Anyway" not in command
    assert explain_error(AnimateMeError("plain")) == "plain"
    assert build_request("happy", "sad", 0.3).label == "happy-sad30"
    assert build_request("happy", "sad", 0.3, transition=True).label == "happy-to-sad"
    with pytest.raises(AnimateMeError, match="End 25"):
        timing_from_frames(20, 2, 6, 12, 25)
    # Two frames are both neutral: refused with the frames that would move, not a still "success".
    with pytest.raises(AnimateMeError, match="raise Frames to 3 or more"):
        Request("happy", frames=2).validate()
    assert Request("happy", frames=3).validate().progression().max() > 0


@pytest.mark.slow
def test_intensity_one_plays_the_cards_full_intensity(face, tmp_path):
    """The card's full_intensity (the training corpus's 90th-percentile peak e per label) is what
    the user's intensity 1 plays; a card without it plays e = intensity (older models)."""
    import json
    import shutil

    vertices, faces = face
    models = tmp_path / "models"
    shutil.copytree(session_model(), models)
    card = json.loads((models / "animateme.json").read_text())
    card.pop("full_intensity", None)
    (models / "animateme.json").write_text(json.dumps(card))
    plain = Pipeline(models / "animateme.onnx", TEMPLATE, fit_cache_dir=tmp_path / "fits")
    request = Request("sad", intensity=0.8, frames=12)
    before = plain.generate(vertices, faces, request, "cpu").signal
    sad = LABELS.index("sad")
    assert before[:, sad].max() == pytest.approx(0.8) and before.sum() == pytest.approx(before[:, sad].sum())

    card["full_intensity"] = {label: 1.0 for label in card["labels"]} | {"sad": 0.25}
    (models / "animateme.json").write_text(json.dumps(card))
    calibrated = Pipeline(models / "animateme.onnx", TEMPLATE, fit_cache_dir=tmp_path / "fits")
    result = calibrated.generate(vertices, faces, request, "cpu")
    np.testing.assert_allclose(result.signal, 0.25 * before, atol=1e-7)
    np.testing.assert_allclose(result.progression, request.progression())     # the user's curve, unscaled
