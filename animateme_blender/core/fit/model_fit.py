"""Model fit: the face model's identity modes and the similarity together, by Gauss-Newton on
point-to-plane distances both ways (template vertices to the input, input points to the
template), with a ridge prior on the identity weights (w ~ N(0, 1)) annealed from strong to weak.
Correspondences that land on the input's boundary, too far, or on a surface facing the other way
are dropped, so a face with a body, or a face cut in half, does not drag the template."""

from __future__ import annotations


import numpy as np
from scipy.spatial import cKDTree

from ..errors import AnimateMeError
from .fitresult import Similarity
from ..geometry import boundary_vertices, cross, vertex_normals
from .pose import rotation_from_vector
from ..progress import Cancel, Progress
from .surface import Surface, correspond

EARLY_MODES = 30                # modes fitted in the first half of the model fit


def _skew(points: np.ndarray) -> np.ndarray:
    """(n,3,3) matrices A with A @ omega = omega cross x."""
    skew = np.zeros((len(points), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = points[:, 2], -points[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = -points[:, 2], points[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = points[:, 1], -points[:, 0]
    return skew


def _plane_rows(shape, vertex, target, normal, weight, modes):
    """modes: (V,3,M). Gauss-Newton rows n.(x' - p) for pairs (template vertex, target in template frame) over the
    unknowns [omega(3), sigma, tau(3), identity(M)] of x' = (1+sigma)(x + omega cross x) + tau + B dw."""
    root = np.sqrt(weight)
    x = shape[vertex]
    rows = np.hstack([cross(x, normal), (normal * x).sum(1, keepdims=True), normal,
                      np.einsum("vcm,vc->vm", modes[vertex], normal)])
    return root[:, None] * rows, root * (normal * (x - target)).sum(1)


def _point_rows(shape, vertex, target, weight, modes, barycentric=None):
    """The same unknowns, three rows (x' - p) per pair; with `barycentric` (P,3), each x is the
    point of the template's surface those weights give over the (P,3) `vertex` rows."""
    root = np.repeat(np.sqrt(weight), 3)
    if barycentric is None:
        x, x_modes = shape[vertex], modes[vertex]
    else:
        x = np.einsum("pk,pkc->pc", barycentric, shape[vertex])
        x_modes = np.einsum("pk,pkcm->pcm", barycentric, modes[vertex])
    rows = np.concatenate([_skew(x), x[:, :, None], np.broadcast_to(np.eye(3), (len(x), 3, 3)),
                           x_modes], axis=2).reshape(-1, 7 + modes.shape[2])
    return root[:, None] * rows, root * (x - target).reshape(-1)


def _aggregate(vertex, target, weight, count):
    """Many weighted pairs per template vertex -> one pair each (same quadratic up to a constant):
    total weight and weighted mean target."""
    total = np.bincount(vertex, weights=weight, minlength=count)
    mean = np.stack([np.bincount(vertex, weights=weight * target[:, k], minlength=count) for k in range(3)], 1)
    used = np.flatnonzero(total > 0)
    return used, mean[used] / total[used, None], total[used]


def _bounded_step(normal_matrix: np.ndarray, normal_rhs: np.ndarray, weights: np.ndarray,
                  bounds: np.ndarray | None) -> np.ndarray:
    """The Gauss-Newton step [similarity(7), weights] with each weight kept inside its (low, high)
    bound: a weight the free step would carry across a bound is stopped on it and the others are
    solved again with it held there (an active set), so they make up for it rather than assume it
    moved, as clipping the step afterwards would."""
    delta = np.linalg.solve(normal_matrix, normal_rhs)
    if bounds is None:
        return delta
    held = np.zeros(len(normal_rhs), dtype=bool)
    for _ in range(len(weights)):
        moved = weights + delta[7:]
        target = np.clip(moved, bounds[:, 0], bounds[:, 1])
        crossed = np.concatenate([np.zeros(7, dtype=bool), target != moved]) & ~held
        if not crossed.any():
            break
        held |= crossed
        fixed = np.zeros(len(normal_rhs))
        fixed[7:] = np.where(held[7:], target - weights, 0.0)
        free = ~held
        delta = fixed.copy()
        delta[free] = np.linalg.solve(normal_matrix[np.ix_(free, free)],
                                      normal_rhs[free] - normal_matrix[np.ix_(free, held)] @ fixed[held])
    return delta


def spread_subset(points: np.ndarray, count: int) -> np.ndarray:
    """`count` indices of `points` spread evenly over them (farthest-point sampling from the point
    nearest the centroid; deterministic), sorted: the coarse level of a coarse-to-fine fit."""
    points = np.asarray(points, dtype=np.float64)
    if count >= len(points):
        return np.arange(len(points))
    chosen = [int(np.argmin(((points - points.mean(0)) ** 2).sum(1)))]
    gap = ((points - points[chosen[0]]) ** 2).sum(1)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(gap)))
        gap = np.minimum(gap, ((points - points[chosen[-1]]) ** 2).sum(1))
    return np.sort(np.array(chosen))


def model_fit(template_points: np.ndarray, faces: np.ndarray, modes: np.ndarray, surface: Surface,
              transform: Similarity, iterations: int = 80, landmark_pairs=None,
              ridge_start: float = 1e4, ridge_end: float = 0.03, reverse_points: int = 4000,
              progress: Progress | None = None, cancel: Cancel | None = None,
              weights: np.ndarray | None = None, reach_mm: tuple[float, float] = (12.0, 1.5),
              fixed_ridge: np.ndarray | None = None, early_modes: int = EARLY_MODES,
              bounds: np.ndarray | None = None, coarse: np.ndarray | None = None, fine_from: int | None = None):
    """Identity weights and similarity by Gauss-Newton on point-to-plane residuals, both ways:
    template vertices to their closest input points, and input points (a sample) to their closest
    template vertices, so features pull features and the template cannot slide over the head.
    template_points (V,3) centred mm; modes (M,V,3) mm; weights: where to start (default 0);
    fixed_ridge (M,): a prior strength per mode that does not anneal (NaN: the annealed one);
    bounds (M,2): each weight's (low, high), +-inf for none (a start outside is clipped in);
    reach_mm: correspondence reach at the start and the end.
    coarse: template vertex indices (a well-spread subset, `spread_subset`) that alone pull on the
    fit until step `fine_from` (default: to the end), with as few reverse points per vertex (up to
    all of a small input's); their pairs count as many times as the subset is sparser, so the prior
    weighs the same. The steps before the last few only bring the fit near: they need not see
    every vertex.
    Returns (shape, weights, transform, corr), corr over every vertex."""
    count, num_modes = len(template_points), len(modes)
    basis = modes.reshape(num_modes, -1).T                    # (3V, M)
    by_vertex = np.ascontiguousarray(modes.transpose(1, 2, 0))   # (V,3,M): row gathers are cheap
    weights = np.zeros(num_modes) if weights is None else np.array(weights, dtype=np.float64)
    if bounds is not None:
        bounds = np.asarray(bounds, dtype=np.float64)
        weights = np.clip(weights, bounds[:, 0], bounds[:, 1])
    template_boundary = boundary_vertices(faces, count)
    every_vertex = np.arange(count)
    coarse = every_vertex if coarse is None else np.asarray(coarse, dtype=np.int64)
    fine_from = iterations if fine_from is None else fine_from
    sample = np.random.default_rng(1).choice(len(surface.points), min(reverse_points, len(surface.points)), replace=False)
    coarse_sample = sample[:max(1, int(round(reverse_points * len(coarse) / count)))]   # all of a small input's
    # The two levels' (template vertices, reverse points, their normals), gathered once.
    levels = [(used, surface.points[chosen], surface.normals[chosen])
              for used, chosen in ((coarse, coarse_sample), (every_vertex, sample))]
    for step in range(iterations):
        if cancel is not None and cancel():
            raise AnimateMeError("registration cancelled")
        fraction = min(step / max(0.7 * iterations, 1), 1.0)    # anneal, then hold for the last 30 %
        ridge = ridge_start * (ridge_end / ridge_start) ** fraction   # prior strength, strong -> weak
        max_mm = reach_mm[0] * (reach_mm[1] / reach_mm[0]) ** fraction   # correspondence reach, far -> near
        point_share = 0.5 * (1.0 - fraction) + 0.05                   # point-to-point early, plane late
        used, sample_points, sample_normals = levels[0 if step < fine_from else 1]
        density = count / len(used)          # each pair stands for this many vertices' pairs
        shape = template_points + (basis @ weights).reshape(count, 3)
        normals = vertex_normals(shape, faces)
        corr = correspond(shape[used], normals[used], transform, surface, max_mm, bounded=True)
        paired = corr.weight > 0
        valid = used[paired]
        if len(valid) < 0.2 * len(used):
            break
        forward_target, forward_normal = corr.target[paired], corr.normal[paired]
        forward_weight = density * corr.weight[paired]
        # Reverse: input points near the template (not beyond its border) to their closest vertex.
        # The search stops where the pairs are dropped anyway (it is then several times faster).
        points = transform.inverse(sample_points)
        distance, nearest = cKDTree(shape[used]).query(points, distance_upper_bound=2.5 * max_mm * (1.0 + 1e-6))
        near = np.flatnonzero(distance < 2.5 * max_mm)
        nearest = used[np.minimum(nearest, len(used) - 1)]
        facing = (sample_normals[near] @ transform.rotation * normals[nearest[near]]).sum(1)
        keep = near[~template_boundary[nearest[near]] & (facing > 0.2)]
        reverse_weight = 0.5 * (1.0 / (1.0 + (distance[keep] / max_mm) ** 2)) * (len(valid) / max(len(keep), 1)) \
            * density
        r_vertex, r_target, r_weight = _aggregate(nearest[keep], points[keep], reverse_weight, count)
        # The first half fits only the largest modes: cheaper, and the small ones cannot yet
        # chase the wrong correspondences.
        active = num_modes if step >= iterations // 2 else min(early_modes, num_modes)
        use = by_vertex if active == num_modes else by_vertex[:, :, :active]
        f_rows, f_res = _plane_rows(shape, valid, forward_target, forward_normal,
                                    (1 - point_share) * forward_weight, use)
        r_rows, r_res = _plane_rows(shape, r_vertex, r_target, normals[r_vertex], (1 - point_share) * r_weight, use)
        p_vertex, p_target, p_weight = _aggregate(np.concatenate([valid, nearest[keep]]),
                                                  np.concatenate([forward_target, points[keep]]),
                                                  np.concatenate([forward_weight, reverse_weight]), count)
        p_rows, p_res = _point_rows(shape, p_vertex, p_target, point_share * p_weight, use)
        rows, residual = [f_rows, r_rows, p_rows], [f_res, r_res, p_res]
        if landmark_pairs is not None:
            # Points on the template (landmarks.SurfacePoints; their offset off the coarse triangle,
            # about 1.5 mm at the nose tip, is left out: clicked landmarks are rougher) and
            # input-frame targets.
            lm_points, lm_target = landmark_pairs
            strength = 100.0 * (1.0 - fraction)   # landmarks (clicked, so rough) guide early; the surface decides
            l_rows, l_res = _point_rows(shape, lm_points.index, transform.inverse(lm_target),
                                        np.full(len(lm_points.index), strength), use, lm_points.weight)
            rows.append(l_rows)
            residual.append(l_res)
        # The normal equations block by block: stacking the rows first only copies them.
        normal_matrix = sum(block.T @ block for block in rows)
        normal_rhs = -sum(block.T @ res for block, res in zip(rows, residual))
        prior = np.full(active, ridge) if fixed_ridge is None else \
            np.where(np.isnan(fixed_ridge[:active]), ridge, np.nan_to_num(fixed_ridge[:active]))
        normal_matrix[7:, 7:] += np.diag(prior)
        normal_rhs[7:] -= prior * weights[:active]
        normal_matrix[:7, :7] += 1e-6 * np.eye(7)
        delta = _bounded_step(normal_matrix, normal_rhs, weights[:active],
                              None if bounds is None else bounds[:active])
        omega, sigma, tau = delta[:3], delta[3], delta[4:7]
        weights[:active] += delta[7:]
        rotation = rotation_from_vector(omega)
        transform = Similarity(transform.scale * (1.0 + sigma), transform.rotation @ rotation,
                               transform.scale * transform.rotation @ tau + transform.translation)
        if progress is not None:
            progress(step / iterations, "fitting the face model")
    shape = template_points + (basis @ weights).reshape(count, 3)
    corr = correspond(shape, vertex_normals(shape, faces), transform, surface, 3.0)
    return shape, weights, transform, corr


WARP_RIDGE = 10.0      # prior on the smooth warp: a weight of 1 moves the face 10 mm
WARP_ITERATIONS = 50


def smooth_warp_modes(template_points: np.ndarray) -> np.ndarray:
    """(27,V,3) mm: every coordinate displaced by a linear or quadratic function of the position
    (in units of 100 mm, 10 mm per unit weight). Real heads differ from the identity model in
    such smooth ways (proportions, a longer or bent face) that no identity mode makes."""
    u = template_points / 100.0
    monomials = [u[:, 0], u[:, 1], u[:, 2], u[:, 0] ** 2, u[:, 1] ** 2, u[:, 2] ** 2,
                 u[:, 0] * u[:, 1], u[:, 0] * u[:, 2], u[:, 1] * u[:, 2]]
    modes = np.zeros((3 * len(monomials),) + template_points.shape)
    for axis in range(3):
        for k, monomial in enumerate(monomials):
            modes[axis * len(monomials) + k, :, axis] = 10.0 * monomial
    return modes


def polish_with_warp(template_points, faces, modes, surface, transform, identity, cancel=None, mode_ridge=None,
                     mode_bounds=None, coarse=None, fine_from=None):
    """The accepted fit again, from where it stands, with the smooth warp modes added beside the
    identity modes (identity prior held at its weakest, warp prior fixed). Run only after the
    judge has accepted the pose: the extra freedom would also let a wrong pose fit well, so it
    must never take part in choosing or judging one. `mode_ridge` (M,): a fixed prior per mode (NaN:
    the identity's, held at its weakest), and `mode_bounds` (M,2) their bounds, as the fit had them;
    `coarse` and `fine_from` as model_fit's. Returns (shape, weights, transform, corr)."""
    warp = smooth_warp_modes(template_points)
    every = np.concatenate([modes, warp])
    held = np.full(len(modes), np.nan) if mode_ridge is None else np.asarray(mode_ridge, dtype=np.float64)
    ridge = np.concatenate([held, np.full(len(warp), WARP_RIDGE)])
    start = np.concatenate([identity, np.zeros(len(warp))])
    bounds = None
    if mode_bounds is not None:
        free = np.tile([-np.inf, np.inf], (len(warp), 1))
        bounds = np.concatenate([np.asarray(mode_bounds, dtype=np.float64), free])
    shape, weights, transform, corr = model_fit(
        template_points, faces, every, surface, transform, iterations=WARP_ITERATIONS, weights=start,
        ridge_start=0.03, ridge_end=0.03, reach_mm=(6.0, 1.5), fixed_ridge=ridge, early_modes=len(every),
        cancel=cancel, bounds=bounds, coarse=coarse, fine_from=fine_from)
    return shape, weights[:len(modes)], transform, corr
