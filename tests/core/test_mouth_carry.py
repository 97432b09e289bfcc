"""The carry on the user's own mesh at the mouth: face-model heads with eyeballs, teeth, gums and
tongue (built here from the face model), lips as separate surfaces or zipped shut. The face model's
own expression at each label's apex moves every part, teeth included: that is the truth the carry
is judged against. The fit is the exact one (the head's own vertices at the template's), so what is
tested is the carry alone."""

from __future__ import annotations

import numpy as np
import pytest

from animateme.bench_transfer import face_model_head, flipped, rigid_fit, umbrella
from animateme_blender.core.carry.lips import NONE, template_sides
from animateme_blender.core.fit.registration import Fit, FitScore, Similarity
from animateme_blender.core.carry.smooth_carry import SmoothCarry
from animateme_blender.core.carry.transfer import bind


def _exact_fit(case, template):
    """The head's own skin at the template's vertices, in mm: a perfect registration."""
    # face_model_head keeps vertices in the face model's order, skin first: skin index i is vertex i.
    template_space = case.vertices[template.source_index] * 10.0
    transform = Similarity(0.1, np.eye(3), np.zeros(3))
    return Fit(vertices=transform.apply(template_space), template_space=template_space, transform=transform,
               score=FitScore(0.1, 1.0), fingerprint="test", template_fingerprint=template.fingerprint,
               template_faces=template.faces, part=np.asarray(case.parts["skin"]))


@pytest.fixture(scope="module")
def programs(template):
    from animateme.emotion_programs import load_programs

    return load_programs(template.expression_names)


@pytest.fixture(scope="module", params=[False, True], ids=["lip-slit", "fused"])
def head(request, face_model, template):
    case = face_model_head(face_model, seed=5, fused=request.param)
    assert (case.parts["skin"] == np.arange(9409)).all()
    binding = bind(_exact_fit(case, template), case.vertices, case.faces, template=template)
    return case, SmoothCarry(binding, mesh=(case.vertices, case.faces))


def _apex(label, programs, template, case):
    weights = np.asarray(programs.variant_weights[programs.labels.index(label)][0], np.float64)
    return np.tensordot(weights, template.expression_modes, axes=1), case.truth(weights)


def test_the_template_mouth_splits_into_two_lips_that_never_touch(template):
    sides = template_sides(template.vertices, template.faces)
    mouth = min(range(len(sides.openings)), key=lambda o: template.vertices[sides.openings[o].loop, 1].mean())
    upper, lower = 2 * mouth, 2 * mouth + 1
    assert (sides.template == upper).sum() > 10 and (sides.template == lower).sum() > 10
    # Between the corners no template triangle holds both lips (the opening parts them); the sides
    # meet only beyond the corners, where the skin is one piece.
    codes = sides.template[template.faces]
    both = (codes == upper).any(axis=1) & (codes == lower).any(axis=1)
    corners = template.vertices[list(sides.openings[mouth].corners)]
    assert both.any()
    assert (np.abs(template.vertices[template.faces[both]].mean(axis=1)[:, 0]) > np.abs(corners[:, 0]).min() - 1.0).all()
    assert (sides.template[list(sides.openings[mouth].corners)] == NONE).all()


# Known gaps, measured and left open: none today (the list stays so a new one is named, not hidden).
KNOWN: set = set()


