"""One generation, end to end: registration -> expression signal -> sampler -> transfer.

The Blender operator, the headless batch and `animateme generate` all call `Pipeline.generate`.
A `Pipeline` keeps what is slow to make and does not change between clicks: the template, the
ONNX session (per model file and device), and the fit + binding of each mesh it has seen, keyed by
the mesh's fingerprint, so moving the interpolation slider only re-runs the sampler.

Everything here works in the caller's own coordinates and units; the caller converts Blender's
Z-up axes with `frames.py` before and after (the fit also tolerates any orientation).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AnimateMeError
from .progress import Cancel, Cancelled, Progress
from .fit.fit_options import FitOptions
from .request import SAMPLER_MODES, Request
from .vocabulary import OUTPUTS, names

DEVICES = {"auto": "auto", "cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}
MODEL_NAME = "animateme.onnx"
FIT_CACHE_SIZE = 8   # meshes whose fit + binding stay in memory


def anchor_to_neutral(deform: np.ndarray, progression: np.ndarray) -> np.ndarray:
    """(K,V,3) deformations whose frames at progression 0 are exactly zero.

    A denoiser leaves a small offset where the signal is zero (about half a millimetre), so the
    clip would pop at its first and last frames. That offset, taken from the neutral frames and
    interpolated in time between them, is removed in proportion to how far from the apex a frame
    is: neutral frames become exactly zero, the apex is untouched, the motion stays continuous.
    """
    deform = np.array(deform, dtype=np.float32, copy=True)
    progression = np.asarray(progression, dtype=np.float64)
    rest = progression <= 0.0
    if rest.all():
        deform[:] = 0.0
        return deform
    if not rest.any():
        return deform
    zero = np.flatnonzero(rest)
    frames = np.arange(len(progression))
    left = zero[np.clip(np.searchsorted(zero, frames, side="right") - 1, 0, len(zero) - 1)]
    right = zero[np.clip(np.searchsorted(zero, frames, side="left"), 0, len(zero) - 1)]
    left = np.where(left <= frames, left, right)        # before the first neutral frame: hold it
    right = np.where(right >= frames, right, left)      # after the last one: hold it
    span = np.maximum(right - left, 1)
    t = ((frames - left) / span)[:, None, None]
    bias = (1.0 - t) * deform[left] + t * deform[right]
    fade = (1.0 - progression / progression.max())[:, None, None]
    deform = (deform - fade * bias).astype(np.float32)
    deform[rest] = 0.0
    return deform


@dataclass
class Result:
    displacements: np.ndarray        # (K,N,3) in the input's units and axes, added to its vertices
    template_deform: np.ndarray      # (K,V,3) template mm (what the sampler produced)
    progression: np.ndarray          # (K,)
    signal: np.ndarray               # (K,C)
    request: Request
    device: str                      # what actually ran: CPUExecutionProvider / CUDAExecutionProvider
    fit_cached: bool
    timings: dict = field(default_factory=dict)   # seconds per stage
    fit: object = None               # the registration.Fit used (score, fitted template)
    forced: bool = False             # the fit was refused and used anyway (FitOptions.force)
    folds_left: int = 0              # triangles of the user's mesh still turned over in the worst frame


@dataclass
class _Registered:
    fit: object
    binding: object
    rig: object = None    # the face's ARKit rig (core/rig/build.py), built on first use and kept with its fit
    carrier: object = None  # core/carry/smooth_carry.SmoothCarry of the binding: what carries every frame

    def __post_init__(self):
        if self.carrier is None:
            from .carry.smooth_carry import SmoothCarry

            self.carrier = SmoothCarry(self.binding)


def package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def default_model_path() -> Path:
    """The model inside the installed extension, else the repository's models/ (development)."""
    candidates = []
    if os.environ.get("ANIMATEME_MODELS_DIR"):
        candidates.append(Path(os.environ["ANIMATEME_MODELS_DIR"]) / MODEL_NAME)
    candidates += [package_dir() / "models" / MODEL_NAME, package_dir().parent / "models" / MODEL_NAME]
    return next((c for c in candidates if c.exists()), candidates[0])


def default_template_path() -> Path:
    candidates = []
    if os.environ.get("ANIMATEME_DATA_DIR"):
        candidates.append(Path(os.environ["ANIMATEME_DATA_DIR"]) / "template.npz")
    candidates += [package_dir() / "data" / "template.npz", package_dir().parent / "data" / "template.npz"]
    return next((c for c in candidates if c.exists()), candidates[0])


