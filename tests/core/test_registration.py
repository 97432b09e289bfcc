"""Registration on small remeshed faces from the face model: accuracy against the exact
correspondence, any pose and unit, landmarks, parts, cache, frames, remesher."""

from __future__ import annotations

import pytest

pytest.importorskip("meshmonk", reason="remeshes its inputs with meshmonk, whose wheel does not import on Python 3.13")

import numpy as np
from scipy.spatial.transform import Rotation

from animateme.remesh import remesh, subdivide, synthetic_head, triangulate
from animateme_blender.core.frames import blender_to_face_model, face_model_to_blender
from animateme_blender.core.fit.registration import (LANDMARK_NAMES, FitCache, Fit, fit_fingerprint,
                                                 fit_template)
from animateme_blender.core.carry.transfer import bind
from mesh_fixtures import sphere

SEED = 4242   # identity weights default_rng([SEED, i]): not a corpus subject


@pytest.fixture(scope="module")
def head(face_model):
    """Face skin + back of head + neck (+ mouth and eye sockets) in mm, triangles."""
    materials = list(face_model.materials)
    keep = np.isin(face_model.face_material, [materials.index("M_Face"), materials.index("M_BackHead")])
    faces = triangulate(face_model.faces[keep])
    count = int(faces.max()) + 1
    return {"faces": faces, "neutral": face_model.neutral[:count].astype(np.float64) * 10,
            "modes": face_model.identity_modes[:, :count].astype(np.float64) * 10,
            "expressions": face_model.expression_modes[:, :count].astype(np.float64) * 10,
            "names": list(face_model.expression_names)}


def make_subject(head, index: int, size: int):
    weights = np.random.default_rng([SEED, index]).standard_normal(len(head["modes"]))
    subject = head["neutral"] + np.tensordot(weights, head["modes"], axes=1)
    vertices, faces, correspondence = remesh(subject, head["faces"], size)
    return subject, vertices, faces, correspondence


@pytest.fixture(scope="module")
def metres_case(head, template):
    """A subject remeshed to ~3000 vertices, turned at random, in metres; fitted once."""
    subject, vertices, faces, correspondence = make_subject(head, 0, 3000)
    rotation = Rotation.random(random_state=7).as_matrix()
    scale, translation = 0.001, np.array([0.3, -1.2, 0.05])
    user = scale * vertices @ rotation.T + translation
    user.flags.writeable = False            # any write into the input would raise
    faces.flags.writeable = False
    fit = fit_template(user, faces, template)
    return dict(subject=subject, vertices=vertices, faces=faces, correspondence=correspondence, user=user,
                rotation=rotation, scale=scale, translation=translation, fit=fit)


def to_model_mm(case, points):
    return ((points - case["translation"]) @ case["rotation"]) / case["scale"]


def test_fit_in_metres_any_pose_matches_the_known_correspondence(metres_case, template):
    fit = metres_case["fit"]
    error = np.linalg.norm(to_model_mm(metres_case, fit.vertices) - metres_case["subject"][template.source_index], axis=1)
    assert error.mean() < 1.0 and np.percentile(error, 95) < 2.5, (error.mean(), np.percentile(error, 95))
    assert fit.score.accepted and fit.score.coverage > 0.8
    assert fit.transform.scale == pytest.approx(0.001, rel=0.1)   # found the unit: metres per mm
    assert fit.vertices.shape == template.vertices.shape
    np.testing.assert_allclose(fit.transform.apply(fit.template_space), fit.vertices, atol=1e-9)


def test_expression_transfer_through_the_fit_matches_the_remeshed_expression(metres_case, head, template):
    binding = bind(metres_case["fit"], metres_case["user"], metres_case["faces"])
    delta = head["expressions"][head["names"].index("mouthSmile_L")] + head["expressions"][head["names"].index("jawOpen")] * 0.5
    moved = binding.apply(delta[template.source_index][None])[0]
    moved_mm = (moved @ metres_case["rotation"]) / metres_case["scale"]
    expected = metres_case["correspondence"] @ delta
    skin = np.asarray(metres_case["correspondence"][:, 9409:].sum(axis=1)).ravel() < 1e-9
    error = np.linalg.norm(moved_mm - expected, axis=1)
    assert np.linalg.norm(expected[skin], axis=1).mean() > 1.0     # the expression does move the skin
    assert error[skin].mean() < 1.0, error[skin].mean()


