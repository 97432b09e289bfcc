"""Bad input to the registration: a clear AnimateMeError (or documented behaviour), inputs never
modified (they are passed read-only, so any write would raise)."""

from __future__ import annotations

import pytest

pytest.importorskip("meshmonk", reason="remeshes its inputs with meshmonk, whose wheel does not import on Python 3.13")

import numpy as np

from animateme.remesh import remesh, triangulate
from animateme_blender.core.errors import AnimateMeError, FitRefused
from animateme_blender.core.fit.registration import fit_template
from mesh_fixtures import sphere


def read_only(*arrays):
    out = []
    for array in arrays:
        array = np.array(array)
        array.flags.writeable = False
        out.append(array)
    return out


@pytest.fixture(scope="module")
def face(face_model):
    """A neutral face-model head remeshed to ~2500 vertices, mm."""
    materials = list(face_model.materials)
    keep = np.isin(face_model.face_material, [materials.index("M_Face"), materials.index("M_BackHead")])
    faces = triangulate(face_model.faces[keep])
    neutral = face_model.neutral[: int(faces.max()) + 1].astype(np.float64) * 10
    vertices, faces, _ = remesh(neutral, faces, 2500)
    return vertices, faces


def cube(n=20, size=150.0):
    vertices, faces = [], []
    lin = np.linspace(-1, 1, n)
    for axis in range(3):
        for sign in (-1, 1):
            a, b = np.meshgrid(lin, lin, indexing="ij")
            points = np.zeros((n, n, 3))
            others = [k for k in range(3) if k != axis]
            points[..., axis], points[..., others[0]], points[..., others[1]] = sign, a, b
            g = np.arange(n * n).reshape(n, n) + sum(len(v) for v in vertices)
            vertices.append(points.reshape(-1, 3))
            faces.append(np.concatenate([np.stack([g[:-1, :-1], g[1:, :-1], g[1:, 1:]], -1).reshape(-1, 3),
                                         np.stack([g[:-1, :-1], g[1:, 1:], g[:-1, 1:]], -1).reshape(-1, 3)]))
    return np.concatenate(vertices) * size / 2, np.concatenate(faces)


@pytest.mark.parametrize("vertices, faces, message", [
    (np.zeros((0, 3)), np.zeros((0, 3), int), "no usable vertices"),
    (np.zeros((5, 2)), np.zeros((1, 3), int), "no usable vertices"),
    (np.zeros((400, 3)), np.zeros((0, 3), int), "no faces"),
    (np.zeros((400, 3)), np.zeros((10, 4), int), "must be triangles"),
    (np.random.default_rng(0).normal(size=(400, 3)), np.array([[0, 1, 400]]), "outside the vertex list"),
    (np.random.default_rng(0).normal(size=(100, 3)), np.arange(99).reshape(33, 3), "at least 300"),
    ([["a", "b", "c"]], [[0, 0, 0]], "numeric arrays"),
])
def test_malformed_meshes_are_refused_with_what_to_do(template, vertices, faces, message):
    with pytest.raises(AnimateMeError, match=message):
        fit_template(vertices, faces, template)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates_are_refused(face, template, bad):
    vertices = np.array(face[0])
    vertices[[3, 70]] = bad
    vertices, faces = read_only(vertices, face[1])
    with pytest.raises(AnimateMeError, match="NaN or infinite"):
        fit_template(vertices, faces, template)


def test_only_degenerate_faces_are_refused(template):
    vertices = np.random.default_rng(1).normal(size=(500, 3))
    faces = np.stack([np.arange(500), np.arange(500), (np.arange(500) + 1) % 500], 1)  # repeated corner
    with pytest.raises(AnimateMeError, match="degenerate"):
        fit_template(*read_only(vertices, faces), template)


def test_degenerate_faces_and_non_manifold_edges_are_ignored(face, template):
    """Documented: zero-area faces are dropped; non-manifold edges (a fin of extra triangles on
    one edge) and duplicate faces do not stop the fit."""
    vertices, faces = face
    a, b = faces[0, 0], faces[0, 1]
    extra_vertices = vertices[[a, b]].mean(0) + np.array([[0, 0, 5.0], [0, 5.0, 0], [5.0, 0, 0]])
    fins = np.array([[a, b, len(vertices)], [a, b, len(vertices) + 1], [a, b, len(vertices) + 2]])
    degenerate = np.array([[a, a, b], [5, 6, 5]])
    all_vertices = np.concatenate([vertices, extra_vertices])
    all_faces = np.concatenate([faces, fins, degenerate, faces[:50]])
    before = all_vertices.copy()
    fit = fit_template(*read_only(all_vertices, all_faces), template)
    assert fit.score.accepted and fit.score.residual_mm < 0.5
    np.testing.assert_array_equal(all_vertices, before)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["sphere", "cube"])
