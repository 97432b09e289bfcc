"""Property tests of the binding and transfer maths on small meshes made here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from animateme_blender.core.fit.registration import Fit, FitScore, Similarity
from animateme_blender.core.carry.transfer import bind, closest_points_on_triangles, smoothstep_fade

coordinates = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
point = arrays(np.float64, 3, elements=coordinates)


def _grid_template(n=8, spacing=10.0, bend=0.02):
    """A gently curved n x n grid (mm) standing in for a fitted template."""
    x, y = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing, indexing="ij")
    x, y = x - x.mean(), y - y.mean()
    vertices = np.stack([x, y, -bend * (x ** 2 + y ** 2)], -1).reshape(-1, 3)
    g = np.arange(n * n).reshape(n, n)
    faces = np.concatenate([np.stack([g[:-1, :-1], g[1:, :-1], g[1:, 1:]], -1).reshape(-1, 3),
                            np.stack([g[:-1, :-1], g[1:, 1:], g[:-1, 1:]], -1).reshape(-1, 3)])
    return vertices, faces


def _fit(scale=1.0, rotation=np.eye(3), translation=np.zeros(3)):
    vertices, faces = _grid_template()
    transform = Similarity(scale, np.asarray(rotation), np.asarray(translation, dtype=np.float64))
    return Fit(vertices=transform.apply(vertices), template_space=vertices, transform=transform,
               score=FitScore(0.1, 1.0), fingerprint="test", template_fingerprint="test",
               template_faces=faces)


similarities = st.builds(
    lambda s, r, t: (s, Rotation.from_rotvec(np.asarray(r)).as_matrix(), np.asarray(t)),
    st.floats(0.001, 100.0), arrays(np.float64, 3, elements=st.floats(-3, 3)),
    arrays(np.float64, 3, elements=st.floats(-1000, 1000)))


@settings(max_examples=200, deadline=None)
@given(point, point, point, point)
def test_closest_point_on_a_triangle_is_closest(p, a, b, c):
    area = np.linalg.norm(np.cross(b - a, c - a))
    if area < 1e-3:
        return   # degenerate triangles never occur in a template
    bary = closest_points_on_triangles(p[None], a[None], b[None], c[None])[0]
    assert bary.min() >= 0 and bary.sum() == pytest.approx(1.0)
    closest = bary @ np.stack([a, b, c])
    best = np.linalg.norm(p - closest)
    samples = np.random.default_rng(0).dirichlet(np.ones(3), 300) @ np.stack([a, b, c])
    others = np.linalg.norm(samples - p, axis=1)
    assert best <= others.min() + 1e-6 * (1 + others.min())
    assert best <= min(np.linalg.norm(p - a), np.linalg.norm(p - b), np.linalg.norm(p - c)) + 1e-9


def test_closest_on_mesh_searches_the_nearest_vertices_own_triangles():
    """A UV sphere: two poles of valence 24 beside vertices of valence 6 (the padded rows of the
    incidence table). The answer is the closest point over the triangles around the two nearest
    vertices, found here triangle by triangle."""
    from scipy.spatial import cKDTree

    from animateme_blender.core.geometry import closest_on_mesh, incident_triangles

    rows, columns = 8, 24
    theta, phi = np.meshgrid(np.linspace(0, np.pi, rows + 2)[1:-1], np.linspace(0, 2 * np.pi, columns, endpoint=False),
                             indexing="ij")
    ring = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1).reshape(-1, 3)
    vertices = np.concatenate([ring, [[0, 0, 1], [0, 0, -1]]]) * 50.0
    top, bottom = len(ring), len(ring) + 1
    g = np.arange(len(ring)).reshape(rows, columns)
    nxt = np.roll(g, -1, axis=1)
    faces = np.concatenate([np.stack([g[:-1], g[1:], nxt[1:]], -1).reshape(-1, 3),
                            np.stack([g[:-1], nxt[1:], nxt[:-1]], -1).reshape(-1, 3),
                            np.stack([np.full(columns, top), g[0], nxt[0]], -1),
                            np.stack([np.full(columns, bottom), nxt[-1], g[-1]], -1)])
    points = np.random.default_rng(1).normal(size=(400, 3)) * 30.0
    tree, incident = cKDTree(vertices), incident_triangles(faces, len(vertices))
    triangle, bary, closest = closest_on_mesh(points, vertices, faces, tree, incident)
    assert np.allclose(bary.sum(1), 1.0) and bary.min() >= 0.0
    assert np.allclose(np.einsum("nk,nkc->nc", bary, vertices[faces[triangle]]), closest)
    _, nearest = tree.query(points, k=2)
    for p, pair, found in zip(points, nearest, closest):
        around = [t for t, face in enumerate(faces) if set(face) & set(pair)]
        corners = vertices[faces[around]]
        best = closest_points_on_triangles(np.repeat(p[None], len(around), 0), corners[:, 0], corners[:, 1], corners[:, 2])
        distances = np.linalg.norm(np.einsum("nk,nkc->nc", best, corners) - p, axis=1)
        assert np.linalg.norm(found - p) <= distances.min() + 1e-9


@settings(max_examples=50, deadline=None)
@given(similarities, arrays(np.float64, (30, 3), elements=st.floats(-40, 40)))
def test_zero_deformation_moves_nothing_and_translation_moves_rigidly(similarity, points):
    scale, rotation, translation = similarity
    fit = _fit(scale, rotation, translation)
    user = fit.transform.apply(points)
    binding = bind(fit, user)
    template = fit.template_space
    assert np.abs(binding.apply(np.zeros((2,) + template.shape))).max() <= 1e-9 * (1 + scale)
    shift = np.array([1.5, -2.0, 0.7])
    moved = binding.apply(np.broadcast_to(shift, template.shape))
    expected = binding.weight[:, None] * (scale * shift @ rotation.T)
    np.testing.assert_allclose(moved, expected, atol=1e-6 * (1 + scale))


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, 3, elements=st.floats(-0.5, 0.5)), arrays(np.float64, (25, 3), elements=st.floats(-30, 30)))
def test_rigid_motion_of_the_template_moves_bound_vertices_rigidly(rotvec, points):
    fit = _fit()
    template = fit.template_space
    binding = bind(fit, points)
    rotation = Rotation.from_rotvec(rotvec).as_matrix()
    deform = template @ rotation.T - template + np.array([3.0, 1.0, -2.0])
    moved = binding.apply(deform)
    expected = (points @ rotation.T + np.array([3.0, 1.0, -2.0]) - points) * binding.weight[:, None]
    np.testing.assert_allclose(moved, expected, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (64, 3), elements=st.floats(-5, 5)), st.integers(0, 97),
       arrays(np.float64, 3, elements=st.floats(0.01, 1)))
def test_surface_points_follow_the_barycentric_interpolation(deform, triangle, weights):
    fit = _fit()
    template, faces = fit.template_space, fit.template_faces
    weights = weights / weights.sum()
    on_surface = weights @ template[faces[triangle]]
    binding = bind(fit, on_surface[None])
    assert binding.distance_mm[0] < 1e-9 and binding.weight[0] == 1.0
    # Bound to a triangle holding the point, the small offset term vanishes: pure interpolation.
    corners = faces[binding.triangle[0]]
    expected = binding.barycentric[0] @ deform[corners]
    np.testing.assert_allclose(binding.apply(deform)[0], expected, atol=1e-9)
    np.testing.assert_allclose(binding.barycentric[0] @ template[corners], on_surface, atol=1e-9)


@given(st.floats(0, 100), st.floats(0, 100))
def test_fade_is_monotone_and_bounded(a, b):
    start, end = 2.0, 15.0
    fa, fb = smoothstep_fade(a, start, end), smoothstep_fade(b, start, end)
    assert 0.0 <= fa <= 1.0 and 0.0 <= fb <= 1.0
    if a <= b:
        assert fa >= fb
    if a <= start:
        assert fa == 1.0
    if a >= end:
        assert fa == 0.0


def test_far_vertices_do_not_move_and_rigid_parts_move_as_one():
    fit = _fit()
    template, faces = fit.template_space, fit.template_faces
    near = template[:10] + np.array([0.0, 0.0, 0.5])
    far = template[:5] + np.array([0.0, 0.0, -60.0])            # deep behind the surface
    shell = template[20:23] + np.array([0.0, 0.0, 1.0])         # a separate 3-vertex part on the skin
    user = np.concatenate([near, far, shell])
    user_faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [8, 9, 0],   # the face part
                           [10, 11, 12], [15, 16, 17]])                           # two more parts
    deform = np.random.default_rng(1).normal(size=template.shape)
    binding = bind(fit, user, user_faces)
    moved = binding.apply(deform)
    assert np.abs(moved[10:15]).max() == 0.0                      # beyond the fade: still
    np.testing.assert_allclose(moved[15], moved[16])              # the shell: one translation
    np.testing.assert_allclose(moved[15], moved[17])
    assert np.abs(moved[:10]).max() > 0.1


def test_vertices_outside_the_face_region_stay_exactly_still():
    """A region (the user's vertex group): vertices on the template's surface but outside it do
    not move at all; those inside follow the template."""
    fit = _fit()
    user = fit.template_space[:20] + np.array([0.0, 0.0, 0.3])
    region = np.zeros(len(user), dtype=bool)
    region[:8] = True
    deform = np.random.default_rng(2).normal(size=fit.template_space.shape)
    moved = bind(fit, user, region=region).apply(deform)
    assert np.abs(moved[8:]).max() == 0.0 and np.abs(moved[:8]).max() > 0.1
    np.testing.assert_array_equal(moved, bind(fit, user, region=np.arange(8)).apply(deform))


def test_apply_refuses_wrong_shapes_and_nan():
    from animateme_blender.core.errors import AnimateMeError

    fit = _fit()
    binding = bind(fit, fit.template_space[:5])
    with pytest.raises(AnimateMeError, match="deformations must be"):
        binding.apply(np.zeros((2, 7, 3)))
    bad = np.zeros((1,) + fit.template_space.shape)
    bad[0, 3, 1] = np.nan
    with pytest.raises(AnimateMeError, match="NaN"):
        binding.apply(bad)
    with pytest.raises(AnimateMeError, match="NaN"):
        bind(fit, np.array([[0.0, np.inf, 0.0]]))


def test_the_nearest_pair_of_each_point_is_what_a_stable_sort_picks():
    """closest_on_mesh keeps each point's nearest candidate triangle (the first of equals) without
    sorting the pairs: the same pick as a stable sort by (point, distance), ties and NaN included."""
    from animateme_blender.core.geometry import _nearest_per_group

    rng = np.random.default_rng(5)
    for trial in range(60):
        owner = np.repeat(np.arange(50), rng.integers(1, 9, 50))
        squared = rng.integers(0, 4, len(owner)).astype(float) if trial % 2 else rng.random(len(owner))
        squared[rng.random(len(owner)) < (0.2 if trial % 3 == 0 else 0.0)] = np.nan
        order = np.lexsort((squared, owner))
        expected = order[np.flatnonzero(np.r_[True, owner[order][1:] != owner[order][:-1]])]
        assert np.array_equal(_nearest_per_group(owner, squared), expected)