def test_landmarks_and_separate_parts(head, template):
    """Blender Z-up, centimetres, extra parts (two eyeball spheres and a big box far away), and
    user landmarks: the fit keeps to the face."""
    subject, vertices, faces, correspondence = make_subject(head, 1, 2500)
    user = face_model_to_blender(vertices) * 0.1
    extra_vertices, extra_faces = [], []
    sphere_v, sphere_f = sphere(1.2, 10, 12)
    for centre in ([-3.2, -4.0, 3.5], [3.2, -4.0, 3.5]):
        extra_faces.append(sphere_f + len(user) + sum(len(v) for v in extra_vertices))
        extra_vertices.append(sphere_v + np.array(centre))
    everything_v = np.concatenate([user] + extra_vertices)
    everything_f = np.concatenate([faces] + extra_faces)
    # Landmarks: the remeshed vertex nearest each template landmark on the true subject.
    truth_points = face_model_to_blender(subject[template.source_index[template.landmarks]]) * 0.1
    landmarks = {name: int(np.argmin(np.linalg.norm(user - truth_points[i], axis=1)))
                 for name, i in LANDMARK_NAMES.items()}
    fit = fit_template(everything_v, everything_f, template, landmarks=landmarks)
    back = blender_to_face_model(fit.vertices) * 10.0
    error = np.linalg.norm(back - subject[template.source_index], axis=1)
    assert error.mean() < 1.0, error.mean()
    assert len(fit.part) == len(user) and fit.part.max() < len(user)   # the face, not the eyeballs
    binding = bind(fit, everything_v, everything_f)
    groups = binding.group[len(user):]
    assert (groups >= 0).all() and len(np.unique(groups)) == 2          # each eyeball is one rigid part


def test_a_torso_larger_than_the_head_is_searched_after_it(head, template, monkeypatch):
    """A separate box torso, the largest part, fits the template's face region worse than the head
    does, so the head's pose search runs first and ends the search: the torso costs its rigid
    alignment only, no pose search and no full model fit."""
    import animateme_blender.core.fit.fitter as fitter
    from animateme.bench_registration import _box, _join

    subject, vertices, faces, correspondence = make_subject(head, 3, 2500)
    neck = vertices[vertices[:, 1] < vertices[:, 1].min() + 10].mean(0)
    torso = _box((380, 260, 200), neck + np.array([0.0, -135.0, -20.0]), n=12)
    everything_v, everything_f = _join((vertices, faces), torso)
    full_fits, searches = [], []
    model_fit, rank_poses = fitter.model_fit, fitter._rank_poses

    def counting(*args, **kwargs):
        if "iterations" not in kwargs:                  # the quick pose-search fits name theirs
            full_fits.append(int(args[3].index.max()))
        return model_fit(*args, **kwargs)

    def searching(*args, **kwargs):
        searches.append(int(args[3].index.max()))
        return rank_poses(*args, **kwargs)

    monkeypatch.setattr(fitter, "model_fit", counting)
    monkeypatch.setattr(fitter, "_rank_poses", searching)
    fit = fit_template(everything_v, everything_f, template)
    assert fit.score.accepted and fit.part.max() < len(vertices)          # the head
    assert searches and max(searches) < len(vertices), searches         # no pose search on the torso
    assert full_fits and max(full_fits) < len(vertices), full_fits      # nor a full fit
    error = np.linalg.norm(fit.vertices - subject[template.source_index], axis=1)
    assert error.mean() < 1.0, error.mean()


def test_named_vertex_group_selects_the_face(metres_case, template):
    """A vertex group (mask) restricts the fit to those vertices even with junk elsewhere."""
    user, faces = metres_case["user"], metres_case["faces"]
    junk_v, junk_f = sphere(0.2, 30, 40)            # a big ball (0.2 m) beside the head
    vertices = np.concatenate([user, junk_v + user.mean(0) + 0.15])
    all_faces = np.concatenate([faces, junk_f + len(user)])
    mask = np.zeros(len(vertices), dtype=bool)
    mask[:len(user)] = True
    fit = fit_template(vertices, all_faces, template, part=mask)
    np.testing.assert_array_equal(np.sort(fit.part), np.arange(len(user)))
    error = np.linalg.norm(to_model_mm(metres_case, fit.vertices) - metres_case["subject"][template.source_index], axis=1)
    assert error.mean() < 1.0


