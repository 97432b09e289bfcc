"""Spiral orderings (Potamias et al. §3.1): hand-worked spirals, the ring structure of eq. 1,
the geodesic start, one orientation everywhere, padding, and bad input."""

import time

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from animateme_blender.core.errors import AnimateMeError
from animateme.spirals import compute_spirals, rings, vertex_neighbours
from mesh_fixtures import grid_faces


def grid(n, jitter=0.0, seed=0):
    """n x n grid in the z=0 plane, vertex (i, j) = index j*n + i, each cell split along its
    (i,j)-(i+1,j+1) diagonal; faces counter-clockwise seen from +z (the outward side)."""
    xs, ys = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    vertices = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], axis=1).astype(float)
    vertices[:, :2] += np.random.default_rng(seed).uniform(-jitter, jitter, (n * n, 2))
    return vertices, grid_faces(n)


HEX_FAN = np.array([[0, i, i % 6 + 1] for i in range(1, 7)])  # centre 0, rim 1..6 counter-clockwise


def hops(faces, n):
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    return dijkstra(graph, directed=False, unweighted=True)


def split_rings(spiral, hop_row):
    """The spiral's entries grouped by hop distance from the centre (ring index)."""
    out = {}
    for v in spiral[1:]:
        out.setdefault(int(hop_row[v]), []).append(int(v))
    return out


def test_hexagonal_fan_by_hand():
    # Centre, reference 3: ring 1 starts at 3 (one hop to the reference) and runs counter-clockwise.
    assert compute_spirals(HEX_FAN, 7, 7, reference_vertex=3)[0].tolist() == [0, 3, 4, 5, 6, 1, 2]
    # Rim vertex 1, reference 2: its open fan is 2, 0, 6 counter-clockwise; ring 2 is 3, 4, 5
    # (walking 2 then 0); three slots left over hold the centre again.
    spirals = compute_spirals(HEX_FAN, 7, 10, reference_vertex=2)
    assert spirals[1].tolist() == [1, 2, 0, 6, 3, 4, 5, 1, 1, 1]
    assert spirals[0].tolist() == [0, 2, 3, 4, 5, 6, 1, 0, 0, 0]


def test_grid_centre_and_corner_by_hand():
    vertices, faces = grid(5)
    spirals = compute_spirals(faces, 25, 19, reference_vertex=0, vertices=vertices)
    # Centre (2,2): the diagonal neighbour (1,1)=6 leads to the corner; ring 1 counter-clockwise,
    # ring 2 collected around 6, 7, 13, 18, 17, 11 in turn.
    assert spirals[12].tolist() == [12, 6, 7, 13, 18, 17, 11,
                                    5, 0, 1, 2, 8, 14, 19, 24, 23, 22, 16, 10]
    corner = compute_spirals(faces, 25, 9, reference_vertex=12, vertices=vertices)[0]
    assert corner.tolist() == [0, 6, 5, 1, 7, 12, 11, 10, 2]


def test_rings_follow_equation_one():
    vertices, faces = grid(9, jitter=0.2)
    length = 19
    spirals = compute_spirals(faces, 81, length, reference_vertex=40, vertices=vertices)
    hop = hops(faces, 81)
    for v in range(81):
        ring_of = hop[v][spirals[v]]
        padded = spirals[v] == v
        padded[0] = False
        assert np.all(np.diff(ring_of[~padded]) >= 0), "rings come in order"
        assert not padded.any(), "every vertex of a 9x9 grid has 18 others within reach"
        full = int(ring_of[-1]) - 1  # rings before the last (possibly truncated) one are complete
        assert set(spirals[v].tolist()) >= set(np.flatnonzero(hop[v] <= full).tolist())
        assert len(set(spirals[v].tolist())) == length


def test_rings_are_counter_clockwise_about_the_normal():
    vertices, faces = grid(9, jitter=0.2, seed=3)
    spirals = compute_spirals(faces, 81, 19, reference_vertex=0, vertices=vertices)
    hop = hops(faces, 81)
    interior = [j * 9 + i for j in range(2, 7) for i in range(2, 7)]
    for v in interior:
        for ring in split_rings(spirals[v], hop[v]).values():
            offsets = vertices[ring, :2] - vertices[v, :2]
            angle = np.unwrap(np.arctan2(offsets[:, 1], offsets[:, 0]))
            assert np.all(np.diff(angle) > 0), (v, ring)
            assert angle[-1] - angle[0] < 2 * np.pi


def test_ring_one_starts_towards_the_reference():
    vertices, faces = grid(12, jitter=0.25, seed=1)
    reference = 5 * 12 + 7
    spirals = compute_spirals(faces, 144, 7, reference_vertex=reference, vertices=vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    graph = coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(144, 144)).tocsr()
    geodesic = dijkstra(graph, directed=False, indices=reference)
    for v in range(144):
        if v == reference:
            continue
        first = spirals[v, 1]
        step = np.linalg.norm(vertices[v] - vertices[first])
        assert step + geodesic[first] == pytest.approx(geodesic[v], abs=1e-9)


