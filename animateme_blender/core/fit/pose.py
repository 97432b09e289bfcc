"""Rigid pose search: the similarity (rotation, translation, scale, so any unit works) that puts
the template on the input, from many starts: the input's principal axes matched to the
template's in all 24 proper ways plus the 24 axis-aligned rotations (any Y-up/Z-up/sideways/
upside-down convention), at three scales, and 72 rotations spread over all of them at two (a scan
with hair and shoulders, turned off the axes, has principal axes unlike the template's), each slid
along its forward axis until the most forward points agree (on a whole head the face is on the
surface, not at the centroid), then similarity ICP. The best few distinct poses go on to a short
model fit (registration.py decides)."""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import AnimateMeError
from .fitresult import Similarity
from ..progress import Cancel
from .surface import Surface

# Starting scales, times the input's size over the template's: a head with a body is larger than
# its face (0.65), a front-only mask smaller than the template's whole face skin (1.5).
SCALE_FACTORS = (1.0, 0.65, 1.5)
SPREAD_SCALES = (1.0, 0.65)
SPREAD_STARTS = 72             # about 30 degrees from any rotation to the nearest of the 120 starts
COARSE_STEPS = 6               # ICP steps of each start on the coarse samples,
SURVEY_STEPS = 2               # after this many of which
SURVIVORS = 1 / 3              # only this share of the starts, the closest, go on