def test_fit_cache_reuses_unchanged_geometry_and_refits_changed(metres_case, template, tmp_path):
    cache = FitCache(tmp_path)
    user, faces = metres_case["user"], metres_case["faces"]
    # Seed the cache with the module's fit (what a first run writes), then ask again.
    key = fit_fingerprint(user, faces, template.fingerprint)
    assert metres_case["fit"].fingerprint == key
    metres_case["fit"].save(cache.path(key))
    fit, cached = cache.fit(user, faces, template)
    assert cached and np.array_equal(fit.vertices, metres_case["fit"].vertices)
    loaded = Fit.load(cache.path(key))
    assert loaded.score.accepted and loaded.template_faces.shape == template.faces.shape
    # The same shape in millimetres is another fit; so is moved geometry.
    assert fit_fingerprint(user * 1000, faces, template.fingerprint) != key
    moved = np.array(user)
    moved[0] += 1e-3
    assert fit_fingerprint(moved, faces, template.fingerprint) != key
    assert fit_fingerprint(user + 1e-12, faces, template.fingerprint) == key   # float noise is not a change


def test_procedural_head_not_from_the_face_model_fits_its_face(template):
    """The procedural head in metres, Blender Z-up: accepted, looking the right way (the face's
    forward axis is Blender's -Y), and the fitted nose tip on its nose."""
    vertices_mm, faces = synthetic_head(rows=90, columns=120)
    fit = fit_template(face_model_to_blender(vertices_mm) * 0.001, faces, template)
    nose_tip = blender_to_face_model(fit.vertices[template.landmarks[30]]) * 1000
    assert fit.score.accepted and fit.score.nose_mm > 8
    forward = fit.transform.rotation @ np.array([0.0, 0.0, 1.0])
    assert forward @ np.array([0.0, -1.0, 0.0]) > np.cos(np.radians(15))
    assert np.linalg.norm(nose_tip - vertices_mm[np.argmax(vertices_mm[:, 2])]) < 20.0


