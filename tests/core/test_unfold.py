"""unfold: where the carried motion would turn a triangle of the user's mesh over, it is relaxed
until none turns; elsewhere, and where nothing folds, the motion is left exactly as it was."""

from __future__ import annotations

import numpy as np

from animateme_blender.core.carry.unfold import folded, unfold


def _grid(n: int = 12):
    """An n x n vertex sheet in the xy plane (unit spacing), two triangles per cell, normals +z."""
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces, index


def _fold(vertices, index, frames: int = 5):
    """A smooth lift of the whole sheet plus, growing over the frames, one vertex pushed 2.5 spacings
    across its neighbours in x: the triangles around it turn over from the middle frames on."""
    ramp = np.linspace(0.0, 1.0, frames)[:, None, None]
    smooth = np.zeros((frames, len(vertices), 3))
    smooth[..., 2] = 0.3 * np.sin(vertices[:, 0] / 3.0)
    spike = np.zeros_like(smooth)
    spike[:, index[6, 6], 0] = 2.5
    return (ramp * (smooth + spike)).astype(np.float32)


def test_a_pushed_vertex_folds_and_unfold_leaves_no_triangle_turned_over():
    vertices, faces, index = _grid()
    moves = _fold(vertices, index)
    assert folded(vertices, faces, moves).sum(axis=1).max() >= 2     # the fixture folds
    out = unfold(vertices, faces, moves)
    assert out.folded_before >= 2 and out.folded_after == 0
    assert not folded(vertices, faces, out.displacements).any()
    # The region is local: far from the pushed vertex the motion is untouched, to the bit.
    far = np.linalg.norm(vertices - vertices[index[6, 6]], axis=1) > 4.0
    assert np.array_equal(out.displacements[:, far], moves[:, far])
    assert 0 < out.relaxed < len(vertices) // 4
    # The neutral frame (no motion) stays no motion.
    assert np.abs(out.displacements[0]).max() == 0.0


def test_motion_that_folds_nothing_comes_back_unchanged():
    vertices, faces, index = _grid()
    moves = _fold(vertices, index)
    moves[:, index[6, 6], 0] = 0.0      # no spike: only the smooth lift
    out = unfold(vertices, faces, moves)
    assert out.folded_before == 0 and out.relaxed == 0
    assert out.displacements is moves or np.array_equal(out.displacements, moves)


def test_vertices_that_may_not_move_keep_their_motion_exactly():
    vertices, faces, index = _grid()
    moves = _fold(vertices, index)
    movable = np.ones(len(vertices), bool)
    fixed = [index[5, 6], index[7, 6]]       # two of the pushed vertex's neighbours
    movable[fixed] = False
    out = unfold(vertices, faces, moves, movable)
    assert np.array_equal(out.displacements[:, fixed], moves[:, fixed])
    assert out.folded_after == 0


def test_motion_that_folds_everywhere_is_left_as_it_is_and_reported():
    """Folds all over the mesh (an untrained model's noise) are not relaxed away into no motion:
    the motion comes back unchanged and the folds are counted."""
    vertices, faces, index = _grid()
    noise = np.random.default_rng(3).normal(0.0, 1.5, (2, len(vertices), 3)).astype(np.float32)
    out = unfold(vertices, faces, noise)
    assert out.folded_before > len(faces) // 10
    assert out.folded_after == out.folded_before and out.relaxed == 0
    assert np.array_equal(out.displacements, noise)


def test_only_the_watched_frames_decide_and_every_frame_is_relaxed_alike():
    """A rig's shapes are relaxed for the clip that plays them: the folds that count are the
    watched frames' (the clip), and the same linear relaxation reaches every frame (the shapes)."""
    vertices, faces, index = _grid()
    moves = _fold(vertices, index)                       # frames 2.. fold at the pushed vertex
    calm = moves[:2]                                     # frames 0 and 1: no fold
    assert not folded(vertices, faces, calm).any()
    ignored = unfold(vertices, faces, moves, watch=np.array([0, 1]))
    assert ignored.folded_before == 0 and ignored.relaxed == 0
    assert np.array_equal(ignored.displacements, moves)
    watched = unfold(vertices, faces, moves, watch=np.array([len(moves) - 1]))
    assert watched.folded_before > 0 and watched.folded_after == 0 and watched.relaxed > 0
    assert not folded(vertices, faces, watched.displacements[-1:]).any()
    # Linear and the same for every frame: a frame that is half the last comes out half of it.
    half = np.concatenate([moves, 0.5 * moves[-1:]])
    both = unfold(vertices, faces, half, watch=np.array([len(moves) - 1]))
    np.testing.assert_allclose(both.displacements[-1], 0.5 * both.displacements[-2], atol=1e-5)
