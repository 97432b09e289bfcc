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
from .guidance import (check_guidance, check_rescale, guidance_contrasts, guided_denoise, label_guidance,
                       label_guidance_kinds, row_guidance)
from .progression import check_signal
from .runtime import neutral_feature
from .schedule import ddim_timesteps
from .smoothing import check_smoothing, smooth_deformations

MODES = ("ddim", "ddpm")
DEFAULT_T_S = 400        # Algorithm 1 / paper mode (supp. §2.2)
FAST_T_S = 400           # DDIM branches where the paper does: with the shifted schedule (SNR / 100,
                         # core/sample/schedule.py) the state at 400 no longer holds the frames near e_0
FAST_ETA = 1.0
FAST_SHARED_STEPS = 3    # DDIM default: above t_s the shared state is nearly pure noise,
FAST_BRANCH_STEPS = 6    # so few jumps there and most over the whole batch of frames,
FAST_SPACING = "quadratic"  # denser near t = 0 where the shifted SNR grows fastest
FAST_TEMPERATURE = 1.0   # as Algorithm 1: a lower one shrinks the variety between seeds
# A shifted model's figures for both modes (amplitude per label, fast vs paper):
# reports/sampler_modes.md (`animateme eval-modes`); `animateme bench` times them.
# A model trained on the plain linear schedule (cards without snr_shift, before 2026-11-30) keeps
# the fast settings measured for it: branching at 400 left its frames at 0.43x the ground truth's
# apex, branching at 700 with eta = 1 reached 0.93x; temperature 0.5 lowered its error.
UNSHIFTED_FAST = {"t_s": 700, "shared": 12, "branch": 4, "spacing": "linear", "temperature": 0.5}


def fast_defaults(schedule) -> dict:
    """The DDIM defaults that suit this model's schedule: t_s, shared and branched jumps, spacing,
    temperature."""
    if schedule.snr_shift == 1.0:
        return dict(UNSHIFTED_FAST)
    return {"t_s": FAST_T_S, "shared": FAST_SHARED_STEPS, "branch": FAST_BRANCH_STEPS,
            "spacing": FAST_SPACING, "temperature": FAST_TEMPERATURE}


