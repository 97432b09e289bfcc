"""The template: an exact vertex subset of the skin, a clean mesh, spirals, up-sampling, fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from animateme.template_build import CM_TO_MM, build_template
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.template import Template, mesh_fingerprint


def test_template_vertices_are_exactly_face_model_vertices(face_model, template):
    np.testing.assert_array_equal(template.vertices, face_model.neutral[template.source_index] * CM_TO_MM)
    assert len(np.unique(template.source_index)) == template.num_vertices
    np.testing.assert_array_equal(template.identity_modes[3], face_model.identity_modes[3, template.source_index] * CM_TO_MM)


def test_template_is_a_manifold_disk_with_mouth_and_eye_holes(template):
    faces = template.faces
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() <= 2
    assert set(np.unique(faces)) == set(range(template.num_vertices))  # no isolated vertex
    euler = template.num_vertices - len(unique) + len(faces)
    assert euler == 2 - 4  # genus 0 with four boundaries: the rim, the mouth and two eyes


def test_faces_point_out_of_the_face(template):
    v, f = template.vertices, template.faces
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    nose = int(np.argmax(v[:, 2]))
    around_nose = np.any(f == nose, axis=1)
    assert normals[around_nose, 2].sum() > 0  # +Z is where the face looks


def test_landmarks_are_template_vertices_at_the_landmark_positions(face_model, template):
    np.testing.assert_allclose(template.vertices[template.landmarks],
                               face_model.neutral[face_model.landmarks68] * CM_TO_MM)


def test_the_nose_tip_is_the_pronasale_and_turns_with_the_face(face_model, template):
    """Multi-PIE point 30 sits above the most forward point of the nose; the template's nose tip is
    that point (not a vertex of the coarse template), and it moves rigidly with the face (its
    offset from the coarse triangle is in mm: the point is taken in the template frame)."""
    from scipy.spatial.transform import Rotation

    from animateme_blender.core.fit.landmarks import template_landmark_points

    skin = face_model.neutral * CM_TO_MM
    point30 = skin[face_model.landmarks68[30]]
    near = np.linalg.norm(skin - point30, axis=1) < 15.0
    pronasale = skin[near][np.argmax(skin[near, 2])]
    nose = template_landmark_points(template, ["nose_tip", "mouth_left"])
    at_rest = nose.on(template.vertices)
    np.testing.assert_allclose(at_rest[0], pronasale, atol=1e-3)
    np.testing.assert_allclose(at_rest[1], template.vertices[template.landmarks[54]], atol=1e-5)
    rotation = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).as_matrix()
    moved = nose.on(template.vertices @ rotation.T + np.array([3.0, -7.0, 11.0]))
    np.testing.assert_allclose(moved, at_rest @ rotation.T + np.array([3.0, -7.0, 11.0]), atol=1e-3)


def test_a_template_file_without_landmark_points_keeps_its_vertices(template, tmp_path):
    """Templates built before the surface landmarks load, their landmarks the vertices."""
    from dataclasses import fields

    path = tmp_path / "old.npz"
    np.savez(path, **{f.name: getattr(template, f.name) for f in fields(template)
                      if not f.name.startswith("landmark_")})
    old = Template.load(path)
    assert old.fingerprint == template.fingerprint
    np.testing.assert_array_equal(old.landmark_index[:, 0], template.landmarks)
    assert not old.landmark_offset.any() and (old.landmark_weight[:, 0] == 1).all()


def test_spirals_start_at_their_vertex_and_stay_in_range(template):
    spirals = template.spirals
    assert spirals.shape == (template.num_vertices, 24)
    np.testing.assert_array_equal(spirals[:, 0], np.arange(template.num_vertices))
    assert spirals.min() >= 0 and spirals.max() < template.num_vertices


def test_upsampling_is_exact_at_template_vertices_and_close_elsewhere(face_model, template):
    skin = face_model.neutral[template.full_index] * CM_TO_MM
    up = template.upsample(template.vertices)
    np.testing.assert_allclose(up[template.source_index], template.vertices, atol=1e-4)
    np.testing.assert_allclose(template.upsample_weight.sum(1), 1.0, atol=1e-5)
    # Within the covered face the up-sampled surface is within a few mm of the full skin.
    error = np.linalg.norm(up - skin, axis=1)
    assert np.median(error) < 1.5, np.median(error)
    # Up-sampled expression motion matches the full-resolution motion closely.
    jaw = face_model.expression("jawOpen") * CM_TO_MM
    moved = template.upsample(jaw[template.source_index])
    assert np.abs(moved - jaw[template.full_index]).mean() < 0.3


def test_fingerprint_changes_with_geometry_and_topology(template):
    assert template.fingerprint == mesh_fingerprint(template.vertices, template.faces)
    assert mesh_fingerprint(template.vertices + 0.01, template.faces) != template.fingerprint
    assert mesh_fingerprint(template.vertices, template.faces[::-1]) != template.fingerprint
    assert template.fingerprint.startswith(f"v{template.num_vertices}-")


def test_save_and_load_round_trip(template, tmp_path):
    template.save(tmp_path / "template.npz")
    loaded = Template.load(tmp_path / "template.npz")
    assert loaded.fingerprint == template.fingerprint
    np.testing.assert_array_equal(loaded.spirals, template.spirals)
    assert not list(tmp_path.glob("*.partial*"))


def test_loading_a_tampered_template_fails(template, tmp_path):
    template.save(tmp_path / "template.npz")
    arrays = dict(np.load(tmp_path / "template.npz"))
    arrays["vertices"] = arrays["vertices"] * 1.01
    np.savez(tmp_path / "template.npz", **arrays)
    with pytest.raises(AnimateMeError, match="fingerprint"):
        Template.load(tmp_path / "template.npz")


def test_missing_template_says_what_to_run(tmp_path):
    with pytest.raises(AnimateMeError, match="animateme data template"):
        Template.load(tmp_path / "none.npz")


def test_other_fingerprint_is_refused(template):
    with pytest.raises(AnimateMeError, match="same template"):
        template.check_fingerprint("v12-0000", "model.onnx")


def test_template_size_out_of_range_is_refused(face_model):
    with pytest.raises(AnimateMeError, match="between 200"):
        build_template(face_model, num_vertices=50, show_progress=False)