def test_a_sphere_or_a_cube_is_refused_by_the_score(template, shape):
    vertices, faces = sphere() if shape == "sphere" else cube()
    with pytest.raises(FitRefused) as refused:
        fit_template(*read_only(vertices, faces), template)
    assert refused.value.remedies[0] == "landmarks" and "force" in refused.value.remedies


@pytest.mark.slow
def test_face_cut_in_half_is_refused_unless_forced(face, template):
    """Documented: half a face is refused (too little of the face region found, or the model
    stretched to cover it), with what to do; forced (require_face=False), the fit is returned
    with the refusal recorded."""
    vertices, faces = face
    keep = vertices[:, 0] > 5.0
    kept_faces = faces[keep[faces].all(1)]
    index = np.cumsum(keep) - 1
    half_vertices, half_faces = read_only(vertices[keep], index[kept_faces])
    with pytest.raises(FitRefused) as refused:
        fit_template(half_vertices, half_faces, template)
    assert refused.value.remedies == ("landmarks", "region", "force")
    fit = fit_template(half_vertices, half_faces, template, require_face=False)
    assert fit.score.forced and fit.score.problem == refused.value.problem
    assert np.isfinite(fit.vertices).all()


def test_vertex_group_errors(face, template):
    vertices, faces = read_only(*face)
    with pytest.raises(AnimateMeError, match="vertex group"):
        fit_template(vertices, faces, template, part=np.array([], dtype=int))
    with pytest.raises(AnimateMeError, match="vertex group\\) has"):
        fit_template(vertices, faces, template, part=np.arange(50))
    with pytest.raises(AnimateMeError, match="one entry per vertex"):
        fit_template(vertices, faces, template, part=np.ones(10, dtype=bool))


def test_landmark_errors(face, template):
    vertices, faces = read_only(*face)
    with pytest.raises(AnimateMeError, match="unknown landmark"):
        fit_template(vertices, faces, template, landmarks={"nose": 3, "chin": 4, "eye_outer_left": 5})
    with pytest.raises(AnimateMeError, match="at least 3"):
        fit_template(vertices, faces, template, landmarks={"nose_tip": 3})
    with pytest.raises(AnimateMeError, match="outside the mesh"):
        fit_template(vertices, faces, template, landmarks={"nose_tip": 3, "chin": 4, "eye_outer_left": 10 ** 7})


def test_cancel_stops_the_fit(face, template):
    with pytest.raises(AnimateMeError, match="cancelled"):
        fit_template(*read_only(*face), template, cancel=lambda: True)


def test_too_many_vertices_is_refused_before_any_copy(template):
    """Beyond MAX_VERTICES the message comes at once (a zero-memory broadcast view stands in for
    the huge array). Up to it the fit works on a random subset of MAX_FIT_POINTS vertices: a
    2-million-vertex head fits in ~30 s (see the report), binding is chunked."""
    from animateme_blender.core.fit.registration import MAX_VERTICES

    huge = np.broadcast_to(np.zeros(3), (MAX_VERTICES + 1, 3))
    with pytest.raises(AnimateMeError, match="decimate it first"):
        fit_template(huge, np.zeros((1, 3), int), template)


def test_broken_meshes_get_the_fix_that_works(face, template):
    """NaN/inf names the count and the fix (not 'Clean Up'); an unwelded mesh is told to merge by
    distance; a point cloud to add faces. Each is a FitRefused whose remedies are mesh fixes."""
    vertices, faces = face
    broken = np.array(vertices)
    broken[[3, 70]] = np.nan
    with pytest.raises(FitRefused) as refused:
        fit_template(*read_only(broken, faces), template)
    assert refused.value.remedies == ("remove_nonfinite",)
    assert f"2 of the mesh's {len(vertices):,} vertices" in str(refused.value) and "Clean Up" not in str(refused.value)
    unwelded = vertices[faces.ravel()]                       # every triangle its own three vertices
    with pytest.raises(FitRefused) as refused:
        fit_template(*read_only(unwelded, np.arange(len(unwelded)).reshape(-1, 3)), template)
    assert refused.value.remedies == ("merge_by_distance",)
    with pytest.raises(FitRefused) as refused:
        fit_template(*read_only(vertices, np.zeros((0, 3), int)), template)
    assert refused.value.remedies == ("add_faces",) and "no faces" in refused.value.problem


def test_refusal_names_only_the_front_ends_options():
    error = FitRefused("only part of a face was found on the mesh")
    assert error.remedies == ("landmarks", "region", "force")
    assert str(error).startswith("only part of a face was found on the mesh: give landmarks")
    cli = error.message({"landmarks": "--landmarks", "region": "--region", "force": "--force"})
    assert cli == "only part of a face was found on the mesh: --landmarks; or --region; or --force."
    with pytest.raises(ValueError):
        FitRefused("x", ("reinstall",))