class Pipeline:
    """Holds the template, the runtime and cached registrations; `generate` does one clip."""

    def __init__(self, model_path: str | Path | None = None, template_path: str | Path | None = None,
                 fit_cache_dir: str | Path | None = None):
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.template_path = Path(template_path) if template_path else default_template_path()
        self.fit_cache_dir = Path(fit_cache_dir) if fit_cache_dir else None
        self._template = None
        self._runtimes: dict[str, object] = {}
        self._registered: OrderedDict[str, _Registered] = OrderedDict()

    @property
    def template(self):
        if self._template is None:
            from .template import Template

            self._template = Template.load(self.template_path)
        return self._template

    def runtime(self, device: str = "auto"):
        """The ONNX session for `device` (auto / cpu / gpu), opened once."""
        if device not in DEVICES:
            raise AnimateMeError(f"unknown device {device!r}: use auto, cpu or gpu")
        device = DEVICES[device]
        if device not in self._runtimes:
            from .sample.runtime import load_runtime

            self._runtimes[device] = load_runtime(self.model_path, self.template, device=device)
        return self._runtimes[device]

    def mesh_key(self, vertices: np.ndarray, faces: np.ndarray, options: FitOptions = FitOptions()) -> str:
        """The fit's one key (registration's fit_fingerprint, also FitCache's: geometry with its size —
        the same shape in metres and millimetres needs two fits —, topology, landmarks, region,
        template). `force` is not part of it: the same fit, judged."""
        from .fit.registration import fit_fingerprint

        return fit_fingerprint(vertices, faces, self.template.fingerprint, options.core_landmarks(),
                               options.fit_part(faces, len(vertices)))

    def is_registered(self, vertices: np.ndarray, faces: np.ndarray, options: FitOptions = FitOptions()) -> bool:
        """A fit for this mesh (and these options) is in memory and usable: Generate won't refit."""
        registered = self._registered.get(self.mesh_key(vertices, faces, options))
        if registered is None:
            return False
        from .fit.fit_report import accepted

        return options.force or accepted(registered.fit.score)

    def register(self, vertices: np.ndarray, faces: np.ndarray, progress: Progress | None = None,
                 cancel: Cancel | None = None, options: FitOptions = FitOptions()) -> tuple[_Registered, bool]:
        """Fit + binding for this mesh, from memory or the fit cache folder when unchanged.
        A refused fit raises FitRefused (what was wrong, what to do) unless `options.force`."""
        from .fit.fit_report import accepted, refusal
        from .fit.registration import FitCache, fit_template

        options = options.check(len(vertices))
        key = self.mesh_key(vertices, faces, options)
        cached = key in self._registered
        registered = self._registered.get(key)
        if registered is not None:
            self._registered.move_to_end(key)
        else:
            # A refused fit is stored too, and comes back from the cache only when forced again.
            cache = FitCache(self.fit_cache_dir) if self.fit_cache_dir is not None else None
            fit = cache.load(key, self.template) if cache is not None else None
            if fit is not None and not (options.force or accepted(fit.score)):
                fit = None
            cached = fit is not None
            if fit is None:
                # The core refuses inside the fit, in its words and with its remedies.
                fit = fit_template(vertices, faces, self.template, landmarks=options.core_landmarks(),
                                   part=options.fit_part(faces, len(vertices)), progress=progress, cancel=cancel,
                                   require_face=not options.force)
                if cache is not None:
                    fit.save(cache.path(key))
            if cancel is not None and cancel():
                raise Cancelled("generation cancelled")
            from .carry.transfer import bind

            from .carry.smooth_carry import SmoothCarry

            binding = bind(fit, vertices, faces, template=self.template)
            registered = _Registered(fit=fit, binding=binding, carrier=SmoothCarry(binding, mesh=(vertices, faces)))
            self._registered[key] = registered
            while len(self._registered) > FIT_CACHE_SIZE:
                self._registered.popitem(last=False)
        if not options.force and not accepted(registered.fit.score):
            raise refusal(registered.fit.score, landmarks_given=bool(options.landmarks))
        return registered, cached

    def face_rig(self, registered: _Registered, vertex_count: int, options: FitOptions):
        """The registered face's ARKit rig (core/rig/build.py), built on first use and kept with its fit,
        so every later clip on the face reuses its shapes. With a face region, the shapes leave
        every vertex outside it exactly still."""
        if registered.rig is None:
            from .rig.build import build_rig
            from .sample.runtime import read_card
            from .sample.settings import card_settings

            # The shapes low-passed as the frames output is, so the rig is no rougher than the frames.
            smoothing = card_settings(read_card(self.model_path))["smoothing"]
            rig = build_rig(self.template, registered.fit.neutral_space, registered.binding, smoothing,
                            carrier=registered.carrier, still=options.outside_region(vertex_count))
            registered.rig = rig
        return registered.rig

    def generate(self, vertices: np.ndarray, faces: np.ndarray, request: Request, device: str = "auto",
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 options: FitOptions = FitOptions(), output: str = "frames") -> Result:
        """(N,3) vertices + (F,3) triangles of a neutral face -> K frames of displacements.
        With a face region, every vertex outside it gets exactly zero displacement.
        output "rig" samples the clip in the span of the face's ARKit rig (every step's prediction
        projected on its shapes, weights in [0, 1]; no output smoothing, the shapes are smooth), so
        the rig's curves play exactly what was sampled; "frames" samples freely."""
        from .fit.fit_report import accepted

        request.validate()
        if output not in names(OUTPUTS):
            raise AnimateMeError(f"unknown output {output!r}: use {' or '.join(names(OUTPUTS))}")
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces)

        def report(start: float, stop: float) -> Progress:
            return lambda f, m: progress(start + (stop - start) * float(f), m) if progress else None

        def check_cancel() -> None:
            if cancel is not None and cancel():
                raise Cancelled("generation cancelled")

        timings = {}
        started = time.perf_counter()
        report(0.0, 0.0)(0.0, "loading the model")
        runtime = self.runtime(device)  # first, so a missing model or GPU fails before the slow fit
        timings["load"] = time.perf_counter() - started
        check_cancel()

        mark = time.perf_counter()
        try:
            registered, cached = self.register(vertices, faces, report(0.02, 0.45), cancel, options)
        except AnimateMeError:
            check_cancel()  # the fit stops with its own error when cancelled: report it as a cancel
            raise
        timings["register"] = time.perf_counter() - mark
        check_cancel()

        mark = time.perf_counter()
        signal = request.signal(tuple(runtime.labels)) * runtime.full_intensity[None, :]
        from .sample.sampler import sample
        from .sample.settings import SamplingSettings

        mode = SAMPLER_MODES[request.quality]
        in_span, constrain = {}, None
        if output == "rig":
            from .rig.rig_weights import SpanProjection

            # Sampled in the rig's span, unsmoothed: the rig's shapes are smoothed already.
            constrain = SpanProjection(self.face_rig(registered, len(vertices), options).template_shapes)
            in_span = {"smoothing": 0.0}
        settings = SamplingSettings.for_runtime(runtime, mode, temperature=request.variation, **in_span)
        deform = sample(runtime, registered.fit.neutral_space, signal, settings, seed=int(request.seed),
                        progress=report(0.45, 0.95), cancel=cancel, constrain=constrain)
        progression = request.progression()
        deform = anchor_to_neutral(deform, progression)
        timings["sample"] = time.perf_counter() - mark
        check_cancel()

        mark = time.perf_counter()
        # Smoothly (moving least squares), not linearly along the template's triangles: on a dense
        # face the linear carry bends along every template edge, lumps and creases the artist sees.
        # Where a triangle of the user's mesh would turn over, the motion there is relaxed (unfold.py).
        displacements = registered.carrier.apply(deform, still=options.outside_region(len(vertices)))
        displacements[progression <= 0.0] = 0.0       # the user's neutral, exactly
        timings["transfer"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        report(0.0, 1.0)(1.0, "done")
        return Result(displacements=displacements, template_deform=deform, progression=progression,
                      signal=signal, request=request, device=runtime.provider, fit_cached=cached, timings=timings,
                      fit=registered.fit, forced=not accepted(registered.fit.score),
                      folds_left=registered.carrier.folds_left)


_shared: dict[tuple, Pipeline] = {}


def shared_pipeline(model_path: str | Path | None = None, template_path: str | Path | None = None,
                    fit_cache_dir: str | Path | None = None) -> Pipeline:
    """One Pipeline per (model, template) for the whole session, so fits survive between clicks."""
    key = (str(model_path or default_model_path()), str(template_path or default_template_path()))
    if key not in _shared:
        _shared[key] = Pipeline(model_path, template_path, fit_cache_dir)
    return _shared[key]