def sample(runtime, neutral: np.ndarray, signal: np.ndarray, mode: str = "ddim", steps: int | None = None,
           t_s: int | None = None, seed: int = 0, *, eta: float | None = None,
           branch_steps: int | None = None, temperature: float | None = None,
           spacing: str | None = None,
           dedupe: bool = True, progress: Callable[[float, str], None] | None = None,
           cancel: Callable[[], bool] | None = None, guidance: float | None = None,
           guidance_kind: str | None = None, guidance_rescale: float | None = None,
           guidance_by_label: dict | None = None, paper_guidance_by_label: dict | None = None,
           guidance_kind_by_label: dict | None = None, fast_temperature: float | None = None,
           fast_gain_by_label: dict | None = None, smoothing: float | None = None,
           constrain: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """(V,3) neutral mm, (K,C) signal e_k -> (K,V,3) deformations in template mm.

    mode "ddpm" always runs all T steps (`steps` must be None or T). For "ddim", `steps` jumps in
    all (default FAST_SHARED_STEPS + FAST_BRANCH_STEPS), `branch_steps` of them after t_s
    (default: FAST_BRANCH_STEPS when steps is None, else the share t_s/T of steps), the branched
    ones spaced by `spacing` (default FAST_SPACING; the shared ones are always even).
    t_s defaults to 400 for "ddpm" (the paper) and FAST_T_S for "ddim"; eta (DDIM only) to 1.
    `temperature` scales eps and every z_t: 1 is Algorithm 1 (the "ddpm" default), lower trades
    diversity for samples nearer the model's mean (the "ddim" default is `fast_temperature`, else
    the card's `fast_temperature`, else FAST_TEMPERATURE; paper mode stays at 1 unless named).
    (The "ddim" defaults are those of `fast_defaults`: a model on the unshifted schedule has its own.)
    `guidance` w >= 0 pushes each prediction away from `guidance_kind`'s contrast (see the
    module's notes); 0 is the plain sampler, unchanged. `guidance_by_label` {label: w} sets it per
    label ({} : `guidance` for all; None: the card's per-label weights if `guidance` is the card's).
    `paper_guidance_by_label` replaces it in mode "ddpm" when given or on the card (the card's
    `paper_guidance_by_label`, calibrated in paper mode: its 1,000 guided steps enlarge the motion
    more than fast mode's nine, so one table cannot bring both to the ground truth's apex).
    `guidance_kind_by_label` {label: kind} sets the contrast per label ({}: `guidance_kind` for all;
    None: the card's per-label kinds if `guidance_kind` is the card's).
    `guidance_rescale` phi in [0, 1] pulls each guided x0 back towards its unguided size.
    `fast_gain_by_label` {label: g} multiplies that label's signal in mode "ddim" ({}: none; None:
    the card's); paper mode samples the signal as given.
    `smoothing` low-passes the result over the template (core/sample/smoothing.py; needs the runtime's
    template `faces`); 0 returns the sampler's output as is. None, for any of these, takes the model
    card's (`card_sampling`).
    `constrain` maps every step's clean prediction x0 (B,V,3, in template mm) to the one the
    sampler goes on with (eps follows from it, so the step stays the same equation): e.g. its
    projection on an ARKit rig's shapes, so the clip is sampled in the rig's span.
    """
    schedule = runtime.schedule
    T = schedule.T
    fast = fast_defaults(schedule)
    if t_s is None:
        t_s = DEFAULT_T_S if mode == "ddpm" else fast["t_s"]
    if eta is None:
        eta = FAST_ETA
    signal = _check_inputs(runtime, neutral, signal, mode, t_s, seed)
    card = card_sampling(runtime)
    if mode == "ddim":
        gains = card.get("fast_gain_by_label", {}) if fast_gain_by_label is None else fast_gain_by_label
        signal = signal * label_gains(runtime.labels, gains)[None, :]
    guidance = card["guidance"] if guidance is None else guidance
    if guidance_kind_by_label is None:
        # As the weights: the card's per-label kinds belong to its kind, a named kind is for all labels.
        named_kind = guidance_kind is not None and guidance_kind != card["guidance_kind"]
        guidance_kind_by_label = None if named_kind else card.get("guidance_kind_by_label")
    guidance_kind = card["guidance_kind"] if guidance_kind is None else guidance_kind
    check_guidance(guidance, guidance_kind)
    label_kinds = label_guidance_kinds(runtime.labels, guidance_kind, guidance_kind_by_label)
    rescale = card["guidance_rescale"] if guidance_rescale is None else float(guidance_rescale)
    check_rescale(rescale)
    if guidance_by_label is None:
        # The card's per-label weights belong to the card's guidance: a caller naming its own w
        # gets w for every label.
        guidance_by_label = card.get("guidance_by_label") if guidance == card["guidance"] else None
    if mode == "ddpm":
        if paper_guidance_by_label is None and guidance == card["guidance"]:
            paper_guidance_by_label = card.get("paper_guidance_by_label")
        if paper_guidance_by_label:
            guidance_by_label = paper_guidance_by_label
    label_weights = label_guidance(runtime.labels, guidance, guidance_by_label)
    smoothing = card["smoothing"] if smoothing is None else float(smoothing)
    check_smoothing(smoothing)
    faces = getattr(runtime, "faces", None)
    if smoothing > 0 and faces is None:
        raise AnimateMeError("smoothing needs the template's triangles: load the runtime with the Template")
    if temperature is None:
        if mode == "ddpm":
            temperature = 1.0
        elif fast_temperature is not None:
            temperature = float(fast_temperature)
        else:
            temperature = card.get("fast_temperature", fast["temperature"])
    check_temperature(temperature)
    if mode == "ddpm":
        if steps not in (None, T):
            raise AnimateMeError(f"DDPM runs all {T} steps; use mode 'ddim' for {steps} steps")
        shared_times = np.arange(T, t_s - 1, -1)
        branch_times = np.arange(t_s, -1, -1)
    else:
        shared_times, branch_times = _ddim_times(T, t_s, steps, branch_steps, fast,
                                                 fast["spacing"] if spacing is None else spacing)
        if not np.isfinite(eta) or not 0.0 <= eta <= 1.0:
            raise AnimateMeError(f"DDIM eta must lie in [0, 1], got {eta}")

    unique, inverse = (np.unique(signal, axis=0, return_inverse=True) if dedupe
                       else (signal, np.arange(len(signal))))
    inverse = np.asarray(inverse).reshape(-1)
    neutral_in = neutral_feature(neutral)[None] if runtime.uses_neutral else None
    rng = _ScaledNormal(seed, temperature)
    x = rng.standard_normal((1, runtime.num_vertices, 3))          # eps, shared by every frame
    total = max(1, len(shared_times) + len(branch_times) - 2)
    done = 0

    def run(x, times, batch_signal, guided=False):
        nonlocal done
        # The signal is the same at every step, so its contrasts are too.
        contrasts = guidance_contrasts(batch_signal, label_kinds) if guided else None
        weights = row_guidance(batch_signal, label_weights) if guided else None
        for t, t_next in zip(times[:-1], times[1:]):
            if cancel is not None and cancel():
                raise Cancelled("generation cancelled")
            step_neutral = None if neutral_in is None else np.repeat(neutral_in, len(x), axis=0)
            if guided:
                eps, x0 = guided_denoise(runtime, x.astype(np.float32), int(t), batch_signal, neutral_in,
                                          weights, contrasts, rescale, schedule)
            else:
                eps, x0 = runtime.denoise(x.astype(np.float32), np.full(len(x), t, dtype=np.int64),
                                          batch_signal, step_neutral)
            if constrain is not None:
                eps, x0 = _constrained(schedule, x, int(t), x0, constrain, runtime.scale)
            if mode == "ddpm":
                x = schedule.ddpm_step(x, eps.astype(np.float64), int(t), rng)
            else:
                x = schedule.ddim_step(x, eps.astype(np.float64), x0.astype(np.float64),
                                       int(t), int(t_next), eta, rng)
            done += 1
            if progress is not None:
                progress(min(1.0, done / total), f"denoising step {done}/{total}")
        return x

    guided = bool(label_weights.max() > 0)
    x = run(x, shared_times, signal[:1], guided=guided)            # T ... t_s+1 on e_0
    x = np.repeat(x, len(unique), axis=0)                          # d_k^{t_s} = d_s for every k
    x = run(x, branch_times, unique, guided=guided)                # t_s ... 1, in parallel
    deform = (x * runtime.scale[None, :, None])[inverse]
    return smooth_deformations(deform, faces, smoothing).astype(np.float32)


MAX_GAIN = 4.0


def check_gain(value: float) -> None:
    if not np.isfinite(value) or not 0.0 < value <= MAX_GAIN:
        raise AnimateMeError(f"a signal gain must lie in (0, {MAX_GAIN:g}] (1: the signal as given), got {value}")


def label_gains(labels, by_label: dict) -> np.ndarray:
    """(C,) float32 gain per label: the table's, 1 for a label it leaves out."""
    unknown = sorted(set(by_label) - set(labels))
    if unknown:
        raise AnimateMeError(f"signal gains name unknown labels {', '.join(unknown)}: "
                             f"the model's labels are {', '.join(labels)}")
    gains = np.array([float(by_label.get(label, 1.0)) for label in labels])
    for value in gains:
        check_gain(value)
    return gains.astype(np.float32)


def check_temperature(value: float, name: str = "temperature") -> None:
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise AnimateMeError(f"{name} must lie in [0, 1] (0: the model's most typical motion, "
                             f"1: the paper's full sampling noise), got {value}")


def card_sampling(runtime) -> dict:
    """{"guidance", "guidance_kind", "smoothing"} the model's card asks for (`sampling`: written by
    `animateme set-sampling` or `export --guidance/--smoothing`, where it was measured); no guidance
    and no smoothing for cards without it."""
    return card_settings(getattr(runtime, "card", None) or {})


def card_settings(card: dict) -> dict:
    """card_sampling's figures from a card read without opening a session."""
    entry = card.get("sampling", {})
    return {"guidance": float(entry.get("guidance", 0.0)), "guidance_kind": str(entry.get("guidance_kind", "neutral")),
            "guidance_rescale": float(entry.get("guidance_rescale", 0.0)),
            "smoothing": float(entry.get("smoothing", 0.0))} | (
        {"fast_temperature": float(entry["fast_temperature"])} if "fast_temperature" in entry else {}) | (
        {key: {str(k): float(v) for k, v in entry[key].items()}
         for key in ("guidance_by_label", "paper_guidance_by_label", "fast_gain_by_label") if entry.get(key)}) | (
        {"guidance_kind_by_label": {str(k): str(v) for k, v in entry["guidance_kind_by_label"].items()}}
        if entry.get("guidance_kind_by_label") else {})


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


def _ddim_times(T, t_s, steps, branch_steps, fast, spacing):
    """Shared and branched timestep lists (each from its first to its last state)."""
    if steps is None:
        branch_steps = fast["branch"] if branch_steps is None else branch_steps
        steps = fast["shared"] + branch_steps
    segments = (t_s < T) + (t_s > 0)
    if int(steps) != steps or not segments <= steps <= T:
        raise AnimateMeError(f"DDIM steps must be between {segments} and {T}, got {steps}")
    if branch_steps is None:
        branch_steps = int(round(steps * t_s / T))
    if int(branch_steps) != branch_steps:
        raise AnimateMeError(f"branch_steps must be an integer, got {branch_steps}")
    # At least one jump in each non-empty segment, never more jumps than steps in it.
    low = 1 if t_s > 0 else 0
    high = min(t_s, steps - (1 if t_s < T else 0))
    branch_steps = int(min(max(branch_steps, low), high))
    shared = ddim_timesteps(T, t_s, steps - branch_steps) if t_s < T else np.array([T])
    branch = ddim_timesteps(t_s, 0, branch_steps, spacing) if t_s > 0 else np.array([0])
    return shared, branch


def _check_inputs(runtime, neutral, signal, mode, t_s, seed) -> np.ndarray:
    """Every user-caused problem, before any denoising starts."""
    if mode not in MODES:
        raise AnimateMeError(f"unknown sampling mode {mode!r}: use 'ddim' (fast) or 'ddpm' (paper)")
    signal = np.asarray(signal, dtype=np.float32)
    check_signal(signal, num_labels=len(runtime.labels))
    neutral = np.asarray(neutral)
    if neutral.shape != (runtime.num_vertices, 3):
        raise AnimateMeError(
            f"neutral must be the template's ({runtime.num_vertices}, 3) vertices in mm, got shape {neutral.shape}"
        )
    if not np.all(np.isfinite(neutral)):
        raise AnimateMeError("neutral mesh has NaN or infinite coordinates")
    T = runtime.schedule.T
    if int(t_s) != t_s or not 0 <= t_s < T:
        raise AnimateMeError(f"t_s (the step where frames branch) must be in [0, {T - 1}], got {t_s}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise AnimateMeError(f"seed must be a non-negative integer, got {seed}")
    return signal