def umeyama(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted similarity (s, R, t) minimising sum w |s R x + t - y|^2."""
    scales, rotations = _umeyama_many(source, target[None], weight[None])
    weight = weight / max(weight.sum(), 1e-30)
    mu_x, mu_y = weight @ source, weight @ target
    return float(scales[0]), rotations[0], mu_y - scales[0] * rotations[0] @ mu_x


def _principal_axes(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return vectors[:, ::-1]  # largest variance first


def _proper_signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[np.arange(3), perm] = signs
            if np.linalg.det(matrix) > 0:
                out.append(matrix)
    return out


def spread_rotations(count: int) -> list[np.ndarray]:
    """`count` rotations spread evenly over all of them: the super-Fibonacci spiral of unit
    quaternions (Alexa, CVPR 2022), deterministic."""
    phi, psi = np.sqrt(2.0), 1.533751168755204288118041
    s = np.arange(count) + 0.5
    r, big_r = np.sqrt(s / count), np.sqrt(1.0 - s / count)
    alpha, beta = 2 * np.pi * s / phi, 2 * np.pi * s / psi
    w, x, y, z = r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)
    return [np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
            for w, x, y, z in zip(w, x, y, z)]


SPREAD = spread_rotations(SPREAD_STARTS)


def _starts(template_points: np.ndarray, input_points: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    """Template -> input (rotation, scale factors) to start ICP from: principal axes matched in
    the 24 proper ways and the 24 axis-aligned rotations (every Y-up/Z-up/sideways convention) at
    SCALE_FACTORS, and SPREAD_STARTS spread over all rotations at SPREAD_SCALES (a scan with hair
    and shoulders has principal axes unlike the template's, and in a pose off the axes neither
    set above comes near it; the spread ones fill the gaps at fewer scales)."""
    cube = _proper_signed_permutations()
    axes_t, axes_i = _principal_axes(template_points), _principal_axes(input_points)
    starts = []
    for m in cube:
        rotation = axes_i @ m @ axes_t.T
        if np.linalg.det(rotation) < 0:
            rotation = axes_i @ (m @ np.diag([1.0, 1.0, -1.0])) @ axes_t.T
        starts.append(rotation)
    return [(r, SCALE_FACTORS) for r in starts + cube] + [(r, SPREAD_SCALES) for r in SPREAD]


def icp(template_points, surface: Surface, scale, rotation, translation, iterations, cap_mm):
    """Similarity ICP, template points -> closest input vertices, robust (capped) weights.
    Returns (s, R, t, robust residual in template mm). One start of `icp_many`."""
    return icp_many(template_points, surface, [scale], [rotation], [translation], iterations, cap_mm)[0]


def icp_many(template_points, surface: Surface, scales, rotations, translations, iterations, cap_mm) -> list[tuple]:
    """Similarity ICP from many starts (S,), (S,3,3), (S,3) at once, template points -> closest input
    vertices with robust (capped) weights: [(s, R, t, robust residual in template mm)] per start.
    One nearest-point query and one batched SVD per iteration serve every start (a pose search
    runs ~300; one at a time, numpy's per-call overhead cost more than the arithmetic)."""
    points = np.asarray(template_points, dtype=np.float64)
    scales, rotations = np.array(scales, dtype=np.float64), np.array(rotations, dtype=np.float64)
    translations = np.array(translations, dtype=np.float64)
    count = len(scales)

    def query(scales, rotations, translations):
        moved = scales[:, None, None] * np.einsum("pj,sij->spi", points, rotations) + translations[:, None, :]
        distance, nearest = surface.tree.query(moved.reshape(-1, 3), workers=-1)   # every core: one big query
        return distance.reshape(count, -1), nearest.reshape(count, -1)

    for _ in range(iterations):
        distance, nearest = query(scales, rotations, translations)
        weight = 1.0 / (1.0 + (distance / scales[:, None] / cap_mm) ** 2)
        weight[surface.boundary[nearest]] *= 0.1
        target = surface.points[nearest]                                   # (S,P,3)
        new_scales, rotations = _umeyama_many(points, target, weight)
        # The scale may not collapse (a tiny template fits anywhere); limit each step.
        scales = np.clip(new_scales, 0.8 * scales, 1.25 * scales)
        total = weight.sum(1)[:, None]
        mean_target = np.einsum("spi,sp->si", target, weight) / total
        mean_source = weight @ points / total
        translations = mean_target - scales[:, None] * np.einsum("sij,sj->si", rotations, mean_source)
    distance, _ = query(scales, rotations, translations)
    residuals = np.mean(np.minimum(distance / scales[:, None], cap_mm) ** 2, axis=1)
    return [(float(scales[k]), rotations[k], translations[k], float(residuals[k])) for k in range(count)]


def _umeyama_many(source: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted similarity's scale and rotation (as `umeyama`) for S target sets (S,P,3) and weights
    (S,P) of one source (P,3)."""
    weights = weights / np.maximum(weights.sum(1, keepdims=True), 1e-30)
    mu_x, mu_y = weights @ source, np.einsum("sp,spi->si", weights, targets)
    x, y = source[None] - mu_x[:, None], targets - mu_y[:, None]
    cov = np.einsum("spi,spj->sij", y * weights[:, :, None], x)
    u, d, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    sign[sign == 0] = 1.0
    correction = np.ones((len(sign), 3))
    correction[:, 2] = sign
    rotations = np.einsum("sij,sj,sjk->sik", u, correction, vt)
    variance = np.einsum("sp,sp->s", weights, (x * x).sum(2))
    return (d * correction).sum(1) / np.maximum(variance, 1e-30), rotations


def rigid_alignment(template_points: np.ndarray, surface: Surface, rng,
                    cancel: Cancel | None = None, keep: int = 3, region: np.ndarray | None = None) -> list[Similarity]:
    """The best few distinct similarities template (centred, mm) -> input over many starts,
    best first (the model fit decides between them). Only the template's face region (when
    given) is aligned: every face input has a face, but a mask has no ears, neck or temples to
    match the template's, and those would pull it off the face."""
    # A subset in the same (centred) frame: the similarities found hold for every template point.
    template_points = template_points[region] if region is not None else template_points
    sample = template_points[rng.choice(len(template_points), min(150, len(template_points)), replace=False)]
    coarse_index = rng.choice(len(surface.points), min(3000, len(surface.points)), replace=False)
    coarse = surface.subset(coarse_index)
    radius_t = np.sqrt(((template_points - template_points.mean(0)) ** 2).sum(1).mean())
    centre_i = surface.points.mean(0)
    radius_i = np.sqrt(((surface.points - centre_i) ** 2).sum(1).mean())
    scales, rotations, translations = [], [], []
    for rotation, factors in _starts(template_points, surface.points):
        if cancel is not None and cancel():
            raise AnimateMeError("registration cancelled")
        for factor in factors:
            scale = factor * radius_i / radius_t
            translation = centre_i - scale * rotation @ template_points.mean(0)
            # Slide along the face's forward axis (+Z in the template) until the most forward
            # points agree: on a whole head the face is on the surface, not at the centroid.
            forward = rotation[:, 2]
            gap = (coarse.points @ forward).max() - ((scale * template_points @ rotation.T + translation) @ forward).max()
            scales.append(scale)
            rotations.append(rotation)
            translations.append(translation + gap * forward)
    # Successive halving: every start takes SURVEY_STEPS steps, and only the closest SURVIVORS share
    # the rest (a third of the queries saved; the full bench-register lost no face and had no
    # silent failure with it).
    results = icp_many(sample, coarse, np.array(scales), np.array(rotations), np.array(translations),
                       SURVEY_STEPS, 15.0)
    results = sorted(results, key=lambda r: r[3])[:max(1, int(len(results) * SURVIVORS))]
    results = icp_many(sample, coarse, *(np.array([r[k] for r in results]) for k in range(3)),
                       COARSE_STEPS - SURVEY_STEPS, 15.0)
    results.sort(key=lambda r: r[3])
    chosen: list[tuple] = []
    for result in results:
        if len(chosen) == 2 * keep:
            break
        if all(not similar_poses(result, other) for other in chosen):
            chosen.append(result)
    refined = sorted(icp_many(template_points, surface, *(np.array([r[k] for r in chosen]) for k in range(3)),
                              20, 8.0), key=lambda r: r[3])
    distinct: list[tuple] = []
    for result in refined:
        if all(not similar_poses(result, other) for other in distinct):
            distinct.append(result)
    return [Similarity(r[0], r[1], r[2]) for r in distinct[:keep]]


def similar_poses(a, b) -> bool:
    """Two (s, R, t, ...) poses that ICP would take to the same place."""
    angle = np.degrees(np.arccos(np.clip((np.trace(a[1].T @ b[1]) - 1) / 2, -1, 1)))
    shift = np.linalg.norm(a[2] - b[2]) / a[0]
    return angle < 15.0 and shift < 15.0 and abs(np.log(a[0] / b[0])) < 0.15


def rotation_from_vector(omega: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation by |omega| about omega."""
    angle = np.linalg.norm(omega)
    if angle < 1e-12:
        return np.eye(3)
    k = omega / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
