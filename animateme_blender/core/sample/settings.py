"""What one sampling run does besides its inputs, read from the model's card once.

`SamplingSettings.from_card(card, mode, schedule=..., labels=...)` resolves the card's `sampling`
entry (guidance weights and kinds per label, paper mode's own table, fast mode's signal gains,
temperature, smoothing) and the mode's defaults into one checked, frozen value; a caller may
override any of them by name. The sampler (sampler.py) then only runs the steps. The rules for
which table applies when are here and nowhere else:
- a caller naming its own guidance weight gets it for every label (the card's per-label weights
  belong to the card's weight); likewise a named guidance kind replaces the card's per-label kinds;
- paper mode ("ddpm") takes `paper_guidance_by_label` when there is one, and samples the signal
  as given (the signal gains are fast mode's);
- fast mode's temperature is the named one, else the card's `fast_temperature`, else the
  schedule's default; paper mode stays at 1 (Algorithm 1) unless named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnimateMeError
from .guidance import check_guidance, check_rescale, label_guidance, label_guidance_kinds
from .schedule import ddim_timesteps
from .smoothing import check_smoothing

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
MAX_GAIN = 4.0


@dataclass(frozen=True)
class SamplingSettings:
    """One run's resolved settings. `shared_times` run once on e_0, `branch_times` on every frame
    (each list from its first state to its last); per-label arrays follow the model's labels."""

    mode: str
    t_s: int
    shared_times: np.ndarray
    branch_times: np.ndarray
    eta: float
    temperature: float
    signal_gains: np.ndarray      # (C,) multiplies the signal before sampling (1: as given)
    label_weights: np.ndarray     # (C,) guidance weight per label (0: unguided)
    label_kinds: tuple            # guidance contrast kind per label
    rescale: float
    smoothing: float

    @property
    def guided(self) -> bool:
        return bool(self.label_weights.max() > 0)

    @classmethod
    def for_runtime(cls, runtime, mode: str = "ddim", **overrides) -> "SamplingSettings":
        """The settings of `runtime`'s card (its schedule and labels) for `mode`."""
        return cls.from_card(getattr(runtime, "card", None) or {}, mode, schedule=runtime.schedule,
                             labels=runtime.labels, **overrides)

    @classmethod
    def from_card(cls, card: dict, mode: str = "ddim", *, schedule, labels, steps: int | None = None,
                  t_s: int | None = None, eta: float | None = None, branch_steps: int | None = None,
                  spacing: str | None = None, temperature: float | None = None,
                  fast_temperature: float | None = None, guidance: float | None = None,
                  guidance_kind: str | None = None, guidance_rescale: float | None = None,
                  guidance_by_label: dict | None = None, paper_guidance_by_label: dict | None = None,
                  guidance_kind_by_label: dict | None = None, fast_gain_by_label: dict | None = None,
                  smoothing: float | None = None) -> "SamplingSettings":
        """`card`'s settings for `mode` ("ddim": fast, "ddpm": Algorithm 1), each overridable.

        mode "ddpm" always runs all T steps (`steps` must be None or T). For "ddim", `steps` jumps in
        all (default: the fast defaults' shared + branched), `branch_steps` of them after t_s
        (default: the fast defaults' when steps is None, else the share t_s/T of steps), the branched
        ones spaced by `spacing`. t_s defaults to DEFAULT_T_S for "ddpm", the fast defaults' for
        "ddim"; eta (DDIM only) to 1. `temperature` in [0, 1] scales eps and every z_t.
        `guidance` w >= 0, `guidance_kind` and the per-label tables: see sampler.py's notes.
        `guidance_rescale` phi in [0, 1] pulls each guided x0 back towards its unguided size.
        `fast_gain_by_label` {label: g} multiplies that label's signal in fast mode.
        `smoothing` low-passes the result over the template (smoothing.py). A table given as {}
        means none (not the card's); None, for any of these, takes the card's.
        """
        if mode not in MODES:
            raise AnimateMeError(f"unknown sampling mode {mode!r}: use 'ddim' (fast) or 'ddpm' (paper)")
        T = schedule.T
        fast = fast_defaults(schedule)
        if t_s is None:
            t_s = DEFAULT_T_S if mode == "ddpm" else fast["t_s"]
        if int(t_s) != t_s or not 0 <= t_s < T:
            raise AnimateMeError(f"t_s (the step where frames branch) must be in [0, {T - 1}], got {t_s}")
        # A model trained on Algorithm 1's branch states (train --branch-at) knows the states of that
        # step only: branched elsewhere its frames come out off size, so that is refused, not run.
        trained_at = int((card.get("training") or {}).get("branch_at", 0) or 0)
        if trained_at and t_s != trained_at:
            raise AnimateMeError(f"this model was trained to branch its frames at step {trained_at} (its card's "
                                 f"training.branch_at); t_s = {t_s} would play them off size: leave t_s at {trained_at}")
        eta = FAST_ETA if eta is None else eta
        entry = card_settings(card)
        gains = np.ones(len(labels), dtype=np.float32)
        if mode == "ddim":
            gains = label_gains(labels, entry.get("fast_gain_by_label", {})
                                if fast_gain_by_label is None else fast_gain_by_label)
        guidance = entry["guidance"] if guidance is None else guidance
        if guidance_kind_by_label is None:
            # As the weights: the card's per-label kinds belong to its kind, a named kind is for all labels.
            named_kind = guidance_kind is not None and guidance_kind != entry["guidance_kind"]
            guidance_kind_by_label = None if named_kind else entry.get("guidance_kind_by_label")
        guidance_kind = entry["guidance_kind"] if guidance_kind is None else guidance_kind
        check_guidance(guidance, guidance_kind)
        label_kinds = label_guidance_kinds(labels, guidance_kind, guidance_kind_by_label)
        rescale = entry["guidance_rescale"] if guidance_rescale is None else float(guidance_rescale)
        check_rescale(rescale)
        if guidance_by_label is None:
            # The card's per-label weights belong to the card's guidance: a caller naming its own w
            # gets w for every label.
            guidance_by_label = entry.get("guidance_by_label") if guidance == entry["guidance"] else None
        if mode == "ddpm":
            if paper_guidance_by_label is None and guidance == entry["guidance"]:
                paper_guidance_by_label = entry.get("paper_guidance_by_label")
            if paper_guidance_by_label:
                guidance_by_label = paper_guidance_by_label
        label_weights = label_guidance(labels, guidance, guidance_by_label)
        smoothing = entry["smoothing"] if smoothing is None else float(smoothing)
        check_smoothing(smoothing)
        if temperature is None:
            if mode == "ddpm":
                temperature = 1.0
            elif fast_temperature is not None:
                temperature = float(fast_temperature)
            else:
                temperature = entry.get("fast_temperature", fast["temperature"])
        check_temperature(temperature)
        if mode == "ddpm":
            if steps not in (None, T):
                raise AnimateMeError(f"DDPM runs all {T} steps; use mode 'ddim' for {steps} steps")
            shared_times, branch_times = np.arange(T, t_s - 1, -1), np.arange(t_s, -1, -1)
        else:
            shared_times, branch_times = _ddim_times(T, t_s, steps, branch_steps, fast,
                                                     fast["spacing"] if spacing is None else spacing)
            if not np.isfinite(eta) or not 0.0 <= eta <= 1.0:
                raise AnimateMeError(f"DDIM eta must lie in [0, 1], got {eta}")
        return cls(mode=mode, t_s=int(t_s), shared_times=shared_times, branch_times=branch_times, eta=eta,
                   temperature=temperature, signal_gains=gains, label_weights=label_weights,
                   label_kinds=label_kinds, rescale=rescale, smoothing=smoothing)


