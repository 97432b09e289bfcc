"""The judge: is the fit a face, the right way round, in the right place? Everything is measured
on the template's face region (the part that is animated: inside the jaw line, the brows and a
band of forehead), so a front-only mask is judged on what it has, not on the ears and neck it
lacks. A fit is refused, in plain words with what to do, when any figure says it may be wrong:

- coverage: the share of the face region that found the input's surface (half a face, a
  template slid off the face, a hand or a torso fail it); a tight mask that stops at the brows
  and the jaw passes with less when its core (eyes, nose, mouth) is all there;
- residual: how closely the fitted face follows the input there;
- identity: how far the identity weights are from a real face (w ~ N(0, 1)); a wrong pose is
  only reached by stretching the model;
- nose: how far the nose stands out at the fitted nose tip (a sphere or a cube has none);
- pose margin: the runner-up among distinct pose hypotheses (other starts, the same pose upside
  down or facing backwards, slid up or down) must be clearly worse than the winner, else nothing
  says which one is right;
- symmetry: the input, mirrored about the fitted face's mid-plane, must lie on itself (a fit
  turned or slid sideways fails it);
- landmarks: the fitted landmarks must land near the ones the user placed.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from ..errors import FitRefused
from .fitresult import FitScore, Similarity
from .surface import Correspondence, Surface, closest_on_surface

MAX_RESIDUAL_MM = 1.5           # face-region mean point-to-plane residual
MAX_IDENTITY_NORM = 3.2         # RMS identity weight (faces the benchmark accepts: up to 2.8)
MIN_NOSE_MM = 14.0              # the fitted nose must stand out this far (real faces: 18-40)
MIN_COVERAGE = 0.7              # share of the face region with a valid correspondence (a tight mask: ~0.75)
MIN_CORE_COVERAGE = 0.9         # or the eyes, nose and mouth this completely ...
MIN_MASK_COVERAGE = 0.5         # ... and at least this much of the face region (a mask cut at the brows)
MIN_MARGIN = 1.25               # runner-up pose cost / winner's
MAX_SYMMETRY_MM = 3.0           # mean distance of the mirrored face region to the input
MAX_LANDMARK_MM = 10.0          # mean distance of user landmarks to the fitted ones
FOREHEAD_MM = 25.0              # the face region reaches this far above the brows


def face_region(template) -> np.ndarray:
    """(V,) bool: template vertices inside the jaw line (landmarks 0-16) and the brows (17-26)
    lifted by FOREHEAD_MM, seen from the front, and in front of the jaw's ends (not the ears)."""
    vertices = np.asarray(template.vertices, dtype=np.float64)
    table = np.asarray(getattr(template, "landmarks", np.zeros(0)), dtype=np.int64)
    if len(table) < 68:
        return np.ones(len(vertices), dtype=bool)
    outline = vertices[table[:27], :2].copy()
    outline[17:27, 1] += FOREHEAD_MM
    inside = Delaunay(outline).find_simplex(vertices[:, :2]) >= 0
    in_front = vertices[:, 2] > vertices[table[[0, 16]], 2].min() - 5.0
    return inside & in_front


def core_region(template) -> np.ndarray:
    """(V,) bool: template vertices inside the eyes, nose and mouth (the front-view hull of
    landmarks 27-67), the part every face mask keeps, however tightly it is cut."""
    vertices = np.asarray(template.vertices, dtype=np.float64)
    table = np.asarray(getattr(template, "landmarks", np.zeros(0)), dtype=np.int64)
    if len(table) < 68:
        return np.ones(len(vertices), dtype=bool)
    inside = Delaunay(vertices[table[27:68], :2]).find_simplex(vertices[:, :2]) >= 0
    return inside & (vertices[:, 2] > vertices[table[27:68], 2].min() - 5.0)


def covered(score: FitScore) -> bool:
    """Enough of the face found: most of the face region, or all of its core and half of it."""
    return bool(score.coverage >= MIN_COVERAGE or
                (score.core_coverage >= MIN_CORE_COVERAGE and score.coverage >= MIN_MASK_COVERAGE))