@pytest.mark.parametrize("label", ["happy", "sad", "surprise", "fear", "angry", "disgust"])
def test_every_label_lands_without_spikes_and_the_teeth_follow_the_jaw(head, label, programs, template):
    case, carrier = head
    if ((case.slit and "lip-slit" or "fused"), label) in KNOWN:
        pytest.xfail("known gap: see KNOWN")
    deform, true = _apex(label, programs, template, case)
    carried = carrier.apply(deform[None])[0].astype(np.float64)
    skin = np.zeros(len(case.vertices), bool)
    skin[case.parts["skin"]] = True
    skin_faces = case.faces[skin[case.faces].all(axis=1)]
    # No triangle turns over on the skin (the face model's own expression folds a few at the mouth
    # corners: the carry relaxes them); the lip line is no row of spikes.
    assert flipped(case.vertices, case.faces, carried[None])[0] == 0
    moves = np.linalg.norm(carried[skin], axis=1)
    bumps = umbrella(carried, skin_faces)[skin].max()
    if case.slit:
        assert bumps <= 0.25 * moves.max()
    else:
        # Zipped shut, the lips are joined by one row of triangles ~1 cm tall: that row must stretch
        # (the face model's own motion stretches it just so); the carry adds no spike of its own.
        assert bumps <= max(0.25 * moves.max(), 1.05 * umbrella(true, skin_faces)[skin].max())
    # Upper teeth and eyeballs stay with the head; the lower teeth move with the jaw, rigidly.
    for still in ("upper_teeth", "eyeballs"):
        assert np.abs(carried[case.parts[still]]).max() == 0.0
    lower = case.parts["lower_teeth"]
    # Within 0.5 mm of the jaw's rigid motion: the rigid fit of where the face model's (linear) jaw
    # takes them.
    rigid = rigid_fit(case.vertices[lower], case.vertices[lower] + true[lower]) - case.vertices[lower]
    assert np.linalg.norm(carried[lower] - rigid, axis=1).max() <= 0.05  # cm
    moved = case.vertices[lower] + carried[lower]
    pairs = np.random.default_rng(0).integers(0, len(lower), (200, 2))
    before = np.linalg.norm(case.vertices[lower][pairs[:, 0]] - case.vertices[lower][pairs[:, 1]], axis=1)
    after = np.linalg.norm(moved[pairs[:, 0]] - moved[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(after, before, atol=1e-4)   # rigid: no distance changes (float32, cm)


def test_an_open_neutral_jaw_turns_on_from_where_it_already_is(face_model, template, programs):
    """A neutral with the mouth open and a strong identity: the face model moves every face's teeth
    alike, so the jaw's motion is read where these teeth would sit on the template (the fit's own
    opening and the identity's shift taken off). Read where they sit, they were 2.4 mm off."""
    seed, opening = 7, 0.3
    case = face_model_head(face_model, seed=seed, jaw_open=opening)
    fit = _exact_fit(case, template)
    names = list(template.expression_names)
    fit.expression = (opening * template.expression_modes[names.index("jawOpen")]).astype(np.float32)
    identity = np.random.default_rng(seed).normal(0.0, 0.8, size=len(face_model.identity_modes))
    fit.identity = identity.astype(np.float32)          # the head's own identity (face_model_head's draw)
    carrier = SmoothCarry(bind(fit, case.vertices, case.faces, template=template), mesh=(case.vertices, case.faces))
    deform, true = _apex("surprise", programs, template, case)
    carried = carrier.apply(deform[None])[0].astype(np.float64)
    lower = case.parts["lower_teeth"]
    rigid = rigid_fit(case.vertices[lower], case.vertices[lower] + true[lower]) - case.vertices[lower]
    assert np.linalg.norm(true[lower], axis=1).max() > 1.0                         # the jaw moves > 10 mm
    assert np.linalg.norm(carried[lower] - rigid, axis=1).max() <= 0.05            # cm


@pytest.mark.xfail(strict=True, reason="known gap: a few inner upper-lip vertices near the corners take "
                                       "the lower lip's side when the jaw opens wide")
def test_a_lip_vertex_takes_its_own_lip_and_never_the_other(face_model, template, programs):
    """jawOpen parts the lips: on the head with a slit every upper-lip vertex must go up or stay,
    every lower-lip vertex go down, each exactly by its own lip's motion (no mixture)."""
    case = face_model_head(face_model, seed=5)
    binding = bind(_exact_fit(case, template), case.vertices, case.faces, template=template)
    names = list(template.expression_names)
    deform = template.expression_modes[names.index("jawOpen")] * 0.4
    carried = SmoothCarry(binding).apply(deform[None])[0]
    sides = template_sides(binding.rest, binding.faces)
    mouth = min(range(len(sides.openings)), key=lambda o: binding.rest[sides.openings[o].loop, 1].mean())
    lip_line = np.abs(case.vertices[:9409, 1] * 10 - binding.rest[sides.openings[mouth].loop, 1].mean()) < 3.0
    upper = np.flatnonzero(lip_line & (binding.side[:9409] == 2 * mouth))
    lower = np.flatnonzero(lip_line & (binding.side[:9409] == 2 * mouth + 1))
    assert len(upper) > 10 and len(lower) > 10
    assert carried[lower, 1].max() < 0 and carried[upper, 1].min() > carried[lower, 1].max()
    if binding.mixed is not None:      # the mixed vertices on a cut lip line: none (the slit is real)
        assert not np.isin(np.concatenate([upper, lower]), binding.mixed[binding.blend > 0.01]).any()