def fast_defaults(schedule) -> dict:
    """The DDIM defaults that suit this model's schedule: t_s, shared and branched jumps, spacing,
    temperature."""
    if schedule.snr_shift == 1.0:
        return dict(UNSHIFTED_FAST)
    return {"t_s": FAST_T_S, "shared": FAST_SHARED_STEPS, "branch": FAST_BRANCH_STEPS,
            "spacing": FAST_SPACING, "temperature": FAST_TEMPERATURE}


def card_sampling(runtime) -> dict:
    """{"guidance", "guidance_kind", "smoothing", ...} the runtime's card asks for (see card_settings)."""
    return card_settings(getattr(runtime, "card", None) or {})


def card_settings(card: dict) -> dict:
    """The card's `sampling` entry (written by `animateme set-sampling` or `export --guidance/--smoothing`,
    where it was measured), typed: no guidance and no smoothing for cards without it."""
    entry = card.get("sampling", {})
    return {"guidance": float(entry.get("guidance", 0.0)), "guidance_kind": str(entry.get("guidance_kind", "neutral")),
            "guidance_rescale": float(entry.get("guidance_rescale", 0.0)),
            "smoothing": float(entry.get("smoothing", 0.0))} | (
        {"fast_temperature": float(entry["fast_temperature"])} if "fast_temperature" in entry else {}) | (
        {key: {str(k): float(v) for k, v in entry[key].items()}
         for key in ("guidance_by_label", "paper_guidance_by_label", "fast_gain_by_label") if entry.get(key)}) | (
        {"guidance_kind_by_label": {str(k): str(v) for k, v in entry["guidance_kind_by_label"].items()}}
        if entry.get("guidance_kind_by_label") else {})


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
