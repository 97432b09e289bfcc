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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import AnimateMeError
from .progression import LABELS, TIMING_PRESETS, Timing, expression_signal, label_mix, progression_curve
from .sampler import check_temperature

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

QUALITIES = {"fast": "ddim", "paper": "ddpm"}
DEVICES = {"auto": "auto", "cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}
MODEL_NAME = "animateme.onnx"
FIT_CACHE_SIZE = 8   # meshes whose fit + binding stay in memory


class Cancelled(AnimateMeError):
    """The caller asked to stop; nothing was produced."""


@dataclass(frozen=True)
class Request:
    """What to generate. `mix` is the interpolation slider between `expression` and `second`;
    with `transition`, the clip goes from `expression` to `second` instead of blending them."""

    expression: str = "happy"
    second: str | None = None
    mix: float = 0.0
    transition: bool = False
    intensity: float = 1.0
    timing: Timing = Timing()
    frames: int = 40
    seed: int = 0
    quality: str = "fast"
    variation: float | None = None   # sampling temperature; None: the quality's default

    def validate(self) -> "Request":
        label_mix(self.expression, self.second, self.mix if self.second else 0.0)
        if self.transition and not self.second:
            raise AnimateMeError("a transition needs a second expression: set one, or turn transition off")
        if self.quality not in QUALITIES:
            raise AnimateMeError(f"unknown quality {self.quality!r}: use 'fast' (DDIM) or 'paper' (DDPM)")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise AnimateMeError(f"seed must be a non-negative integer, got {self.seed}")
        if self.variation is not None:
            check_temperature(float(self.variation), "variation")
        progression_curve(self.frames, self.intensity, self.timing)
        return self

    @property
    def label(self) -> str:
        """Short name used for shape keys and files: happy, happy-sad30, happy-to-sad."""
        if not self.second:
            return self.expression
        if self.transition:
            return f"{self.expression}-to-{self.second}"
        return f"{self.expression}-{self.second}{int(round(self.mix * 100)):02d}"

    def progression(self) -> np.ndarray:
        return progression_curve(self.frames, self.intensity, self.timing)

    def signal(self, labels: tuple[str, ...] = LABELS) -> np.ndarray:
        """(K, C) e_k = p_k * m_k; for a transition m_k slides from the first label to the second
        over the hold between apex and offset."""
        progression = self.progression()
        if not self.transition:
            mix = label_mix(self.expression, self.second, self.mix if self.second else 0.0, labels)
            return expression_signal(progression, mix)
        t = np.linspace(0.0, 1.0, self.frames)
        span = max(self.timing.offset - self.timing.apex, 1e-6)
        weights = np.clip((t - self.timing.apex) / span, 0.0, 1.0)
        mixes = np.stack([label_mix(self.expression, self.second, float(w), labels) for w in weights])
        signal = progression[:, None] * mixes
        expression_signal(progression, mixes[0])  # the same validation as the one-label path
        return signal.astype(np.float32)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["timing"] = asdict(self.timing)
        return data


def add_request_arguments(parser) -> None:
    """The generation options every headless entry point shares (`animateme generate`, the batch
    script), so their flags cannot drift apart."""
    parser.add_argument("--expression", default="happy")
    parser.add_argument("--mix", help="second expression and its weight, e.g. sad:0.3")
    parser.add_argument("--transition", action="store_true", help="go from --expression to the --mix label")
    parser.add_argument("--intensity", type=float, default=1.0)
    parser.add_argument("--timing", default="default", choices=sorted(TIMING_PRESETS))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", default="fast", choices=("fast", "paper"))
    parser.add_argument("--variation", type=float, default=None,
                        help="sampling temperature in [0, 1] (default: 1 for paper, the fast default for fast)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))


def timing_from_frames(frames: int, onset: int, apex: int, offset: int, end: int) -> Timing:
    """Phase boundaries given as frame numbers within the clip (0-based) -> fractions."""
    last = max(frames - 1, 1)
    return Timing(onset / last, apex / last, offset / last, end / last).validate()


def timing_preset(name: str) -> Timing:
    try:
        return TIMING_PRESETS[name]
    except KeyError:
        raise AnimateMeError(f"unknown timing preset {name!r}: use one of {', '.join(TIMING_PRESETS)}") from None


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


@dataclass
class _Registered:
    fit: object
    binding: object


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
            from .runtime import load_runtime

            self._runtimes[device] = load_runtime(self.model_path, self.template, device=device)
        return self._runtimes[device]

    def mesh_key(self, vertices: np.ndarray, faces: np.ndarray) -> str:
        """The fit's own fingerprint (registration's FitCache key, which includes the mesh's size:
        the same shape in metres and millimetres needs two fits)."""
        from .registration import fit_fingerprint

        return fit_fingerprint(vertices, faces, self.template.fingerprint)

    def is_registered(self, vertices: np.ndarray, faces: np.ndarray) -> bool:
        return self.mesh_key(vertices, faces) in self._registered

    def register(self, vertices: np.ndarray, faces: np.ndarray, progress: Progress | None = None,
                 cancel: Cancel | None = None) -> tuple[_Registered, bool]:
        """Fit + binding for this mesh, from memory or the fit cache folder when unchanged."""
        from .registration import FitCache, fit_template

        key = self.mesh_key(vertices, faces)
        if key in self._registered:
            self._registered.move_to_end(key)
            return self._registered[key], True
        cache = FitCache(self.fit_cache_dir) if self.fit_cache_dir is not None else None
        fit = cache.load(key, self.template) if cache is not None else None
        fit = fit if fit is not None and fit.score.accepted else None
        cached = fit is not None
        if fit is None:
            fit = fit_template(vertices, faces, self.template, progress=progress, cancel=cancel)
            if cache is not None:
                fit.save(cache.path(key))
        if cancel is not None and cancel():
            raise Cancelled("generation cancelled")
        from .transfer import bind

        registered = _Registered(fit=fit, binding=bind(fit, vertices, faces))
        self._registered[key] = registered
        while len(self._registered) > FIT_CACHE_SIZE:
            self._registered.popitem(last=False)
        return registered, cached

    def generate(self, vertices: np.ndarray, faces: np.ndarray, request: Request, device: str = "auto",
                 progress: Progress | None = None, cancel: Cancel | None = None) -> Result:
        """(N,3) vertices + (F,3) triangles of a neutral face -> K frames of displacements."""
        request.validate()
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
            registered, cached = self.register(vertices, faces, report(0.02, 0.45), cancel)
        except AnimateMeError:
            check_cancel()  # the fit stops with its own error when cancelled: report it as a cancel
            raise
        timings["register"] = time.perf_counter() - mark
        check_cancel()

        mark = time.perf_counter()
        signal = request.signal(tuple(runtime.labels))
        from .sampler import Cancelled as SamplerCancelled, sample

        mode = QUALITIES[request.quality]
        try:
            deform = sample(runtime, registered.fit.template_space, signal, mode=mode, seed=int(request.seed),
                            temperature=request.variation, progress=report(0.45, 0.95), cancel=cancel)
        except SamplerCancelled:
            raise Cancelled("generation cancelled") from None
        timings["sample"] = time.perf_counter() - mark
        check_cancel()

        mark = time.perf_counter()
        displacements = np.asarray(registered.binding.apply(deform), dtype=np.float32)
        timings["transfer"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        report(0.0, 1.0)(1.0, "done")
        return Result(displacements=displacements, template_deform=deform, progression=request.progression(),
                      signal=signal, request=request, device=runtime.provider, fit_cached=cached, timings=timings)


_shared: dict[tuple, Pipeline] = {}


def shared_pipeline(model_path: str | Path | None = None, template_path: str | Path | None = None,
                    fit_cache_dir: str | Path | None = None) -> Pipeline:
    """One Pipeline per (model, template) for the whole session, so fits survive between clicks."""
    key = (str(model_path or default_model_path()), str(template_path or default_template_path()))
    if key not in _shared:
        _shared[key] = Pipeline(model_path, template_path, fit_cache_dir)
    return _shared[key]
