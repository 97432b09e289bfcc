"""The face-model loader: the packed npz, a FaceXModel folder of OBJs, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from animateme.facemodel import (NEUTRAL_OBJ, FaceModel, load_face_model, triangulate,
                                 write_facex_folder)
from animateme_blender.core.errors import AnimateMeError


def test_packed_model_has_the_documented_shapes(face_model):
    assert face_model.neutral.shape == (26719, 3)
    assert face_model.identity_modes.shape == (100, 26719, 3)
    assert face_model.expression_modes.shape[0] == len(face_model.expression_names) == 57
    assert face_model.landmarks68.shape == (68,)
    assert face_model.skin_triangles().max() < 9409


def small_model(face_model: FaceModel) -> FaceModel:
    """The first two identities and three expressions, to keep OBJ writing fast."""
    keep = ["jawOpen", "mouthSmile_L", "browInnerUp_L"]
    index = [list(face_model.expression_names).index(n) for n in keep]
    return FaceModel(face_model.neutral, face_model.faces, face_model.face_material, face_model.materials,
                     face_model.identity_modes[:2], face_model.expression_modes[index], np.asarray(keep))


@pytest.fixture(scope="module")
def facex_folder(face_model, tmp_path_factory):
    """Written once: OBJ text for 26k vertices is slow to write."""
    return write_facex_folder(small_model(face_model), tmp_path_factory.mktemp("facex") / "FaceXModel")


@pytest.fixture
def facex_copy(facex_folder, tmp_path):
    return shutil.copytree(facex_folder, tmp_path / "FaceXModel")


def test_facex_folder_reads_back_what_was_written(face_model, facex_folder):
    model = small_model(face_model)
    loaded = load_face_model(facex_folder)
    np.testing.assert_allclose(loaded.neutral, model.neutral, atol=1e-5)
    np.testing.assert_allclose(loaded.identity_modes, model.identity_modes, atol=2e-5)
    for name in model.expression_names:
        np.testing.assert_allclose(loaded.expression(name), model.expression(name), atol=2e-5)
    assert set(loaded.expression_names) == set(model.expression_names)
    np.testing.assert_array_equal(loaded.faces, model.faces)
    assert list(loaded.materials[loaded.face_material]) == list(model.materials[model.face_material])
    np.testing.assert_array_equal(loaded.skin_triangles(), model.skin_triangles())


def test_folder_expressions_follow_the_packed_order(facex_folder):
    loaded = load_face_model(facex_folder)
    # jawOpen comes before mouthSmile_L in the model's listed order; browInnerUp_L before both.
    assert list(loaded.expression_names) == ["browInnerUp_L", "jawOpen", "mouthSmile_L"]


def test_missing_file_says_how_to_point_at_the_model(tmp_path):
    with pytest.raises(AnimateMeError, match="--face-model"):
        load_face_model(tmp_path / "nowhere.npz")


def test_corrupt_npz_is_a_one_line_error(tmp_path):
    broken = tmp_path / "ict_facekit.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(AnimateMeError, match="corrupt or truncated"):
        load_face_model(broken)


def test_npz_without_the_model_arrays_is_refused(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(AnimateMeError, match="missing neutral"):
        load_face_model(other)


def test_folder_with_a_missing_identity_names_it(facex_copy):
    folder = facex_copy
    (folder / "identity000.obj").unlink()
    with pytest.raises(AnimateMeError, match="identity000.obj is missing"):
        load_face_model(folder)


def test_folder_with_a_mismatched_obj_names_it(facex_copy):
    folder = facex_copy
    (folder / "jawOpen.obj").write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(AnimateMeError, match=r"jawOpen.obj has 2 vertices"):
        load_face_model(folder)


def test_folder_without_the_neutral_is_refused(tmp_path):
    (tmp_path / "identity000.obj").write_text("v 0 0 0\n")
    with pytest.raises(AnimateMeError, match=NEUTRAL_OBJ):
        load_face_model(tmp_path)


def test_triangulate_keeps_winding_and_skips_padding():
    polys = np.array([[0, 1, 2, 3], [4, 5, 6, -1]])
    assert triangulate(polys).tolist() == [[0, 1, 2], [4, 5, 6], [0, 2, 3]]