def nose_protrusion(shape: np.ndarray, transform: Similarity, surface: Surface, nose: int) -> float:
    """How far (mm) the input stands out along the face's forward axis (+Z of the template frame)
    at the fitted nose tip, above the smooth bowl (a + b x + c y + d r^2) fitted to a ring 30-45 mm
    around it. A nose: 10-30 mm; a sphere, the back of a head or a flat side: about 0."""
    points = transform.inverse(surface.points)
    offset = points[:, :2] - shape[nose, :2]
    lateral = np.linalg.norm(offset, axis=1)
    depth = points[:, 2] - shape[nose, 2]
    tip = (lateral < 8.0) & (np.abs(depth) < 15.0)
    ring = (lateral > 30.0) & (lateral < 45.0) & (np.abs(depth) < 80.0)
    if not tip.any() or ring.sum() < 8:
        return 0.0
    design = np.column_stack([np.ones(ring.sum()), offset[ring], lateral[ring] ** 2])
    coefficients, *_ = np.linalg.lstsq(design, depth[ring], rcond=None)
    return float(depth[tip].max() - coefficients[0])


def region_residual(shape: np.ndarray, corr: Correspondence, region: np.ndarray) -> tuple[float, float]:
    """(mean |point-to-plane| distance in mm, share with a correspondence) over the region."""
    valid = (corr.weight > 0) & region
    coverage = float(valid.sum() / max(region.sum(), 1))
    if not valid.any():
        return float("inf"), coverage
    return float(np.abs((corr.normal * (corr.target - shape)).sum(1))[valid].mean()), coverage


def pose_cost(shape: np.ndarray, corr: Correspondence, region: np.ndarray) -> float:
    """Lower is better: the face-region residual, doubled for each 30 % of the region uncovered."""
    residual, coverage = region_residual(shape, corr, region)
    return residual * 2.0 ** ((1.0 - coverage) / 0.3)


def symmetry(corr: Correspondence, transform: Similarity, surface: Surface, region: np.ndarray) -> float:
    """Median distance (mm) from the input points found by the face region, mirrored about the
    template's mid-plane (x = 0), to the input's surface: ~1 mm on a face fitted straight (the
    median, so hair, holes and a real face's own asymmetry do not count)."""
    valid = (corr.weight > 0) & region
    if valid.sum() < 10:
        return float("inf")
    mirrored = transform.apply(corr.target[valid] * np.array([-1.0, 1.0, 1.0]))
    closest, _, _ = closest_on_surface(mirrored, surface)
    return float(np.median(np.linalg.norm(mirrored - closest, axis=1)) / transform.scale)


NO_NOSE = ("no nose was found where the face should be: the mesh may not be a face, or it is turned in a way "
           "the fit could not work out")


def problem_of(score: FitScore) -> tuple[str, tuple[str, ...]]:
    """("", ()) when accepted, else the problem in plain words and the remedies, quickest first."""
    everything = ("landmarks", "region", "force")
    if not covered(score):
        return "only part of a face was found on the mesh", everything
    if not score.nose_mm >= MIN_NOSE_MM:
        return NO_NOSE, everything
    if not score.landmark_mm <= MAX_LANDMARK_MM and np.isfinite(score.landmark_mm):
        return "the fitted face does not agree with the landmarks placed on the mesh", ("landmarks", "force")
    if not score.margin >= MIN_MARGIN:
        return "the fit could not tell for sure which way the face is turned", ("landmarks", "force")
    if not score.residual_mm <= MAX_RESIDUAL_MM:
        return "the mesh's shape does not match a face closely enough", everything
    if not score.identity_norm <= MAX_IDENTITY_NORM:
        return "the face model had to be stretched far beyond any real face to fit", everything
    if not score.symmetry_mm <= MAX_SYMMETRY_MM:
        return "the fitted face is turned or shifted to one side of the mesh's face", ("landmarks", "force")
    return "", ()


def refusal(score: FitScore) -> FitRefused | None:
    problem, remedies = problem_of(score)
    if not problem:
        return None
    details = {k: getattr(score, k) for k in ("residual_mm", "coverage", "identity_norm", "nose_mm", "margin",
                                              "symmetry_mm", "landmark_mm")}
    return FitRefused(problem, remedies, details)
