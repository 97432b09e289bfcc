"""Small meshes the tests build: a UV sphere and the triangles of a regular grid."""

from __future__ import annotations

import numpy as np


def sphere(radius: float = 90.0, rows: int = 40, columns: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A closed-off UV sphere without its poles (a ball, not a face), +Y up."""
    theta = np.linspace(0, np.pi, rows)[1:-1]
    phi = np.linspace(0, 2 * np.pi, columns, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    vertices = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3) * radius
    grid = np.arange(len(theta) * columns).reshape(len(theta), columns)
    right = np.roll(grid, -1, axis=1)
    faces = np.concatenate([np.stack([grid[:-1], right[:-1], right[1:]], -1).reshape(-1, 3),
                            np.stack([grid[:-1], right[1:], grid[1:]], -1).reshape(-1, 3)])
    return vertices, faces


def grid_faces(n: int) -> np.ndarray:
    """Triangles of an n x n vertex grid (vertex (i, j) = j*n + i), each cell split along its
    (i,j)-(i+1,j+1) diagonal, counter-clockwise seen from +z."""
    faces = []
    for j in range(n - 1):
        for i in range(n - 1):
            a = j * n + i
            faces += [[a, a + 1, a + n + 1], [a, a + n + 1, a + n]]
    return np.asarray(faces)
