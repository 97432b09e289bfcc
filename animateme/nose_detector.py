"""A geometric nose-tip detector, measured as a seed for the pose search (issue 11, item 3).

With no landmarks given, the pose search (core/fit/pose.py) starts ICP from 120 rotations at 2-3
scales and lets the model fit and the judge pick the face. A detector that found the nose tip
alone, in any unit, would let it start from fewer poses. This one looks for the point that stands
out most above the surface around it, at several sizes (the unit is unknown, so the ring is a
share of the mesh's own size): for each candidate vertex, the surface points at distance
0.66 r - r form a ring, a plane is fitted to it, and the score is the candidate's height above the
plane, outward (away from the mesh's centroid), over r; a ring that does not surround the
candidate (an open edge of a mask or a cut neck) does not count. A nose stands ~0.6 r above a 35 mm ring;
a sphere or a cheek stands ~0.1 r. `animateme bench-register --nose-detector` measures it on the
benchmark's cases against the known nose tip; docs/registration.md gives the figures and why the pose
search does not use it.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

RING_SHARES = (0.2, 0.3, 0.45)     # ring radius, times the mesh's RMS radius
CANDIDATES = 3000                  # vertices tried (a deterministic subsample of larger meshes)
INNER = 0.66                       # the ring's inner radius, times its outer


def nose_scores(vertices: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(candidate vertex indices, their best score over the ring sizes)."""
    points = np.asarray(vertices, dtype=np.float64)
    centre = points.mean(0)
    size = float(np.sqrt(((points - centre) ** 2).sum(1).mean()))
    rng = np.random.default_rng(seed)
    candidates = rng.choice(len(points), min(CANDIDATES, len(points)), replace=False)
    sample = points[rng.choice(len(points), min(20_000, len(points)), replace=False)]
    sample_tree = cKDTree(sample)
    best = np.zeros(len(candidates))
    for share in RING_SHARES:
        radius = share * size
        for k, index in enumerate(candidates):
            near = sample[sample_tree.query_ball_point(points[index], radius)]
            offset = near - points[index]
            ring = near[np.linalg.norm(offset, axis=1) >= INNER * radius]
            if len(ring) < 12:
                continue
            mean = ring.mean(0)
            _, _, axes = np.linalg.svd(ring - mean, full_matrices=False)
            normal = axes[2]
            if normal @ (mean - centre) < 0:
                normal = -normal
            lateral = (mean - points[index]) - ((mean - points[index]) @ normal) * normal
            if np.linalg.norm(lateral) > 0.3 * radius:   # a one-sided ring: the candidate is at an edge
                continue
            best[k] = max(best[k], float((points[index] - mean) @ normal) / radius)
    return candidates, best


def detect_nose_tip(vertices: np.ndarray, seed: int = 0) -> tuple[int, float]:
    """(vertex index of the most nose-like point, its score)."""
    candidates, scores = nose_scores(vertices, seed)
    k = int(np.argmax(scores))
    return int(candidates[k]), float(scores[k])
