"""Fit the template to any neutral face mesh: another topology, scale, pose and unit.

The steps, each in its own module (each measured by `animateme bench-register`):
1. surface.py: check the input (finite, faces, enough vertices; degenerate faces ignored; the
   caller's arrays never written) and pick the face part: the region the user names, else every
   large connected component is tried and the best kept.
2. pose.py: the rigid similarity from many starts, aligning the whole template and, apart, its
   face region (for masks); or landmarks.py, from the user's landmarks.
3. Pose hypotheses (fitter.py): the best few distinct poses, plus the winner turned upside down, slid up and
   down and rescaled, each get a short model fit (model_fit.py, on 400 spread template vertices where
   the input is dense enough: coarse to fine); the lowest face-region cost wins,
   and the runner-up's cost over the winner's is the pose margin the judge needs.
4. model_fit.py: identity modes, the face model's jaw and mouth shapes (an open or smiling mouth
   is an expression of a face: symmetric ones only, each weight in [0, 1]; the fit starts from the
   jaw closed, half open and open and keeps the best) + similarity, fully. The mouth's expression
   is kept apart (Fit.expression), so the model animates the face with its mouth closed while the
   binding follows the open lips.
5. judge.py: coverage (or a mask's core), residual, identity, nose, pose margin, symmetry,
   landmarks, on the face region; a fit that may be wrong raises FitRefused (problem in plain
   words, remedies), unless the caller forces it (`require_face=False`: the score records the
   refusal).
6. model_fit.polish_with_warp: the accepted fit again with smooth warp modes (a face beyond the
   identity model), kept only when the input asks for them; refine.py: offsets along the
   normals for the rest.
7. FitCache: fits stored under their fingerprint (fitresult.fit_fingerprint), the one key.
fitter.py's TemplateFit runs steps 1-6 for one call; fit_template checks the input and hands it over.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AnimateMeError, FitRefused
from .fitresult import FIT_VERSION, Fit, FitScore, Similarity, fit_fingerprint
from .fitter import TemplateFit
from ..geometry import components, vertex_normals
from .landmarks import LANDMARK_NAMES, check_landmarks
from ..progress import Cancel, Progress
from .surface import MAX_FIT_POINTS, MAX_VERTICES, MIN_VERTICES, check_mesh

__all__ = ["FIT_VERSION", "Fit", "FitCache", "FitRefused", "FitScore", "LANDMARK_NAMES", "MAX_FIT_POINTS",
           "MAX_VERTICES", "MIN_VERTICES", "Similarity", "components", "fit_fingerprint", "fit_template",
           "vertex_normals"]


def fit_template(vertices, faces, template, landmarks: dict | None = None, part=None,
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 refine: bool = True, require_face: bool = True, seed: int = 0) -> Fit:
    """Fit `template` (vertices mm, faces, identity_modes, landmarks, fingerprint) to a mesh.

    vertices (N,3), faces (F,3): any units, pose and topology; never modified.
    landmarks: {name: vertex index}, 3 or more names of LANDMARK_NAMES, optional.
    part: the face region, vertex indices or a boolean mask (a vertex group), optional.
    Raises FitRefused (problem, remedies) when the fit may be wrong, unless require_face is
    False: then the fit is returned with the refusal recorded in score.problem and score.forced.
    """
    vertices, faces = check_mesh(vertices, faces)
    landmarks = check_landmarks(landmarks, len(vertices))
    fingerprint = fit_fingerprint(vertices, faces, template.fingerprint, landmarks, part, refine)
    return TemplateFit(vertices, faces, template, landmarks, progress, cancel, seed).run(
        part, fingerprint, refine, require_face)


class FitCache:
    """Fits stored by their fingerprint in a folder: regenerating does not refit unchanged
    geometry. `register`, `generate` and the Blender operator all use this one key."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path(self, fingerprint: str) -> Path:
        return self.directory / f"fit-{fingerprint}.npz"

    def key(self, vertices, faces, template, landmarks=None, part=None, refine: bool = True) -> str:
        return fit_fingerprint(vertices, faces, template.fingerprint, landmarks, part, refine)

    def load(self, key: str, template) -> Fit | None:
        """The stored fit under `key`, or None (missing, unreadable, stale)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            fit = Fit.load(path)
        except AnimateMeError:
            return None
        return fit if fit.template_fingerprint == template.fingerprint and fit.fingerprint == key else None

    def fit(self, vertices, faces, template, **options) -> tuple[Fit, bool]:
        """(fit, came_from_cache). A forced fit is stored too, and only handed back when forced
        again (`require_face=False`): a refused fit never comes back from the cache unasked."""
        key = self.key(vertices, faces, template, options.get("landmarks"), options.get("part"),
                       options.get("refine", True))
        fit = self.load(key, template)
        if fit is not None and (fit.score.accepted or not options.get("require_face", True)):
            return fit, True
        fit = fit_template(vertices, faces, template, **options)
        fit.save(self.path(key))
        return fit, False