def test_frames_are_proper_rotations_and_inverse():
    points = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(blender_to_face_model(face_model_to_blender(points)), points)
    # Face-model up (+Y) is Blender up (+Z); the face's forward (+Z) is Blender's front (-Y).
    np.testing.assert_allclose(face_model_to_blender(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])),
                               [[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    a, b = face_model_to_blender(points[:2])
    assert np.cross(a, b) == pytest.approx(face_model_to_blender(np.cross(points[0], points[1])))


def test_remesh_keeps_exact_correspondence(head):
    vertices, faces, correspondence = remesh(head["neutral"], head["faces"], 4000)
    assert 3500 <= len(vertices) <= 4500 and faces.max() < len(vertices)
    np.testing.assert_allclose(correspondence @ head["neutral"], vertices, atol=1e-6)
    np.testing.assert_allclose(np.asarray(correspondence.sum(axis=1)).ravel(), 1.0)
    small_v, small_f, weights = subdivide(head["neutral"], head["faces"])
    assert len(small_f) == 4 * len(head["faces"])
    np.testing.assert_allclose(weights @ head["neutral"], small_v)


def test_register_and_transfer_commands(template, tmp_path, monkeypatch):
    """`animateme register` writes the fit (template topology in the input's units) and a
    picture; `animateme transfer` moves the input's own vertices with a frames file."""
    from animateme.cli import main
    from animateme.meshio import write_mesh

    monkeypatch.setenv("ANIMATEME_DATA_DIR", str(tmp_path / "data"))
    template_file = tmp_path / "template.npz"
    template.save(template_file)
    vertices_mm, faces = synthetic_head(rows=80, columns=100)
    mesh = tmp_path / "head.obj"
    write_mesh(mesh, vertices_mm * 0.1, faces)                  # centimetres, Y up
    fit_file, picture = tmp_path / "fit.npz", tmp_path / "fit.png"
    assert main(["register", str(mesh), "--out", str(fit_file), "--template", str(template_file),
                 "--picture", str(picture)]) == 0
    with np.load(fit_file) as fit:
        assert fit["vertices"].shape == template.vertices.shape and bool(fit["accepted"])
        assert 0.05 < float(fit["scale"]) < 0.15                  # cm per mm, found from the geometry
    assert picture.stat().st_size > 10_000
    names = list(template.expression_names)
    deform = np.stack([k * template.expression_modes[names.index("jawOpen")] for k in (0.0, 1.0)])
    frames, out = tmp_path / "frames.npz", tmp_path / "out.npz"
    np.savez(frames, deform=deform)
    assert main(["transfer", str(mesh), "--frames", str(frames), "--fit", str(fit_file), "--out", str(out),
                 "--template", str(template_file)]) == 0
    with np.load(out) as result:
        moved = result["displacements"]
    assert moved.shape == (2, len(vertices_mm), 3)
    assert np.abs(moved[0]).max() == 0.0 and 0.5 < np.abs(moved[1]).max() < 5.0   # cm: the jaw drops ~3 cm
    assert main(["register", str(tmp_path / "missing.obj"), "--out", str(fit_file),
                 "--template", str(template_file)]) == 2



def test_register_refusal_names_the_command_line_options(template, tmp_path, monkeypatch, capsys):
    """A sphere is refused; the message says what was wrong in plain words and names only the
    command's own options, quickest first; --force keeps the fit and says it was refused."""
    from animateme.cli import main
    from animateme.meshio import write_mesh

    monkeypatch.setenv("ANIMATEME_DATA_DIR", str(tmp_path / "data"))
    template_file = tmp_path / "template.npz"
    template.save(template_file)
    mesh = tmp_path / "ball.obj"
    write_mesh(mesh, *sphere(90.0, 30, 40))
    fit_file = tmp_path / "fit.npz"
    assert main(["register", str(mesh), "--out", str(fit_file), "--template", str(template_file)]) == 2
    error = capsys.readouterr().err
    assert "the fit was refused" in error and error.index("--landmarks") < error.index("--force")
    assert not any(word in error for word in ("residual", "coverage", "identity", "vertex group"))
    assert main(["register", str(mesh), "--out", str(fit_file), "--template", str(template_file), "--force"]) == 0
    assert "but used anyway" in capsys.readouterr().out
    with np.load(fit_file) as fit:
        assert not bool(fit["accepted"]) and bool(fit["score_forced"])


def test_landmark_names_are_the_front_ends_names():
    assert list(LANDMARK_NAMES) == ["nose_tip", "mouth_left", "mouth_right", "eye_inner_left", "eye_inner_right",
                                    "eye_outer_left", "eye_outer_right", "chin"]


def test_front_only_mask_is_accepted_without_landmarks(head, template):
    """A face mask (front of the face only, no ears, neck or back), upside down in centimetres:
    judged on the face region, it is accepted, and the face region is where it belongs."""
    from animateme_blender.core.fit.judge import face_region

    subject, vertices, faces, _ = make_subject(head, 2, 4000)
    nose = subject[template.source_index[template.landmarks[30]]]
    keep = (((vertices[:, 0] - nose[0]) / 70) ** 2 + ((vertices[:, 1] - nose[1] - 5) / 100) ** 2 < 1) & \
        (vertices[:, 2] > nose[2] - 75)
    kept = faces[keep[faces].all(1)]
    index = np.cumsum(keep) - 1
    rotation = Rotation.from_euler("xz", [180, 20], degrees=True).as_matrix()
    user = 0.1 * vertices[keep] @ rotation.T
    fit = fit_template(user, index[kept], template)
    back = (fit.vertices / 0.1) @ rotation
    error = np.linalg.norm(back - subject[template.source_index], axis=1)[face_region(template)]
    assert fit.score.accepted and error.mean() < 1.5, (fit.score.describe(), error.mean())


def test_fit_cache_never_hands_back_a_refused_fit_unasked(metres_case, template, tmp_path, monkeypatch):
    """One key for a mesh's fit. A forced (refused) fit in the cache comes back only when forced
    again; asked for an accepted fit, the cache fits anew."""
    import dataclasses

    from animateme_blender.core.fit import registration

    cache = FitCache(tmp_path)
    user, faces = metres_case["user"], metres_case["faces"]
    key = cache.key(user, faces, template)
    assert key == fit_fingerprint(user, faces, template.fingerprint) == metres_case["fit"].fingerprint
    refused = dataclasses.replace(metres_case["fit"], score=dataclasses.replace(
        metres_case["fit"].score, problem="only part of a face was found on the mesh", forced=True))
    refused.save(cache.path(key))
    fit, cached = cache.fit(user, faces, template, require_face=False)
    assert cached and fit.score.forced and not fit.score.accepted
    monkeypatch.setattr(registration, "fit_template", lambda *a, **k: metres_case["fit"])
    fit, cached = cache.fit(user, faces, template)
    assert not cached and fit.score.accepted
    assert Fit.load(cache.path(key)).score.accepted           # the accepted fit replaced it


def test_warp_polish_fits_a_smooth_warp_no_identity_mode_makes(template):
    """A face bent sideways and squashed (a quadratic warp, beyond the identity model): the
    polish with smooth warp modes lands on the known correspondence far closer than the model
    fit it starts from."""
    from animateme_blender.core.fit.fitresult import Similarity
    from animateme_blender.core.fit.model_fit import model_fit, polish_with_warp
    from animateme_blender.core.fit.surface import build_surface

    points = np.asarray(template.vertices, dtype=np.float64)
    points = points - points.mean(0)
    faces = np.asarray(template.faces, dtype=np.int64)
    modes = np.asarray(template.identity_modes, dtype=np.float64)
    truth = points.copy()
    truth[:, 0] += 0.1 * points[:, 1] ** 2 / 100.0
    truth[:, 1] *= 1.12
    surface = build_surface(truth, faces, np.arange(len(truth)), np.random.default_rng(0))
    start = Similarity(1.0, np.eye(3), np.zeros(3))
    shape, identity, transform, _ = model_fit(points, faces, modes, surface, start)
    before = np.linalg.norm(transform.apply(shape) - truth, axis=1).mean()
    shape, _, transform, _ = polish_with_warp(points, faces, modes, surface, transform, identity)
    after = np.linalg.norm(transform.apply(shape) - truth, axis=1).mean()
    assert after < 0.5 * before and after < 1.0, (before, after)


def test_tight_mask_cut_at_the_brows_is_accepted_on_its_core(head, template):
    """A mask cut tighter than the face region (at the brows and the jaw): less than the usual
    share of the region is found, but all of the eyes, nose and mouth are, so it is accepted;
    the same mask cut in half keeps neither and is refused."""
    from animateme_blender.core.errors import FitRefused
    from animateme_blender.core.fit.judge import MIN_COVERAGE, core_region

    subject, vertices, faces, _ = make_subject(head, 3, 4000)
    nose = subject[template.source_index[template.landmarks[30]]]
    keep = (((vertices[:, 0] - nose[0]) / 50) ** 2 + ((vertices[:, 1] - nose[1] - 5) / 72) ** 2 < 1) & \
        (vertices[:, 2] > nose[2] - 75)

    def cut(mask):
        index = np.cumsum(mask) - 1
        return vertices[mask], index[faces[mask[faces].all(1)]]

    fit = fit_template(*cut(keep), template)
    error = np.linalg.norm(fit.vertices - subject[template.source_index], axis=1)[core_region(template)]
    assert fit.score.coverage < MIN_COVERAGE and fit.score.accepted, fit.score.describe()
    assert error.mean() < 1.5, error.mean()   # where the mask has the face
    with pytest.raises(FitRefused):
        fit_template(*cut(keep & (vertices[:, 0] > nose[0] + 5)), template)


def test_spread_rotations_cover_every_rotation():
    """The pose search's spread starts are proper rotations and leave no rotation far from one:
    with the 24 axis-aligned ones, any pose is within ~50 degrees of a start (measured 27 mean)."""
    from animateme_blender.core.fit.pose import SPREAD, _proper_signed_permutations

    starts = np.array(SPREAD + _proper_signed_permutations())
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", starts, starts), np.broadcast_to(np.eye(3), starts.shape),
                               atol=1e-9)
    assert np.linalg.det(starts).min() > 0.999
    poses = Rotation.random(2000, random_state=3).as_matrix()
    cosine = (np.einsum("qij,sij->qs", poses, starts).max(1) - 1) / 2
    nearest = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert nearest.max() < 60.0 and nearest.mean() < 32.0, (nearest.max(), nearest.mean())


def test_the_batched_pose_search_keeps_every_start_apart_and_finds_the_pose(head):
    """icp_many runs all starts in one batch: each start ends where it ends alone (the batch couples
    no start to another), and starts near the true pose move towards it: the robust residual
    falls and the turn left shrinks (points lifted off the head itself, so the truth is scale 1, no
    turn, the head's centre, residual 0)."""
    from scipy.spatial.transform import Rotation as turns

    from animateme_blender.core.fit.pose import SPREAD, icp, icp_many
    from animateme_blender.core.fit.surface import build_surface

    vertices, faces = head["neutral"], head["faces"]
    surface = build_surface(vertices, faces, np.arange(len(vertices)), np.random.default_rng(0))
    centre = vertices.mean(0)
    points = vertices[::7][:150] - centre
    rng = np.random.default_rng(1)
    near = turns.from_rotvec(rng.normal(0, np.radians(6.0), (4, 3))).as_matrix()
    rotations = np.concatenate([np.array(SPREAD[:8]), near])
    scales = np.concatenate([np.linspace(0.8, 1.2, 8), [0.95, 1.05, 1.0, 1.0]])
    translations = centre + np.concatenate([rng.normal(0, 20.0, (8, 3)), rng.normal(0, 3.0, (4, 3))])
    together = icp_many(points, surface, scales, rotations, translations, 30, 15.0)
    for k, (scale, rotation, shift, residual) in enumerate(together):
        alone = icp(points, surface, scales[k], rotations[k], translations[k], 30, 15.0)
        assert abs(scale - alone[0]) <= 1e-6 * alone[0]
        np.testing.assert_allclose(rotation, alone[1], atol=1e-6)
        np.testing.assert_allclose(shift, alone[2], atol=1e-4 * alone[0])
        assert abs(residual - alone[3]) <= 1e-6 * max(alone[3], 1.0)

    def turned(rotation):
        return np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))

    started = icp_many(points, surface, scales[8:], rotations[8:], translations[8:], 0, 15.0)
    for (scale, rotation, shift, residual), start in zip(together[8:], started):
        assert residual < 0.5 * start[3] and turned(rotation) < turned(start[1])


