"""One fit_template call as an object (TemplateFit): the template's basis prepared once, then the
steps registration.py's docstring lists, sharing it: each part's pose search and pose hypotheses
(ranked by quick model fits), its full fit and judgement, and the accepted fit's warp polish and
refinement. registration.fit_template is its front door; this module imports nothing of it."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..errors import AnimateMeError, FitRefused
from .fitresult import Fit, FitScore, Similarity
from ..geometry import vertex_normals
from .judge import MAX_RESIDUAL_MM, NO_NOSE, core_region, face_region, nose_protrusion, pose_cost, refusal, \
    region_residual, symmetry
from .landmarks import LANDMARK_NAMES, landmark_alignment, template_landmark_points
from .model_fit import EARLY_MODES, WARP_ITERATIONS, model_fit, polish_with_warp, spread_subset
from .pose import icp, rigid_alignment, rotation_from_vector
from .refine import refine_along_normals
from .surface import build_surface, candidate_parts, correspond, usable_faces

__all__ = ["TemplateFit"]

QUICK_ITERATIONS = 24           # model-fit iterations used to choose between pose hypotheses
SLIDE_MM = 30.0                 # pose hypotheses slide the template this far up and down the face
RESCALE = 1.25                  # and rescale it by this factor either way
MAX_POLISH_MOVE_MM = 4.0        # the warp polish may move the face region this far on average
POLISH_GAIN = 0.8               # and is kept only when it takes this share off the residual
MOUTH_RIDGE = 3.0               # prior on the jaw and mouth shapes in the fit (weight 1: a full shape)
MOUTH_BOUNDS = (0.0, 1.0)       # and their range: the expressions a face makes, no more
JAW_STARTS = (0.0, 0.5, 1.0)    # jaw openings the model fit is started from
SEARCH_NOSE_MM = 6.0            # a quick fit's nose must stand out this far for its pose to be ranked
RIVAL_WITHIN = 2.0              # a runner-up whose quick cost is within this factor is fitted fully
COARSE_VERTICES = 400           # template vertices that carry the pose ranking and the polish's first steps
FINE_STEPS = 20                 # the polish's last steps, which see every template vertex
JAW_FINE_STEPS = 8              # and the jaw starts' last steps
COARSE_INPUT = 2.0              # inputs with fewer points than this many per template vertex are fitted fine


def _variants(start: Similarity) -> list[Similarity]:
    """The pose hypotheses a good-looking winner must beat: upside down, facing backwards, slid
    up and down along the face, larger and smaller."""
    out = []
    for axis in ((0.0, 0.0, np.pi), (0.0, np.pi, 0.0)):
        out.append(Similarity(start.scale, start.rotation @ rotation_from_vector(np.array(axis)), start.translation))
    up = start.rotation[:, 1] * start.scale
    for slide in (SLIDE_MM, -SLIDE_MM):
        out.append(Similarity(start.scale, start.rotation, start.translation + slide * up))
    for factor in (RESCALE, 1.0 / RESCALE):
        out.append(Similarity(start.scale * factor, start.rotation, start.translation))
    return out


def _rank_poses(template_points, template_faces, modes, surface, starts, region, nose, cancel,
                coarse=None) -> tuple[list, bool]:
    """Quick model fits from every hypothesis: ([(cost, fitted start)] best first, one per
    distinct pose, only poses with a nose when any has one (a smooth back of the head can be
    fitted as well as a face by a flexible model, but it has no nose); whether any had one)."""
    trials = []

    def trial(start: Similarity):
        shape, _, quick, corr = model_fit(template_points, template_faces, modes[:EARLY_MODES], surface, start,
                                          iterations=QUICK_ITERATIONS, cancel=cancel, coarse=coarse)
        trials.append((pose_cost(shape, corr, region), nose_protrusion(shape, quick, surface, nose), quick))

    for start in starts:
        trial(start)
    best = min(range(len(trials)), key=lambda k: trials[k][0])
    for variant in _variants(trials[best][2]):
        trial(variant)
    with_nose = [t for t in trials if t[1] >= SEARCH_NOSE_MM]
    if not with_nose and len(starts) > 1:
        # No nose anywhere: hair and shoulders can hold the best start's pose off the face. The
        # runner-up start gets the same hypotheses before the mesh is called faceless.
        runner_up = sorted(range(len(starts)), key=lambda k: trials[k][0])[1]
        for variant in _variants(trials[runner_up][2]):
            trial(variant)
        with_nose = [t for t in trials if t[1] >= SEARCH_NOSE_MM]
    ranked: list = []
    for cost, _, quick in sorted(with_nose or trials, key=lambda t: t[0]):
        if all(_distinct(quick, other) for _, other in ranked):
            ranked.append((cost, quick))
    return ranked, bool(with_nose)


def _distinct(a: Similarity, b: Similarity) -> bool:
    """Poses far enough apart that they put the face in different places (a fit 25 mm or 30
    degrees or 20 % in scale away from another is a different answer, not the same one)."""
    angle = np.degrees(np.arccos(np.clip((np.trace(a.rotation.T @ b.rotation) - 1) / 2, -1, 1)))
    shift = np.linalg.norm(a.translation - b.translation) / a.scale
    return angle > 30.0 or shift > 25.0 or abs(np.log(a.scale / b.scale)) > np.log(1.2)


def _polish(shape, weights, transform, residual, template_points, template_faces, modes, prior, bounds, surface,
            region, cancel, coarse=None):
    """The judged fit with smooth warps added (model_fit.polish_with_warp), kept only when the
    input asks for them (the face-region residual falls by POLISH_GAIN: a warped face's falls by
    half or more, a face the model already spans gains ~2 %, and then the extra freedom only
    bends what a mask does not show) and it stays where the judged fit put the face: the polish
    may sharpen an accepted fit, never move it somewhere the judge did not see. `modes` and
    `weights` are the fit's (identity and mouth), `prior` their fixed prior (NaN: the identity's)
    and `bounds` their range."""
    polished = polish_with_warp(template_points, template_faces, modes, surface, transform, weights, cancel,
                                mode_ridge=prior, mode_bounds=bounds, coarse=coarse,
                                fine_from=WARP_ITERATIONS - FINE_STEPS)
    new_shape, new_weights, new_transform, new_corr = polished
    before = transform.apply(shape)[region]
    moved = np.linalg.norm(new_transform.apply(new_shape)[region] - before, axis=1).mean() / transform.scale
    if moved <= MAX_POLISH_MOVE_MM and region_residual(new_shape, new_corr, region)[0] <= POLISH_GAIN * residual:
        return new_shape, new_weights, new_transform
    return shape, weights, transform


def _mouth_shapes(template, count: int) -> tuple[list[str], np.ndarray]:
    """(names, (E,V,3) mm): the face model's jaw and mouth shapes the fit may use, an input whose
    mouth is open or smiling being an expression of a face whose lips the template's must meet.
    Symmetric only: each _L/_R pair as one shape, no jawLeft/Right or mouthLeft/Right, so the
    mouth cannot be pulled sideways to cover a face cut in half (asymmetry is the identity's).
    Not mouthClose: with jawOpen it drops the jaw behind closed lips, which a neutral face with a
    long chin would take instead of its identity. Empty for a template without these shapes."""
    shapes = np.asarray(getattr(template, "expression_modes", np.zeros((0, count, 3))), dtype=np.float64)
    index = {str(n): k for k, n in enumerate(getattr(template, "expression_names", []))}
    if shapes.shape[1:] != (count, 3):
        return [], np.zeros((0, count, 3))
    names, chosen = [], []
    for name in sorted(index):
        if not name.startswith(("jaw", "mouth")) or name == "mouthClose" or name.endswith("_R") or \
                name in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
            continue
        if name.endswith("_L"):
            right = name[:-2] + "_R"
            if right not in index:
                continue
            names.append(name[:-2])
            chosen.append(shapes[index[name]] + shapes[index[right]])
        else:
            names.append(name)
            chosen.append(shapes[index[name]])
    return names, (np.stack(chosen) if chosen else np.zeros((0, count, 3)))


FullFit = namedtuple("FullFit", "shape weights transform corr cost nose_mm")      # one full model fit
Candidate = namedtuple("Candidate", "shape weights transform score surface part refused")   # one part's fit, judged


class TemplateFit:
    """One fit_template call: the template's basis prepared once (centred points, identity modes
    and the jaw and mouth shapes, their prior and bounds, face region and core, nose, the user's
    landmark pairs), then the steps that share it: each part's pose search, its full fit and
    judgement, and the chosen fit's polish. One random generator serves every step, in order."""

    def __init__(self, vertices, faces, template, landmarks, progress, cancel, seed):
        self.template, self.progress, self.cancel = template, progress, cancel
        self.rng = np.random.default_rng(seed)
        self.report(0.0, "checking the mesh")
        self.vertices, self.faces = vertices, usable_faces(vertices, faces)
        if len(self.faces) == 0:
            raise AnimateMeError("every face of the mesh is degenerate (zero area): re-export the mesh")
        template_vertices = np.asarray(template.vertices, dtype=np.float64)
        self.centre = template_vertices.mean(0)
        self.points = points = template_vertices - self.centre      # the template, centred
        self.modes = np.asarray(template.identity_modes, dtype=np.float64)
        self.template_faces = np.asarray(template.faces, dtype=np.int64)
        self.region, self.core = face_region(template), core_region(template)
        table = np.asarray(getattr(template, "landmarks", np.zeros(0)), dtype=np.int64)
        self.nose = int(table[LANDMARK_NAMES["nose_tip"]]) if len(table) >= 68 else int(np.argmax(points[:, 2]))
        self.landmark_pairs = None
        if landmarks:
            names = list(landmarks)
            self.landmark_pairs = (template_landmark_points(template, names),
                                   vertices[[landmarks[n] for n in names]])

        # The jaw and mouth shapes go in from the start, beside the largest identity modes: a wide-open
        # mouth fitted by identity alone first drags the face out of shape.
        mouth_names, self.mouth = _mouth_shapes(template, len(points))
        early = min(EARLY_MODES, len(self.modes))
        self.every = np.concatenate([self.modes[:early], self.mouth, self.modes[early:]])
        self.early_modes = early + len(self.mouth)
        self.prior = np.full(len(self.every), np.nan)
        self.prior[early:self.early_modes] = MOUTH_RIDGE
        self.is_mouth = np.zeros(len(self.every), dtype=bool)
        self.is_mouth[early:self.early_modes] = True
        self.bounds = np.tile([-np.inf, np.inf], (len(self.every), 1))
        self.bounds[self.is_mouth] = MOUTH_BOUNDS
        jaw = [k for k, n in enumerate(mouth_names) if n == "jawOpen"]
        self.jaw = early + jaw[0] if jaw else None       # the jawOpen weight's index in `every`
        # Coarse to fine: the quick fits that rank poses run on a spread subset of the template's
        # vertices; the jaw starts and the polish do until their last JAW_FINE_STEPS / FINE_STEPS,
        # so that the costs compared are full-resolution ones (all coarse, the procedural head's
        # mouth groove was read as more open and its lips crinkled in angry and disgust). The full
        # fit sees every vertex: started coarse, it lands up to 0.5 mm further off on the real
        # faces' mouth corners. A sparse input (a small mask, a low-poly head) keeps every vertex:
        # it gives few pairs already, and thinned further they rank a small mask's poses wrongly.
        self.coarse = spread_subset(points, COARSE_VERTICES)

    def coarse_for(self, surface):
        """The coarse level for fits on `surface`, or None (every vertex) where the input is sparse."""
        return self.coarse if len(surface.points) >= COARSE_INPUT * len(self.points) else None

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(float(fraction), message)

    def opening(self, surface, start: Similarity) -> np.ndarray:
        """Start weights with the jaw as open as the input's: a quick fit from each opening, the
        lowest face-region cost wins (from closed, a wide-open mouth's chin slides along the
        input's and the jaw never opens)."""
        costs, starts = [], []
        for amount in JAW_STARTS:
            weights = np.zeros(len(self.every))
            weights[self.jaw] = amount
            shape, _, _, corr = model_fit(self.points, self.template_faces, self.every, surface, start,
                                          iterations=QUICK_ITERATIONS, weights=weights, fixed_ridge=self.prior,
                                          early_modes=self.early_modes, cancel=self.cancel, bounds=self.bounds,
                                          coarse=self.coarse_for(surface), fine_from=QUICK_ITERATIONS - JAW_FINE_STEPS)
            costs.append(pose_cost(shape, corr, self.region))
            starts.append(weights)
        return starts[int(np.argmin(costs))]

    def full_fit(self, surface, start: Similarity, fraction: float) -> FullFit:
        """The model fit with every mode from `start` (the jaw as open as the input's), its
        face-region cost and its nose."""
        shape, weights, fitted, corr = model_fit(
            self.points, self.template_faces, self.every, surface, start, landmark_pairs=self.landmark_pairs,
            progress=lambda f, m: self.report(fraction + 0.25 * f, m), cancel=self.cancel,
            fixed_ridge=self.prior, early_modes=self.early_modes,
            weights=self.opening(surface, start) if self.jaw is not None else None, bounds=self.bounds)
        return FullFit(shape, weights, fitted, corr, pose_cost(shape, corr, self.region),
                        nose_protrusion(shape, fitted, surface, self.nose))

    def best_full_fit(self, surface, ranked) -> tuple[FullFit, float]:
        """(full fit, pose margin) of one part: from the user's landmarks, else from its best
        searched pose, or its runner-up's when that converges lower."""
        if self.landmark_pairs is not None:
            transform = landmark_alignment(self.landmark_pairs[0].on(self.points), self.landmark_pairs[1])
            transform = Similarity(*icp(self.points, surface, transform.scale, transform.rotation,
                                        transform.translation, 10, 8.0)[:3])
            self.report(0.3, "fitting the face model")
            return self.full_fit(surface, transform, 0.3), np.inf   # the user said where the face is
        self.report(0.3, "fitting the face model")
        result = self.full_fit(surface, ranked[0][1], 0.3)
        margin = ranked[1][0] / max(ranked[0][0], 1e-9) if len(ranked) > 1 else np.inf
        if len(ranked) > 1 and margin < RIVAL_WITHIN:
            # A close runner-up is fitted fully too: the margin is measured between converged
            # fits, and the better one wins. Two that converge to one pose are no rivals.
            rival = self.full_fit(surface, ranked[1][1], 0.55)
            if not _distinct(rival.transform, result.transform) or rival.nose_mm < SEARCH_NOSE_MM:
                margin = np.inf
            else:
                if rival.cost < result.cost:
                    result, rival = rival, result
                margin = rival.cost / max(result.cost, 1e-9)
        return result, margin

    def judge_part(self, index, surface, ranked, searched_nose=True) -> Candidate:
        """The full fit of one part from its pose search (or the user's landmarks), judged; a part
        whose search found no nose is refused for that, whatever its full fit shows."""
        result, margin = self.best_full_fit(surface, ranked)
        shape, weights, transform, corr = result[:4]
        identity = weights[~self.is_mouth]
        residual, coverage = region_residual(shape, corr, self.region)
        score = FitScore(residual, coverage, core_coverage=region_residual(shape, corr, self.core)[1],
                         identity_norm=float(np.sqrt(np.mean(identity ** 2))),
                         nose_mm=nose_protrusion(shape, transform, surface, self.nose), margin=margin,
                         symmetry_mm=symmetry(corr, transform, surface, self.region))
        if self.landmark_pairs is not None:
            fitted = transform.apply(self.landmark_pairs[0].on(shape))
            score.landmark_mm = float(np.linalg.norm(fitted - self.landmark_pairs[1], axis=1).mean()
                                      / transform.scale)
        refused = refusal(score) if searched_nose else FitRefused(NO_NOSE, ("landmarks", "region", "force"),
                                                                  {"nose_mm": score.nose_mm})
        score.problem = refused.problem if refused else ""
        return Candidate(shape, weights, transform, score, surface, index, refused)

    def searched_parts(self, part):
        """(index, surface, ranked poses) per part, the most face-like first: the part that the
        template's face region fits best rigidly (a head before a box torso, shoulders or a hair
        cap larger than it), so that its pose search usually ends the search. One whose pose search
        finds no nose, or no pose the judge's residual limit would pass (a box's corner can pass
        for a nose), comes after the others, so it costs a pose search, not a full fit, when
        another part is the face."""
        parts, aligned, deferred = candidate_parts(self.vertices, self.faces, part), [], []
        for k, index in enumerate(parts):
            surface = build_surface(self.vertices, self.faces, index, self.rng)
            self.report(0.05 + 0.2 * k / len(parts), "aligning the template")
            if self.landmark_pairs is not None:
                yield index, surface, None, True
                continue
            # Two searches: the whole template (a head's ears, neck and temples help place it) and
            # its face region alone (a mask has none of those, and they would pull it off the face).
            starts = rigid_alignment(self.points, surface, self.rng, self.cancel, keep=2)
            starts += rigid_alignment(self.points, surface, self.rng, self.cancel, keep=2, region=self.region)
            aligned.append((index, surface, starts))
        if len(aligned) > 1:
            face_points = self.points[self.region]
            aligned.sort(key=lambda entry: min(icp(face_points, entry[1], s.scale, s.rotation, s.translation, 0, 8.0)[3]
                                               for s in entry[2]))
        for k, (index, surface, starts) in enumerate(aligned):
            self.report(0.1 + 0.2 * k / len(aligned), "choosing the pose")
            ranked, has_nose = _rank_poses(self.points, self.template_faces, self.modes, surface, starts,
                                           self.region, self.nose, self.cancel, self.coarse_for(surface))
            if has_nose and ranked[0][0] <= MAX_RESIDUAL_MM:
                yield index, surface, ranked, has_nose
            else:
                deferred.append((index, surface, ranked, has_nose))
        yield from deferred

    def run(self, part, fingerprint: str, refine: bool, require_face: bool) -> Fit:
        """Each part judged, the most face-like first, until one is accepted; the best of them
        (accepted first, then the closer fit) polished, refined and returned as a Fit."""
        best = None
        for index, surface, ranked, has_nose in self.searched_parts(part):
            # A part none of whose searched poses shows even a small nose (SEARCH_NOSE_MM, under half
            # what the judge asks) is refused without its full fit: a cube or a sphere is told seconds
            # sooner. A forced fit still gets one, recorded as refused for the same reason.
            if require_face and not has_nose:
                continue
            candidate = self.judge_part(index, surface, ranked, searched_nose=has_nose)
            if best is None or _standing(candidate) > _standing(best):
                best = candidate
            if candidate.score.accepted:
                break   # the first part the judge accepts is the face
        if best is None:
            raise FitRefused(NO_NOSE, ("landmarks", "region", "force"), {"nose_mm": 0.0})
        if best.refused is not None:
            if require_face:
                raise best.refused
            best.score.forced = True
        return self.finish(best, fingerprint, refine)

    def finish(self, best: Candidate, fingerprint: str, refine: bool) -> Fit:
        """The chosen fit polished and refined (when asked), back in the template's own frame."""
        shape, weights, transform, score, surface, part_index, _ = best
        if refine:
            self.report(0.8, "fitting what the face model cannot express")
            # The judged residual (score.residual_mm) is the one the polish must improve on.
            shape, weights, transform = _polish(shape, weights, transform, score.residual_mm, self.points,
                                                self.template_faces, self.every, self.prior, self.bounds, surface,
                                                self.region, self.cancel, self.coarse_for(surface))
            self.report(0.85, "refining the fit")
            shape = refine_along_normals(shape, self.template_faces, transform, surface)
            corr = correspond(shape, vertex_normals(shape, self.template_faces), transform, surface, 3.0)
            score.refined_residual_mm = region_residual(shape, corr, self.region)[0]
        # Back to the template's own frame (undo the centring) for the stored transform.
        centre = self.centre
        transform = Similarity(transform.scale, transform.rotation,
                               transform.translation - transform.scale * transform.rotation @ centre)
        template_space = shape + centre
        identity, expression = weights[~self.is_mouth], np.tensordot(weights[self.is_mouth], self.mouth, axes=1)
        self.report(1.0, "fit done")
        return Fit(vertices=transform.apply(template_space), template_space=template_space, transform=transform,
                   score=score, fingerprint=fingerprint, template_fingerprint=self.template.fingerprint,
                   identity=identity.astype(np.float32), part=part_index,
                   template_faces=self.template_faces.astype(np.int32), expression=expression.astype(np.float32))


def _standing(candidate: Candidate):        # accepted first, then the closer fit
    return candidate.score.accepted, -candidate.score.residual_mm