def test_flipping_the_winding_reverses_every_ring():
    vertices, faces = grid(8, jitter=0.2, seed=2)
    hop = hops(faces, 64)
    forward = compute_spirals(faces, 64, 19, reference_vertex=27, vertices=vertices)
    mirrored = compute_spirals(faces[:, ::-1], 64, 19, reference_vertex=27, vertices=vertices)
    assert np.array_equal(forward[:, :2], mirrored[:, :2]), "same centre, same geodesic start"
    for v in [j * 8 + i for j in range(2, 6) for i in range(2, 6)]:  # both rings complete
        ahead, back = split_rings(forward[v], hop[v]), split_rings(mirrored[v], hop[v])
        for k in (1, 2):
            reversed_ring = back[k][::-1]
            shift = reversed_ring.index(ahead[k][0])
            assert reversed_ring[shift:] + reversed_ring[:shift] == ahead[k], (v, k)


def test_prefix_padding_truncation_and_determinism():
    vertices, faces = grid(6)
    long = compute_spirals(faces, 36, 25, reference_vertex=14, vertices=vertices)
    short = compute_spirals(faces, 36, 9, reference_vertex=14, vertices=vertices)
    assert np.array_equal(long[:, :9], short)
    assert long.dtype == np.int32 and long.shape == (36, 25)
    assert np.array_equal(compute_spirals(faces, 36, 25, 14, vertices), long)
    # The order of the face list and the rotation of each face do not matter.
    order = np.random.default_rng(0).permutation(len(faces))
    rolled = np.roll(faces[order], 1, axis=1)
    assert np.array_equal(compute_spirals(rolled, 36, 25, 14, vertices), long)
    # A single triangle: the spiral runs out at 3 and repeats its centre.
    triangle = compute_spirals(np.array([[0, 1, 2]]), 3, 5, reference_vertex=0)
    assert triangle.tolist() == [[0, 1, 2, 0, 0], [1, 0, 2, 1, 1], [2, 0, 1, 2, 2]]
    assert compute_spirals(faces, 36, 1, 14)[:, 0].tolist() == list(range(36))


def test_isolated_vertices_and_separate_components():
    faces = np.concatenate([HEX_FAN, HEX_FAN + 7])  # two fans, vertex 14 in no face
    spirals = compute_spirals(faces, 15, 8, reference_vertex=3)
    assert spirals[14].tolist() == [14] * 8
    # The second fan has no path to vertex 3: its lowest vertex (7) is its reference.
    assert spirals[7].tolist() == [7, 8, 9, 10, 11, 12, 13, 7]
    assert spirals[10, 1] == 7
    assert set(spirals[:7].ravel()) <= set(range(7))


def test_vertex_neighbours_and_rings_helpers():
    neighbours = vertex_neighbours(HEX_FAN, 7)
    assert neighbours[0] == [1, 2, 3, 4, 5, 6]
    assert neighbours[1] == [2, 0, 6]  # an open fan, counter-clockwise
    assert rings(neighbours, 1, 10, start=0) == [[0, 6, 2], [3, 4, 5]]
    with pytest.raises(AnimateMeError, match="not a neighbour"):
        rings(neighbours, 1, 10, start=4)


def test_bad_input_is_one_line_error():
    with pytest.raises(AnimateMeError, match="outside 0..6"):
        compute_spirals(np.array([[0, 1, 7]]), 7, 5, 0)
    with pytest.raises(AnimateMeError, match="outside"):
        compute_spirals(np.array([[0, -1, 2]]), 7, 5, 0)
    with pytest.raises(AnimateMeError, match=r"\(F, 3\)"):
        compute_spirals(np.array([[0, 1, 2, 3]]), 7, 5, 0)
    with pytest.raises(AnimateMeError, match="repeats a vertex"):
        compute_spirals(np.array([[0, 1, 1]]), 7, 5, 0)
    with pytest.raises(AnimateMeError, match="reference vertex 9"):
        compute_spirals(HEX_FAN, 7, 5, 9)
    with pytest.raises(AnimateMeError, match="at least 1"):
        compute_spirals(HEX_FAN, 7, 0, 0)
    with pytest.raises(AnimateMeError, match="integer"):
        compute_spirals(HEX_FAN + 0.5, 7, 5, 0)
    with pytest.raises(AnimateMeError, match="vertices"):
        compute_spirals(HEX_FAN, 7, 5, 0, vertices=np.zeros((6, 3)))
    for message in ("outside", "repeats"):
        try:
            compute_spirals(np.array([[0, 1, 9]]) if message == "outside" else np.array([[2, 2, 1]]), 7, 5, 0)
        except AnimateMeError as error:
            assert "\n" not in str(error)


def test_a_template_sized_mesh_is_fast():
    vertices, faces = grid(35)  # 1,225 vertices, about the template's size
    start = time.perf_counter()
    spirals = compute_spirals(faces, len(vertices), 12, reference_vertex=612, vertices=vertices)
    elapsed = time.perf_counter() - start
    assert spirals.shape == (1225, 12) and elapsed < 5.0
    assert np.all(spirals[:, 0] == np.arange(1225))