def test_bench_register_times_every_stage_the_fit_reports():
    """Every progress message the fit sends opens a stage bench-register times (StageClock): a
    renamed message would leave its time out of the stage table."""
    import ast
    import inspect

    from animateme.bench_registration import STAGES, StageClock
    from animateme_blender.core.fit import fitter

    sent = {node.args[1].value for node in ast.walk(ast.parse(inspect.getsource(fitter)))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "report" and len(node.args) == 2
            and isinstance(node.args[1], ast.Constant)}
    assert len(sent) >= 6 and sent - {"fit done"} <= set(STAGES), sent - set(STAGES)
    clock = StageClock()
    for message in ("checking the mesh", "choosing the pose", "fitting the face model", "refining the fit", "fit done"):
        clock(0.0, message)
    assert set(clock.seconds) == {"search", "model fit", "polish"} and min(clock.seconds.values()) >= 0.0


def test_a_real_landmark_is_the_surface_patch_its_vertex_stands_for():
    """Real meshes' landmarks are vertices; on a coarse mesh the annotated vertex is only the corner
    nearest the true point, so the benchmark measures to that vertex's cell (the surface nearer to it
    than to any other vertex): zero inside it, the distance to its edge outside."""
    from animateme.bench_registration import Case, cell_landmark_error

    step = 10.0      # a coarse grid: 10 mm edges, two triangles per square
    ii, jj = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    vertices = np.column_stack([ii.ravel() * step, jj.ravel() * step, np.zeros(25)])
    index = lambda i, j: 5 * i + j   # noqa: E731
    faces = np.array([t for i in range(4) for j in range(4) for t in
                      ((index(i, j), index(i + 1, j), index(i + 1, j + 1)), (index(i, j), index(i + 1, j + 1), index(i, j + 1)))])
    case = Case("real", "grid", vertices, faces, landmarks={"nose_tip": index(2, 2)}, mm_per_unit=0.5)
    centre = vertices[index(2, 2)]
    assert cell_landmark_error(centre, case, index(2, 2)) == 0.0
    # 3 units towards a neighbour (its cell starts at 5): inside, so nothing, though 1.5 mm from the vertex.
    assert cell_landmark_error(centre + [3.0, 0, 0], case, index(2, 2)) < 0.05
    # 8 units towards it and 4 above the surface: 3 beyond the cell's edge, 4 above, in mm (0.5 per unit).
    error = cell_landmark_error(centre + [8.0, 0, 4.0], case, index(2, 2))
    assert abs(error - 0.5 * np.hypot(3.0, 4.0)) < 0.5 * step / 24 + 1e-9


