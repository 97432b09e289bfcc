"""An ARKit blendshape rig on the user's own mesh, and a generated performance as its curves.

The rig is built once per registered face: the 52 ARKit shapes (`arkit.py`) personalised to the
fitted template by deformation transfer, low-passed as the frames output is, then carried onto
the user's vertices through the binding that carries every generated frame, by moving least
squares (`smooth_carry.py`) where the frames follow the template's triangles linearly. A
performance (K template deformations from the sampler) becomes 52 weight curves by bounded least
squares (`rig_weights.py`); the rig replays it as sum_s w_ks * shape_s on the user's mesh, smooth
at the user's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arkit import ARKIT_NAMES, arkit_basis, personalise
from ..errors import AnimateMeError
from .rig_weights import DEFAULT_SMOOTHING, WeightFit, solve_weights
from ..carry.smooth_carry import SmoothCarry
from ..sample.smoothing import smooth_deformations


@dataclass
class Rig:
    names: tuple[str, ...]        # ARKit's 52 names
    template_shapes: np.ndarray   # (52,V,3) on the fitted template, template frame mm
    shapes: np.ndarray            # (52,N,3) displacements of the user's vertices, user units/axes

    def replay(self, weights: np.ndarray) -> np.ndarray:
        """(K,52) weights -> (K,N,3) displacements of the user's vertices."""
        weights = np.asarray(weights, dtype=np.float32)
        if weights.ndim != 2 or weights.shape[1] != len(self.names):
            raise AnimateMeError(f"weights must be (K,{len(self.names)}), got {weights.shape}")
        return np.einsum("ks,snc->knc", weights, self.shapes.astype(np.float32))


def build_rig(template, fitted_template: np.ndarray, binding, smoothing: float = 0.0,
              carrier: SmoothCarry | None = None, still: np.ndarray | None = None) -> Rig:
    """The 52 ARKit shapes on a registered face: `template` (core Template), the fit's
    `template_space` (V,3 mm) and the binding of the user's vertices to it. `smoothing` low-passes
    the shapes over the template as the frames output is (core/sample/smoothing.py, the card's strength):
    the face model's shapes sampled on 1,000 vertices bend as sharply as the denoiser's lumps."""
    generic = arkit_basis(template.expression_modes, template.expression_names)
    personal = personalise(generic, template.vertices, fitted_template, template.faces)
    personal = smooth_deformations(personal, template.faces, smoothing)
    # Carried smoothly (smooth_carry.py), not along the template's edges, as the frames are;
    # `carrier` is the face's own, so its matrix is built once for the rig and the frames.
    # `still` (indices or mask) get exactly zero in every shape.
    shapes = (carrier or SmoothCarry(binding)).apply(personal, still=still)
    return Rig(names=ARKIT_NAMES, template_shapes=personal.astype(np.float32), shapes=shapes)


def perform(rig: Rig, template_deform: np.ndarray, smoothing: float = DEFAULT_SMOOTHING) -> WeightFit:
    """(K,V,3) generated template deformations -> the rig's (K,52) weights and the residual, mm."""
    return solve_weights(rig.template_shapes, template_deform, smoothing)


def rig_for_result(pipeline, vertices: np.ndarray, faces: np.ndarray, result, options=None,
                   smoothing: float = DEFAULT_SMOOTHING) -> tuple[Rig, WeightFit]:
    """The rig of the face a `Pipeline.generate` result was made on (its fit from the pipeline's
    cache, the rig built once per fit) and that clip as the rig's weights. Frames at progression 0
    get all-zero weights (the user's neutral, exactly, as in the per-frame output). A clip
    generated with output "rig" lies in the rig's span, so the weights replay it to the temporal
    smoothing; a free clip ("frames") loses what the 52 shapes cannot say."""
    from ..fit.fit_options import FitOptions

    options = options or FitOptions()
    vertices = np.asarray(vertices, dtype=np.float64)
    registered, _ = pipeline.register(vertices, np.asarray(faces), options=options)
    rig = pipeline.face_rig(registered, len(vertices), options)
    performance = perform(rig, result.template_deform, smoothing)
    performance.weights[np.asarray(result.progression) <= 0.0] = 0.0
    # Each shape folds no triangle; a mix of them may. Where this clip's would, the shapes are
    # relaxed there once more (for every later clip too: the region only grows).
    rig.shapes = registered.carrier.unfold(rig.shapes, options.outside_region(len(vertices)),
                                           probes=rig.replay(performance.weights))
    # What the rig still folds is said as the frames' folds are (a warning, never silence).
    result.folds_left = max(result.folds_left, registered.carrier.folds_left)
    return rig, performance
