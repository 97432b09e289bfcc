"""The synthetic corpus: deformation transfer, emotion programs, the contract, split disjointness."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from animateme.corpus import (PROGRAMS_PATH, CorpusConfig, DeformationTransfer, build_corpus,
                              draw_subject, load_programs, synthesize_sequence)
from animateme.emotion_programs import sequence_program
from animateme.facemodel import SKIN_VERTICES
from animateme.splits import split_arrays
from animateme.template_build import CM_TO_MM
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import LABELS


@pytest.fixture(scope="module")
def transfer(face_model):
    skin = np.asarray(SKIN_VERTICES)
    return DeformationTransfer(face_model.neutral[skin] * CM_TO_MM, face_model.skin_triangles(),
                               face_model.expression_modes[:, skin] * CM_TO_MM)


def test_transfer_onto_the_generic_face_gives_the_generic_shapes(face_model, transfer):
    skin = np.asarray(SKIN_VERTICES)
    shapes = np.array([26, 45])  # jawOpen, mouthSmile_L
    out = transfer.transfer(face_model.neutral[skin] * CM_TO_MM, shapes)
    np.testing.assert_allclose(out[shapes], face_model.expression_modes[shapes][:, skin] * CM_TO_MM, atol=1e-3)
    assert not out[np.setdiff1d(np.arange(len(out)), shapes)].any()


def test_transferred_shapes_depend_on_the_face(face_model, transfer):
    skin = np.asarray(SKIN_VERTICES)
    weights = np.random.default_rng(1).standard_normal(100).astype(np.float32) * 2
    subject = (face_model.neutral[skin] + np.tensordot(weights, face_model.identity_modes[:, skin], 1)) * CM_TO_MM
    jaw = list(face_model.expression_names).index("jawOpen")
    generic = face_model.expression_modes[jaw, skin] * CM_TO_MM
    moved = transfer.transfer(subject, [jaw])[jaw]
    difference = np.linalg.norm(moved - generic, axis=1).mean()
    assert 0.1 < difference < 0.5 * np.linalg.norm(generic, axis=1).mean()  # its own, yet still jawOpen


def test_programs_cover_the_six_emotions(face_model):
    programs = load_programs(face_model.expression_names)
    assert programs.labels == LABELS
    assert (programs.shape_weights.sum(1) > 0).all()
    names = list(face_model.expression_names)
    assert programs.shape_weights[LABELS.index("happy"), names.index("mouthSmile_L")] == 1.0
    # Every emotion is a family of documented variants whose probabilities sum to one.
    for label, probability in zip(LABELS, programs.variant_probability):
        assert len(probability) >= 3 and probability.sum() == pytest.approx(1.0), label
    # Shapes the prototypes never used play a part now (individual habits, documented variants).
    used = {names[i] for i in programs.used_shapes()}
    assert {"mouthLeft", "mouthRight", "cheekPuff_L", "jawForward", "mouthRollLower", "mouthRollUpper"} <= used


def test_a_subject_keeps_its_own_variant_and_habits(face_model):
    programs = load_programs(face_model.expression_names)
    rng = np.random.default_rng(11)
    subjects = [draw_subject(rng, programs) for _ in range(40)]
    variants = np.stack([s.variant for s in subjects])           # (40, C)
    # Different people smile differently: each emotion shows more than one variant across people.
    assert all(len(np.unique(variants[:, c])) >= 2 for c in range(len(LABELS)))
    one = subjects[0]
    label = LABELS.index("surprise")
    chosen = programs.variant_weights[label][one.variant[label]]
    # Without a blend, every sequence of the subject plays its variant (plus its habits, gains).
    programs.blend_probability = 0.0
    for _ in range(5):
        program = sequence_program(rng, programs, label, one)
        np.testing.assert_allclose(program, (chosen + one.habit_weights[label]) * one.gain)
    assert any(s.habit_weights.any() for s in subjects) and not all(s.habit_weights.any() for s in subjects)


def test_blends_mix_in_the_confusable_partner(face_model):
    programs = load_programs(face_model.expression_names)
    fear, surprise = LABELS.index("fear"), LABELS.index("surprise")
    assert programs.blend_partners[fear, surprise] == programs.blend_partners[fear].max()
    assert np.allclose(programs.blend_partners.sum(1), 1.0)
    programs.blend_probability = 1.0
    rng = np.random.default_rng(5)
    subject = draw_subject(rng, programs)
    subject.habit_weights[:] = 0
    own = programs.variant_weights[fear][subject.variant[fear]] * subject.gain
    blended = [sequence_program(rng, programs, fear, subject) for _ in range(30)]
    assert all((b >= own - 1e-9).all() for b in blended)          # the own variant stays
    assert any((b > own + 1e-6).any() for b in blended)           # a partner adds units


def test_variant_without_probability_is_refused(face_model, tmp_path):
    spec = json.loads(PROGRAMS_PATH.read_text())
    spec["emotions"]["happy"]["odd"] = {"units": {"AU12": 1.0}}
    (tmp_path / "e.json").write_text(json.dumps(spec))
    with pytest.raises(AnimateMeError, match="lacks 'p'"):
        load_programs(face_model.expression_names, tmp_path / "e.json")


def test_program_with_an_unknown_action_unit_is_refused(face_model, tmp_path):
    spec = json.loads(PROGRAMS_PATH.read_text())
    spec["emotions"]["odd"] = {"AU99": 1.0}
    (tmp_path / "e.json").write_text(json.dumps(spec))
    with pytest.raises(AnimateMeError, match="AU99"):
        load_programs(face_model.expression_names, tmp_path / "e.json")


def test_raw_sequences_go_neutral_apex_neutral(face_model, template):
    programs = load_programs(face_model.expression_names)
    programs.style["blink_rate_per_second"] = 0.0   # a blink may outdo a faint display's apex
    programs.style["low_intensity_fraction"] = 0.0
    basis = template.expression_modes
    rng = np.random.default_rng(3)
    for label in range(len(programs.labels)):
        frames, phase, intensity = synthesize_sequence(rng, programs, label, basis)
        assert frames.shape[1:] == basis.shape[1:] and phase.shape == frames.shape[:1]
        assert phase[0] == 0 and phase.max() == pytest.approx(1.0) and phase[-1] < 0.05
        peak = np.linalg.norm(frames, axis=-1).mean(-1).argmax()
        assert phase[peak] > 0.5  # the most deformed frame lies in the apex
        assert 0.0 < intensity <= 1.0


@pytest.fixture(scope="module")
def corpus(face_model, template, tmp_path_factory):
    """A small corpus whose programs file has a seventh label: adding one needs no code."""
    out = tmp_path_factory.mktemp("corpus")
    spec = json.loads(PROGRAMS_PATH.read_text())
    spec["emotions"]["pucker"] = {"AU18": 1.0}
    programs = out / "emotions.json"
    programs.write_text(json.dumps(spec))
    config = CorpusConfig(train_subjects=2, test_subjects=2, seed=7, programs_path=programs)
    summary = build_corpus(face_model, template, out, config, show_progress=False)
    return out, summary


def test_corpus_follows_the_contract(corpus, template):
    out, summary = corpus
    labels = list(LABELS) + ["pucker"]
    for name, subjects, takes in (("train", 2, 1), ("test", 2, 2)):
        split = split_arrays(out / f"{name}.npz")
        sequences = subjects * len(labels) * takes
        assert split["neutral"].shape == (sequences, template.num_vertices, 3)
        assert split["deform"].shape == (sequences, 40, template.num_vertices, 3)
        assert split["progression"].shape == (sequences, 40)
        assert split["deform"].dtype == np.float32
        assert list(split["label_names"]) == labels
        assert sorted(np.unique(split["label"])) == list(range(len(labels)))
        assert str(split["fingerprint"]) == template.fingerprint
        assert len(np.unique(split["subject"])) == subjects
    assert (out / "template.npz").exists()
    assert summary["test"]["sequences"] == 28   # two takes per subject and label in the test split


def test_train_and_test_subjects_are_disjoint(corpus):
    out, _ = corpus
    train, test = split_arrays(out / "train.npz"), split_arrays(out / "test.npz")
    assert not set(train["subject"]) & set(test["subject"])
    # Different subjects have different faces, and each subject one neutral.
    assert not np.allclose(train["neutral"][0], test["neutral"][0])
    same = train["subject"] == train["subject"][0]
    assert np.allclose(train["neutral"][same], train["neutral"][0])


def test_progression_labels_lie_in_their_range_and_follow_the_motion(corpus):
    out, _ = corpus
    split = split_arrays(out / "train.npz")
    p, s = split["progression"], split["extremeness"]
    assert p.min() >= 0 and (p.max(1) <= s + 1e-6).all() and s.max() <= 1.0
    assert np.isclose(s.max(), 1.0)  # each category's most extreme training sequence
    assert (p[:, 0] < 0.05).all()  # sequences start at neutral
    motion = np.linalg.norm(split["deform"], axis=-1).mean(-1)  # (S,K)
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(motion, p)]
    assert np.median(correlation) > 0.8


def test_test_split_extremeness_is_on_the_training_splits_scale(corpus, template):
    """e = 1 is the training's largest reach of the label in both splits: a test take's extremeness
    times that reach is its own reach (passing 1 where it reaches further)."""
    from animateme.corpus import EXTREMENESS_LANDMARKS, apex_reach

    out, _ = corpus
    landmarks = template.landmarks[EXTREMENESS_LANDMARKS]
    train, test = split_arrays(out / "train.npz"), split_arrays(out / "test.npz")
    train_reach = apex_reach(train["deform"], landmarks)
    largest = np.array([train_reach[train["label"] == c].max() for c in range(len(train["label_names"]))])
    np.testing.assert_allclose(test["extremeness"] * largest[test["label"]],
                               apex_reach(test["deform"], landmarks), rtol=1e-4)


def test_missing_corpus_says_what_to_run(tmp_path):
    with pytest.raises(AnimateMeError, match="animateme data build"):
        split_arrays(tmp_path / "train.npz")


def test_a_split_without_a_contract_key_or_unreadable_names_the_rebuild(tmp_path):
    from animateme.splits import load_split

    np.savez(tmp_path / "train.npz", neutral=np.zeros((1, 4, 3), np.float32))
    with pytest.raises(AnimateMeError, match="lacks deform, .*fingerprint: rebuild it with `animateme data build`"):
        load_split(tmp_path / "train.npz")
    (tmp_path / "test.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(AnimateMeError, match="cannot read corpus file .*animateme data build"):
        split_arrays(tmp_path / "test.npz")


def test_a_corpus_can_share_another_corpus_meaning_of_full_extremeness(corpus, face_model, template, tmp_path):
    """--reach-like: e = 1 stands for the reference's largest reach per label, so a take's
    extremeness times that reach is its own apex reach, whatever the new corpus's own maximum."""
    from animateme.corpus import EXTREMENESS_LANDMARKS, reference_reach

    reference_dir, _ = corpus
    programs = reference_dir / "emotions.json"
    labels = load_programs(face_model.expression_names, programs).labels
    reach = np.asarray(reference_reach(reference_dir, template, labels))
    assert reach.shape == (len(labels),) and (reach > 0).all()
    config = CorpusConfig(train_subjects=2, test_subjects=1, seed=8, programs_path=programs,
                          reach_reference=tuple(reach))
    build_corpus(face_model, template, tmp_path, config, show_progress=False)
    split = split_arrays(tmp_path / "train.npz")
    own = np.linalg.norm(split["deform"][:, :, template.landmarks[EXTREMENESS_LANDMARKS]], axis=-1).mean(-1).max(-1)
    np.testing.assert_allclose(split["extremeness"] * reach[split["label"]], own, rtol=1e-4)
    with pytest.raises(AnimateMeError, match="labels"):
        reference_reach(reference_dir, template, tuple(LABELS))