def test_the_nose_detector_finds_a_nose_on_a_ball_in_any_unit():
    """The measured (unused) geometric detector: a 20 mm bump on a 90 mm ball, in metres and turned,
    is the most nose-like point; the bare ball scores far lower."""
    from animateme.nose_detector import detect_nose_tip

    vertices, _ = sphere(90.0, rows=60, columns=90)
    direction = np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93])
    angle = np.arccos(np.clip(vertices @ direction / 90.0, -1, 1))
    bumped = vertices * (1 + 20.0 / 90.0 * np.exp(-(angle / 0.2) ** 2))[:, None]
    turn = Rotation.from_euler("xyz", [40, -70, 15], degrees=True).as_matrix()
    index, score = detect_nose_tip(0.001 * bumped @ turn.T)
    assert np.degrees(angle[index]) < 6.0
    _, ball_score = detect_nose_tip(0.001 * vertices @ turn.T)
    assert ball_score < 0.5 * score


def test_an_open_mouth_is_fitted_as_an_expression_of_the_face(head, template):
    """A head sculpted with its jaw dropped: the fit opens the template's jaw with the face model's
    mouth shapes, so the template's lips land on the input's (fitted by identity alone, the lower
    face was 10-25 mm off and accepted); the mouth's expression is kept apart, and the face the
    model is conditioned on (neutral_space) is the same head with its mouth closed."""
    from animateme_blender.core.fit.judge import face_region

    weights = np.random.default_rng([SEED, 11]).standard_normal(len(head["modes"]))
    subject = head["neutral"] + np.tensordot(weights, head["modes"], axes=1)
    opened = subject + 0.9 * head["expressions"][head["names"].index("jawOpen")]
    vertices, faces, _ = remesh(opened, head["faces"], 3000)
    fit = fit_template(vertices, faces, template)
    region = face_region(template)
    truth = opened[template.source_index]
    error = np.linalg.norm(fit.transform.apply(fit.template_space) - truth, axis=1)[region].mean()
    assert error < 1.0, error
    assert np.linalg.norm(fit.expression, axis=1).max() > 5.0          # the jaw was opened by the fit
    closed = fit.transform.apply(fit.neutral_space)
    closed_error = np.linalg.norm(closed - subject[template.source_index], axis=1)[region].mean()
    assert closed_error < 0.25 * np.linalg.norm(truth - subject[template.source_index], axis=1)[region].mean()


