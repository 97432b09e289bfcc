"""The output low-pass (core/sample/smoothing.py): what it keeps, what it removes, and that the sampler
runs it when the model's card asks."""

from __future__ import annotations

import numpy as np
import pytest

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.geometry import graph_laplacian
from animateme_blender.core.sample.smoothing import smooth_deformations


def grid(n=12):
    """A flat n x n grid of triangles, 1 mm apart."""
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    vertices = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], axis=1)
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    return vertices, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def test_smoothing_keeps_a_translation_and_removes_a_checkerboard():
    vertices, faces = grid()
    shift = np.broadcast_to(np.array([0.3, -1.0, 2.0]), vertices.shape)[None]
    np.testing.assert_allclose(smooth_deformations(shift, faces, 0.5), shift, atol=1e-9)
    sign = (vertices[:, 0] + vertices[:, 1]) % 2 * 2.0 - 1.0          # +-1 like a chessboard
    checker = sign[None, :, None] * np.array([0, 0, 1.0])
    smooth = np.sin(vertices[:, :1] / 4.0)[None] * np.array([0, 0, 1.0])
    laplacian = graph_laplacian(faces, len(vertices))
    inside = (vertices[:, :2].min(1) >= 2) & (vertices[:, :2].max(1) <= 9)   # two rings from the border

    def high(d):
        return np.sum((laplacian @ d[0])[inside] ** 2)

    assert high(smooth_deformations(checker, faces, 0.5)) < 0.5 * high(checker)
    kept = smooth_deformations(smooth, faces, 0.5)
    assert np.abs(kept - smooth).max() < 0.1 * np.abs(smooth).max()
    assert smooth_deformations(smooth, faces, 0.0) is smooth
    frames = np.stack([smooth[0], checker[0], shift[0]])
    assert smooth_deformations(frames.astype(np.float32), faces, 0.5).dtype == np.float32


def test_an_open_border_bends_freely():
    """A lid closing or lips parting: motion of the open border alone, however sharp, is kept."""
    vertices, faces = grid()
    rim = (vertices[:, :2].min(1) == 0) | (vertices[:, :2].max(1) == 11)
    lid = (rim[:, None] * np.array([0, 0, 3.0]))[None]
    np.testing.assert_allclose(smooth_deformations(lid, faces, 5.0), lid, atol=1e-9)


@pytest.mark.parametrize("strength", [-0.1, float("nan"), float("inf")])
def test_a_bad_strength_is_refused(strength):
    vertices, faces = grid(4)
    with pytest.raises(AnimateMeError, match="smoothing"):
        smooth_deformations(np.zeros((1, len(vertices), 3)), faces, strength)