def test_more_test_subjects_keep_the_training_split_and_its_scale(corpus, face_model, template, tmp_path):
    """--train-from: the reference's training split byte for byte, new people as the test split,
    their e on the reference's scale; the reference's own seed is refused (it would draw its people)."""
    from animateme.corpus import EXTREMENESS_LANDMARKS, build_more_test_subjects, reference_reach

    reference_dir, _ = corpus
    programs = reference_dir / "emotions.json"
    (reference_dir / "summary.json").write_text(json.dumps({"seed": 7}))
    config = CorpusConfig(test_subjects=1, seed=9, programs_path=programs)
    summary = build_more_test_subjects(face_model, template, tmp_path, config, reference_dir, show_progress=False)
    assert (tmp_path / "train.npz").read_bytes() == (reference_dir / "train.npz").read_bytes()
    assert summary["train"]["copied_from"] == str(reference_dir) and summary["test"]["subjects"] == 1
    test, reference = split_arrays(tmp_path / "test.npz"), split_arrays(reference_dir / "train.npz")
    for neutral in test["neutral"]:           # another face than every training subject's
        assert np.abs(reference["neutral"] - neutral).max(axis=(1, 2)).min() > 1.0
    labels = load_programs(face_model.expression_names, programs).labels
    reach = np.asarray(reference_reach(reference_dir, template, labels))
    own = np.linalg.norm(test["deform"][:, :, template.landmarks[EXTREMENESS_LANDMARKS]], axis=-1).mean(-1).max(-1)
    np.testing.assert_allclose(test["extremeness"] * reach[test["label"]], own, rtol=1e-4)
    with pytest.raises(AnimateMeError, match="another --seed"):
        build_more_test_subjects(face_model, template, tmp_path / "again", replace(config, seed=7), reference_dir,
                                 show_progress=False)