def test_the_bounded_gauss_newton_step_holds_weights_in_their_range():
    """model_fit's step with bounded weights (the mouth shapes, 0-1): every weight ends inside its
    range, one the free step carried across a bound sits on it, and the rest (similarity and
    free weights) are the least-squares answer given it, so they make up for it (the step's
    cost is no higher than clipping the free step afterwards, which leaves them as they were)."""
    from animateme_blender.core.fit.model_fit import _bounded_step

    rng = np.random.default_rng(5)
    matrix = rng.standard_normal((60, 7 + 6))
    matrix[:, 7:] += 0.8 * matrix[:, :6]                   # weights coupled to the similarity
    wanted = np.concatenate([rng.standard_normal(7), [1.2, -1.0, 0.3, 0.1, 2.0, -2.0]])  # two past a bound
    rhs = matrix @ wanted + 0.1 * rng.standard_normal(60)
    normal, gradient = matrix.T @ matrix, matrix.T @ rhs
    weights = np.full(6, 0.5)
    bounds = np.array([[0.0, 1.0]] * 4 + [[-np.inf, np.inf]] * 2)
    free_step = np.linalg.solve(normal, gradient)
    assert ((weights + free_step[7:])[:4] < 0).any() and ((weights + free_step[7:])[:4] > 1).any()
    step = _bounded_step(normal, gradient, weights, bounds)
    new = weights + step[7:]
    assert (new >= bounds[:, 0] - 1e-12).all() and (new <= bounds[:, 1] + 1e-12).all()
    held = np.concatenate([np.zeros(7, bool), np.isclose(new, bounds[:, 0]) | np.isclose(new, bounds[:, 1])])
    assert held.any()
    stationary = normal @ step - gradient                 # zero for every unknown not held
    assert np.abs(stationary[~held]).max() < 1e-8 * np.abs(gradient).max()
    clipped = free_step.copy()
    clipped[7:] = np.clip(weights + free_step[7:], bounds[:, 0], bounds[:, 1]) - weights
    cost = lambda d: np.sum((matrix @ d - rhs) ** 2)      # noqa: E731
    assert cost(step) <= cost(clipped) + 1e-9
    np.testing.assert_allclose(_bounded_step(normal, gradient, weights, None), free_step)


