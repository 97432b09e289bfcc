"""The rig's shapes are carried onto the user's mesh by moving least squares (core/carry/smooth_carry.py):
exact for affine motion, smooth across the template's edges, and never across an opening."""

from __future__ import annotations

import numpy as np

from animateme_blender.core.carry.smooth_carry import carry, carry_matrix
from animateme_blender.core.carry.transfer import Binding


def grid(columns: int, rows: int, step: float, origin=(0.0, 0.0, 0.0), bend: float = 0.002):
    """A triangulated grid (two triangles per square), bent in z by `bend` x^2."""
    i, j = np.meshgrid(np.arange(columns), np.arange(rows), indexing="ij")
    x, y = i.ravel() * step + origin[0], j.ravel() * step + origin[1]
    vertices = np.column_stack([x, y, bend * (x - x.mean()) ** 2 + origin[2]])
    index = lambda a, b: a * rows + b   # noqa: E731
    faces = np.array([t for a in range(columns - 1) for b in range(rows - 1) for t in
                      ((index(a, b), index(a + 1, b), index(a + 1, b + 1)), (index(a, b), index(a + 1, b + 1), index(a, b + 1)))])
    return vertices, faces


def binding_of(rest, faces, triangle, barycentric) -> Binding:
    """User vertices lying on the template (no offset), bound per vertex with full weight."""
    count = len(triangle)
    return Binding(rest=rest, faces=faces, triangle=np.asarray(triangle), barycentric=np.asarray(barycentric),
                   offset=np.zeros((count, 3)), weight=np.ones(count), group=np.full(count, -1),
                   scale=1.0, rotation=np.eye(3))


def dense_points_on(rest, faces, per_edge: int):
    """A barycentric lattice on every template triangle: the user's dense mesh, bound."""
    steps = [(a, b) for a in range(per_edge + 1) for b in range(per_edge + 1 - a)]
    bary = np.array([(a, b, per_edge - a - b) for a, b in steps], dtype=np.float64) / per_edge
    triangle = np.repeat(np.arange(len(faces)), len(bary))
    return triangle, np.tile(bary, (len(faces), 1))


def test_an_affine_motion_is_carried_exactly():
    """On a flat patch every affine motion (a translation, a rotation, a stretch) is reproduced."""
    rest, faces = grid(8, 7, 7.0, bend=0.0)
    rng = np.random.default_rng(0)
    triangle = rng.integers(0, len(faces), 500)
    barycentric = rng.dirichlet(np.ones(3), 500)
    binding = binding_of(rest, faces, triangle, barycentric)
    matrix = carry_matrix(binding)
    assert np.allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, atol=1e-9)
    linear_map, shift = rng.normal(size=(3, 3)) * 0.05, rng.normal(size=3)
    affine = rest @ linear_map.T + shift
    carried = carry(binding, affine[None], matrix)[0]
    points = np.einsum("nk,nkc->nc", barycentric, rest[faces[triangle]])
    assert np.abs(carried - (points @ linear_map.T + shift)).max() < 1e-6 * np.abs(affine).max()


def test_a_curved_motion_carries_without_creases_along_template_edges():
    """A smooth bump carried linearly bends at every template edge; carried by moving least
    squares its second differences along the dense mesh are several times smaller."""
    rest, faces = grid(12, 12, 7.0)
    bump = np.zeros_like(rest)
    bump[:, 2] = 3.0 * np.exp(-((rest[:, 0] - 38.5) ** 2 + (rest[:, 1] - 38.5) ** 2) / (2 * 15.0 ** 2))
    triangle, barycentric = dense_points_on(rest, faces, 7)
    binding = binding_of(rest, faces, triangle, barycentric)
    points = np.einsum("nk,nkc->nc", barycentric, rest[faces[triangle]])
    smooth = carry(binding, bump[None])[0]
    linear = np.asarray(binding.apply(bump[None]))[0]
    # Second differences of z along a row of the dense lattice (1 mm apart), away from the border.
    _, first = np.unique(np.round(points[:, :2], 6), axis=0, return_index=True)
    lattice = points[first]
    row = np.flatnonzero((np.abs(lattice[:, 1] - 36.0) < 1e-6) & (lattice[:, 0] > 14.0) & (lattice[:, 0] < 63.0))
    row = first[row[np.argsort(lattice[row, 0])]]
    bend = lambda field: np.abs(np.diff(field[row, 2], 2)).max()   # noqa: E731
    assert bend(smooth) < 0.3 * bend(linear)
    # and it is still the same bump: the blur takes less than a sixth off its top (0.27 of 3 mm here).
    assert np.abs(smooth - linear).max() < 3.0 / 6


def test_motion_never_crosses_an_opening():
    """Two lips two millimetres apart, not connected on the template: the upper one's motion stays
    on the upper one, however close the lower lip's vertices are."""
    upper, upper_faces = grid(6, 4, 7.0, origin=(0.0, 1.0, 0.0))
    lower, lower_faces = grid(6, 4, 7.0, origin=(0.0, -22.0, 0.0))
    rest = np.concatenate([upper, lower])
    faces = np.concatenate([upper_faces, lower_faces + len(upper)])
    motion = np.zeros_like(rest)
    motion[: len(upper), 1] = 2.0
    triangle, barycentric = dense_points_on(rest, faces, 4)
    binding = binding_of(rest, faces, triangle, barycentric)
    carried = carry(binding, motion[None])[0]
    on_lower = triangle >= len(upper_faces)
    assert np.abs(carried[on_lower]).max() == 0.0
    assert np.allclose(carried[~on_lower, 1], 2.0, atol=1e-6)


def test_a_clip_with_repeated_frames_carries_each_as_if_alone():
    """SmoothCarry carries each distinct frame once: a clip that holds its apex and returns to
    neutral comes out frame for frame as its frames carried one at a time, exactly."""
    from animateme_blender.core.carry.smooth_carry import SmoothCarry

    rest, faces = grid(8, 7, 7.0)
    rng = np.random.default_rng(2)
    binding = binding_of(rest, faces, rng.integers(0, len(faces), 300), rng.dirichlet(np.ones(3), 300))
    apex, onset = rng.normal(0, 1.0, rest.shape), rng.normal(0, 0.5, rest.shape)
    clip = np.stack([np.zeros_like(rest), onset, apex, apex, apex, onset, np.zeros_like(rest)])
    together = SmoothCarry(binding).apply(clip)
    alone = np.concatenate([SmoothCarry(binding).apply(frame[None]) for frame in clip])
    assert together.shape == (7, 300, 3) and np.array_equal(together, alone)
    assert np.abs(together[2]).max() > 0.1 and np.array_equal(together[2], together[4])
