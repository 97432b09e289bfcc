"""The numpy preview rasteriser: the batched path for small triangles draws what the
per-triangle path draws."""

import numpy as np

from animateme import render
from mesh_fixtures import sphere


def test_batched_small_triangles_match_the_per_triangle_loop(monkeypatch):
    vertices, faces = sphere()
    vertices = vertices * np.array([1.0, 1.3, 0.9])
    batched = render.render_mesh(vertices, faces, size=(96, 96))
    monkeypatch.setattr(render, "SMALL_TRIANGLE_PIXELS", 0)           # everything through the loop
    looped = render.render_mesh(vertices, faces, size=(96, 96))
    assert (batched != np.asarray(render.BACKGROUND)).any(axis=-1).mean() > 0.3   # a shape was drawn
    differs = np.abs(batched.astype(int) - looped.astype(int)).max(axis=-1) > 2
    assert differs.mean() < 0.002                                     # z ties on shared edges at most