def test_a_ball_is_refused_at_the_pose_search_and_a_forced_fit_says_the_same(template, monkeypatch):
    """No searched pose of a ball shows a nose: it is refused before any full fit (the model fit
    runs only the pose search's quick fits), and a forced fit records the same refusal."""
    from animateme_blender.core.errors import FitRefused
    from animateme_blender.core.fit import fitter, judge, model_fit

    vertices, faces = sphere(90.0, 30, 40)
    full_fits = []
    quick = model_fit.model_fit

    def counted(*args, **kwargs):
        if kwargs.get("iterations", 80) > fitter.QUICK_ITERATIONS:
            full_fits.append(1)
        return quick(*args, **kwargs)

    monkeypatch.setattr(fitter, "model_fit", counted)
    with pytest.raises(FitRefused) as refused:
        fit_template(vertices, faces, template)
    assert refused.value.problem == judge.NO_NOSE and not full_fits
    forced = fit_template(vertices, faces, template, require_face=False)
    assert forced.score.forced and forced.score.problem == judge.NO_NOSE and full_fits


def test_a_coarse_model_fit_lands_where_the_full_one_does(template):
    """The quick fits' coarse level: farthest-point sampling leaves no template vertex farther from
    the subset than the subset's own closest pair (its covering guarantee), and a model fit pulled
    by those vertices alone recovers a known identity about as closely as the full fit; its last
    steps at full resolution close the rest."""
    from scipy.spatial import cKDTree

    from animateme_blender.core.fit.fitresult import Similarity
    from animateme_blender.core.fit.model_fit import model_fit, spread_subset
    from animateme_blender.core.fit.pose import rotation_from_vector
    from animateme_blender.core.fit.surface import build_surface

    points = np.asarray(template.vertices, dtype=np.float64)
    points = points - points.mean(0)
    faces = np.asarray(template.faces, dtype=np.int64)
    modes = np.asarray(template.identity_modes, dtype=np.float64)[:30]
    subset = spread_subset(points, 400)
    assert len(np.unique(subset)) == 400 and np.all(np.diff(subset) > 0)
    assert np.array_equal(subset, spread_subset(points, 400))
    cover = cKDTree(points[subset]).query(points)[0].max()
    closest_pair = cKDTree(points[subset]).query(points[subset], k=2)[0][:, 1].min()
    assert cover <= closest_pair + 1e-9

    truth = points + np.tensordot(0.8 * np.random.default_rng(5).standard_normal(len(modes)), modes, axes=1)
    surface = build_surface(truth, faces, np.arange(len(truth)), np.random.default_rng(0))
    start = Similarity(1.1, rotation_from_vector(np.array([0.1, -0.15, 0.05])), np.array([4.0, -3.0, 2.0]))
    error = {}
    for name, options in (("full", {}), ("coarse", {"coarse": subset}), ("then fine", {"coarse": subset, "fine_from": 16})):
        shape, _, transform, _ = model_fit(points, faces, modes, surface, start, iterations=24, **options)
        error[name] = np.linalg.norm(transform.apply(shape) - truth, axis=1).mean()
    assert error["full"] < 1.5, error
    assert error["coarse"] < error["full"] + 0.5 and error["then fine"] < error["full"] + 0.2, error


def test_the_coarse_level_leaves_the_procedural_heads_fit_where_the_full_one_puts_it(monkeypatch):
    """On the bundled template (the session's smaller one is never coarse enough to show it): the
    procedural head's mouth is only a groove. Jaw starts compared at the coarse level alone read it
    as open (the fit 1.6 mm off its full-resolution self over the face region, and its lips then
    crinkled in angry and disgust); their last steps at full resolution keep the fit where an
    all-fine fit puts it."""
    from animateme.paths import template_path
    from animateme.remesh import synthetic_head_landmarks
    from animateme_blender.core.fit import fitter
    from animateme_blender.core.fit.judge import face_region
    from animateme_blender.core.template import Template

    template = Template.load(template_path())

    vertices, faces = synthetic_head()
    landmarks = synthetic_head_landmarks(vertices)
    coarse = fit_template(vertices, faces, template, landmarks=landmarks)
    monkeypatch.setattr(fitter, "COARSE_INPUT", np.inf)          # every fit at full resolution
    fine = fit_template(vertices, faces, template, landmarks=landmarks)
    apart = np.linalg.norm(coarse.template_space - fine.template_space, axis=1)[face_region(template)]
    assert coarse.score.accepted and apart.mean() < 0.3, apart.mean()
    assert np.linalg.norm(coarse.expression - fine.expression) < 0.2 * np.linalg.norm(fine.expression)
