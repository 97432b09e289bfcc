"""What a fit's score means, in an artist's words, and the refusal that carries what to do.

The registration core judges a fit (core/fit/judge.py) and words its refusal (`FitRefused`); this
module only words the judgement for the fit preview: one line per criterion (what was measured, the
limit, what it means). Every field is read with a default, so a score missing a criterion (a fit
cached by an older version) still reads.
"""

from __future__ import annotations

import math

from . import judge
from ..errors import FitRefused

# Quickest first: landmarks take a minute, a face-region group a few, "use anyway" is a last resort.
DEFAULT_REMEDIES = ("landmarks", "region", "force")


def _value(score, name: str) -> float:
    value = getattr(score, name, float("nan"))
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _limit(name: str, default: float) -> float:
    """A threshold of the core's judge (the words and the judgement cannot drift apart)."""
    return float(getattr(judge, name, default))


def score_lines(score) -> list[tuple[bool, str]]:
    """[(passed, words)] for each criterion the score has: what it measures and its limit."""
    lines = []
    residual, coverage = _value(score, "residual_mm"), _value(score, "coverage")
    identity, nose = _value(score, "identity_norm"), _value(score, "nose_mm")
    max_residual = _limit("MAX_RESIDUAL_MM", 1.5)
    if math.isfinite(residual):
        lines.append((residual <= max_residual,
                      f"Distance to your surface: {residual:.2f} mm on average (good: under {max_residual:g} mm)"))
    min_coverage = _limit("MIN_COVERAGE", 0.6)
    core = _value(score, "core_coverage")
    if math.isfinite(coverage) and math.isfinite(core):
        min_core, min_mask = _limit("MIN_CORE_COVERAGE", 0.9), _limit("MIN_MASK_COVERAGE", 0.5)
        lines.append((judge.covered(score),
                      f"Template on your mesh: {100 * coverage:.0f}%, eyes, nose and mouth {100 * core:.0f}% "
                      f"(needs {100 * min_coverage:.0f}%, or {100 * min_mask:.0f}% with {100 * min_core:.0f}% of "
                      "eyes, nose and mouth; less: the face is cut off or the fit is on the wrong part)"))
    elif math.isfinite(coverage):
        lines.append((coverage >= min_coverage,
                      f"Template on your mesh: {100 * coverage:.0f}% (needs {100 * min_coverage:.0f}%; "
                      "less: the face is cut off or the fit is on the wrong part)"))
    max_identity = _limit("MAX_IDENTITY_NORM", 3.2)
    if math.isfinite(identity):
        lines.append((identity <= max_identity,
                      f"Face shape plausibility: {identity:.1f} (a real face: about 1; limit {max_identity:g})"))
    min_nose = _limit("MIN_NOSE_MM", 14.0)
    if math.isfinite(nose):
        lines.append((nose >= min_nose,
                      f"Nose stands out: {nose:.0f} mm (needs {min_nose:g} mm; less: facing the wrong way)"))
    margin, symmetry, landmark = (_value(score, n) for n in ("margin", "symmetry_mm", "landmark_mm"))
    min_margin = _limit("MIN_MARGIN", 1.25)
    if math.isfinite(margin):
        lines.append((margin >= min_margin, f"Pose certainty: the next best pose fits {margin:.2f}x worse "
                                            f"(needs {min_margin:g}x; less: it could be another pose)"))
    max_symmetry = _limit("MAX_SYMMETRY_MM", 3.0)
    if math.isfinite(symmetry):
        lines.append((symmetry <= max_symmetry, f"Symmetry about the fitted mid-line: {symmetry:.1f} mm "
                                                f"(good: under {max_symmetry:g} mm; more: turned or slid sideways)"))
    max_landmark = _limit("MAX_LANDMARK_MM", 10.0)
    if math.isfinite(landmark):
        lines.append((landmark <= max_landmark, f"Your landmarks to the fitted ones: {landmark:.1f} mm "
                                                f"(good: under {max_landmark:g} mm)"))
    return lines


def accepted(score) -> bool:
    value = getattr(score, "accepted", False)
    return bool(value() if callable(value) else value)


def verdict(score) -> str:
    """One line: whether the fit is good enough to animate, and why not."""
    if accepted(score):
        return "Good fit: the animation will land on the right places of the face"
    return "Refused: " + refusal_problem(score)


def refusal_problem(score) -> str:
    """What was wrong with the fit, in plain words: the judge's own (no internal score names)."""
    return str(getattr(score, "problem", "") or "").strip() or "the fit does not look like a face"


def refusal(score, landmarks_given: bool = False) -> FitRefused:
    """The refusal of a fit kept in memory (forced once) and now asked for without force."""
    problem = refusal_problem(score)
    if landmarks_given:
        problem += "; check the landmarks are on the right vertices (left/right are the face's own)"
    return FitRefused(problem, DEFAULT_REMEDIES)
