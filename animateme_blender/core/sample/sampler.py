"""Consistent-noise sampling (AnimateMe supp. Algorithm 1) and its DDIM variant, torch-free.

Both share one structure: a single trajectory from pure noise eps down to step t_s, driven by the
first frame's signal e_0; then all K frames start from that shared state and are denoised in one
batch, each on its own e_k, with the same per-step noise z_t for every frame (z_1 = 0). Frames
therefore differ only through e_k, which is what makes 40 independently denoised frames one
coherent animation. Frames with identical e_k come out identical, so each distinct e_k is
denoised once (`dedupe`).

- "ddpm": Algorithm 1 exactly, all T steps (T ... t_s+1 shared, t_s ... 1 branched).
- "ddim": the same split over `steps` evenly spaced jumps (Song et al.), eta = 0 deterministic;
  with eta = 1 and steps = T it is the DDPM sampler again, draw for draw.

Optional label guidance (`guidance` w > 0; by default the card's `sampling` entry, else off) replaces
each prediction by
pred(e) + w (pred(e) - pred(contrast)), on eps and x0 alike (weights summing to 1, so the graph's
eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) still holds between them). The model was trained
without label dropout, so there is no unconditional branch; the contrasts are signals it knows:
- "neutral": e = 0, the neutral frame (amplitude guidance: away from no motion);
- "others": the mean of the predictions with e's intensity s = sum(e) moved onto each other label
  (label c' weighted (s - e_c') / (s (C-1)): uniform over the other labels for a one-hot e), i.e.
  away from what every expression shares (C-1 extra denoiser calls per frame);
- "blend": one call on the blended signal (s - e) / (C-1), intensity spread over the other labels.
The kind may differ per label (the card's `guidance_kind_by_label`): a frame's contrast is then its
labels' kinds mixed by intensity, each kind's contrast computed on the whole frame's signal as above.
A label's kind may itself be a mixture, 'blend:0.5+neutral:0.5' (core/sample/guidance.py): half pushed away
from the other labels, half only enlarged.
Every step is guided, the shared trunk on e_0 as the branches on e_k: a frame with e = 0 (e_0 in
every progression curve) has no contrast and is left as it is, so the trunk costs nothing extra and
is the plain one; a signal that starts off neutral guides its trunk like any frame.
The weight may differ per label (the card's `guidance_by_label`, measured on training subjects by
`animateme calibrate-guidance`: labels the model under-plays need more), and paper mode may have
its own table (`paper_guidance_by_label`: guided at every one of its 1,000 steps, each step starting
from a state the last one already pushed, it enlarges the motion more than fast mode's nine jumps at
the same weight); a frame mixes its labels' weights by intensity. `guidance_rescale` phi in (0, 1]
pulls each guided x0 back towards the size of the unguided one (Lin et al. 2024): guidance then
turns the motion more than it enlarges it.

Fast mode may instead, or as well, scale a label's signal (the card's `fast_gain_by_label`, 1 for
a label it leaves out): the denoiser plays e at about 0.7x the size the corpus moves at e, and asking
for g e plays that label at the corpus's size without pushing it away from anything, so its samples
keep the blends and variants the training takes had (guidance makes them more prototypical than
people: on 30 unseen people, fear guided read as fear 45 times in 60, the people's own takes 33,
unguided at gain 1.6 34). e = 0 stays 0: the neutral frame and an e_0 of zero are untouched.

A model trained with learnt guidance (issue 44; its card's `learnt_guidance`, `diffusion/train.py`)
plays the guided prediction inside its own graph: its card has no guidance and no per-label tables,
so every step is one denoiser call on the frames, unguided here. Both kinds of card run through the
same code: the tables above apply only where a card carries them.

The denoiser is anything with `denoise(x_t, t, signal, neutral) -> (eps, x0)`, `schedule`, `scale`,
`labels`, `num_vertices`, `uses_neutral` (the ONNX `DenoiserRuntime`, or a torch wrapper in tests).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import AnimateMeError
from ..progress import Cancelled
from .guidance import guidance_contrasts, guided_denoise, row_guidance
from .progression import check_signal
from .runtime import neutral_feature
from .settings import SamplingSettings
from .smoothing import smooth_deformations


def sample(runtime, neutral: np.ndarray, signal: np.ndarray, settings: SamplingSettings | None = None, *,
           seed: int = 0, dedupe: bool = True, progress: Callable[[float, str], None] | None = None,
           cancel: Callable[[], bool] | None = None,
           constrain: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """(V,3) neutral mm, (K,C) signal e_k -> (K,V,3) deformations in template mm.

    `settings` (settings.py) says the mode, steps, guidance, temperature and smoothing; None takes
    the runtime's card in fast mode (`SamplingSettings.for_runtime(runtime)`). `dedupe` denoises
    each distinct e_k once. `constrain` maps every step's clean prediction x0 (B,V,3, in template
    mm) to the one the sampler goes on with (eps follows from it, so the step stays the same
    equation): e.g. its projection on an ARKit rig's shapes, so the clip is sampled in the rig's span.
    """
    settings = SamplingSettings.for_runtime(runtime) if settings is None else settings
    schedule = runtime.schedule
    signal = _check_inputs(runtime, neutral, signal, seed)
    if settings.mode == "ddim":
        signal = signal * settings.signal_gains[None, :]
    faces = getattr(runtime, "faces", None)
    if settings.smoothing > 0 and faces is None:
        raise AnimateMeError("smoothing needs the template's triangles: load the runtime with the Template")

    unique, inverse = (np.unique(signal, axis=0, return_inverse=True) if dedupe
                       else (signal, np.arange(len(signal))))
    inverse = np.asarray(inverse).reshape(-1)
    neutral_in = neutral_feature(neutral)[None] if runtime.uses_neutral else None
    rng = _ScaledNormal(seed, settings.temperature)
    x = rng.standard_normal((1, runtime.num_vertices, 3))          # eps, shared by every frame
    total = max(1, len(settings.shared_times) + len(settings.branch_times) - 2)
    done = 0

    def run(x, times, batch_signal, guided=False):
        nonlocal done
        # The signal is the same at every step, so its contrasts are too.
        contrasts = guidance_contrasts(batch_signal, settings.label_kinds) if guided else None
        weights = row_guidance(batch_signal, settings.label_weights) if guided else None
        for t, t_next in zip(times[:-1], times[1:]):
            if cancel is not None and cancel():
                raise Cancelled("generation cancelled")
            step_neutral = None if neutral_in is None else np.repeat(neutral_in, len(x), axis=0)
            if guided:
                eps, x0 = guided_denoise(runtime, x.astype(np.float32), int(t), batch_signal, neutral_in,
                                          weights, contrasts, settings.rescale, schedule)
            else:
                eps, x0 = runtime.denoise(x.astype(np.float32), np.full(len(x), t, dtype=np.int64),
                                          batch_signal, step_neutral)
            if constrain is not None:
                eps, x0 = _constrained(schedule, x, int(t), x0, constrain, runtime.scale)
            if settings.mode == "ddpm":
                x = schedule.ddpm_step(x, eps.astype(np.float64), int(t), rng)
            else:
                x = schedule.ddim_step(x, eps.astype(np.float64), x0.astype(np.float64),
                                       int(t), int(t_next), settings.eta, rng)
            done += 1
            if progress is not None:
                progress(min(1.0, done / total), f"denoising step {done}/{total}")
        return x

    guided = settings.guided
    x = run(x, settings.shared_times, signal[:1], guided=guided)   # T ... t_s+1 on e_0
    x = np.repeat(x, len(unique), axis=0)                          # d_k^{t_s} = d_s for every k
    x = run(x, settings.branch_times, unique, guided=guided)       # t_s ... 1, in parallel
    deform = (x * runtime.scale[None, :, None])[inverse]
    return smooth_deformations(deform, faces, settings.smoothing).astype(np.float32)


class _ScaledNormal:
    """The sampler's one source of noise: standard normal draws times the temperature."""

    def __init__(self, seed: int, temperature: float):
        self._rng = np.random.default_rng(seed)
        self._temperature = float(temperature)

    def standard_normal(self, shape) -> np.ndarray:
        return self._temperature * self._rng.standard_normal(shape)


def _constrained(schedule, x, t, x0, constrain, scale) -> tuple[np.ndarray, np.ndarray]:
    """(eps, x0) after `constrain` moved x0 (in mm: model space x per-vertex scale): the eps that
    the new x0 and the same x_t imply."""
    scale = np.asarray(scale, dtype=np.float64)[None, :, None]
    moved = np.asarray(constrain(x0.astype(np.float64) * scale), dtype=np.float64) / scale
    return schedule.eps_from_x0(x, moved, t), moved


def _check_inputs(runtime, neutral, signal, seed) -> np.ndarray:
    """Every problem with the inputs, before any denoising starts (the settings checked theirs)."""
    signal = np.asarray(signal, dtype=np.float32)
    check_signal(signal, num_labels=len(runtime.labels))
    neutral = np.asarray(neutral)
    if neutral.shape != (runtime.num_vertices, 3):
        raise AnimateMeError(
            f"neutral must be the template's ({runtime.num_vertices}, 3) vertices in mm, got shape {neutral.shape}"
        )
    if not np.all(np.isfinite(neutral)):
        raise AnimateMeError("neutral mesh has NaN or infinite coordinates")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise AnimateMeError(f"seed must be a non-negative integer, got {seed}")
    return signal
