"""The DDPM noise schedule, in numpy: the one set of numbers training and sampling share.

Timesteps follow the paper's 1-based convention: t = 1 .. T, and index 0 of every array below
stands for t = 0 (clean data, alpha_bar = 1), so `alpha_bar[t]` reads like the equations.

`snr_shift` k divides the linear schedule's signal-to-noise ratio at every step by k (as for
high-resolution images, Hoogeboom et al. 2023): abar' = abar / (abar + k (1 - abar)), and the betas
follow from it. Why it matters here: Algorithm 1 branches every frame off the neutral (e_0)
trajectory at t_s = 400, where the plain linear schedule still holds SNR 0.24 per coordinate. Over
3,000 correlated coordinates that is plenty for the denoiser to see "no expression" in the shared
state, and it trusts the state over the label (apex 0.66x the ground truth). With k = 100 the
state at t = 400 carries ~1/100 of that evidence and the branches reach the label's full motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import AnimateMeError

SCHEDULE_KINDS = ("linear",)
SPACINGS = ("linear", "quadratic")


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_t for t = 1..T and everything derived from it (float64; computed once per schedule,
    since the sampler reads them at every step)."""

    kind: str = "linear"
    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    snr_shift: float = 1.0

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise AnimateMeError(f"unknown noise schedule {self.kind!r}: use one of {SCHEDULE_KINDS}")
        if int(self.steps) != self.steps or not 2 <= self.steps <= 100_000:
            raise AnimateMeError(f"the schedule needs between 2 and 100000 steps, got {self.steps}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise AnimateMeError(
                f"schedule betas must satisfy 0 < start <= end < 1, got {self.beta_start}, {self.beta_end}"
            )
        if not 1e-3 <= self.snr_shift <= 1e6:
            raise AnimateMeError(f"snr_shift must lie in [0.001, 1e6], got {self.snr_shift}")

    @property
    def T(self) -> int:
        return int(self.steps)

    @cached_property
    def betas(self) -> np.ndarray:
        """(T+1,) with betas[0] = 0."""
        linear = np.concatenate([[0.0], np.linspace(self.beta_start, self.beta_end, self.T)])
        if self.snr_shift == 1.0:
            return _read_only(linear)
        abar = self._shifted(np.cumprod(1.0 - linear))
        return _read_only(np.concatenate([[0.0], 1.0 - abar[1:] / abar[:-1]]))

    @cached_property
    def alphas(self) -> np.ndarray:
        return _read_only(1.0 - self.betas)

    @cached_property
    def alpha_bars(self) -> np.ndarray:
        """(T+1,) cumulative products, alpha_bars[0] = 1."""
        return _read_only(np.cumprod(self.alphas))

    @cached_property
    def snr(self) -> np.ndarray:
        """(T+1,) abar / (1 - abar); inf at t = 0."""
        abar = self.alpha_bars
        with np.errstate(divide="ignore"):
            return _read_only(abar / (1.0 - abar))

    def _shifted(self, abar: np.ndarray) -> np.ndarray:
        return abar / (abar + self.snr_shift * (1.0 - abar))

    @cached_property
    def posterior_variance(self) -> np.ndarray:
        """(T+1,) sigma_t^2 = beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); 0 at t = 0 and 1."""
        abar = self.alpha_bars
        var = np.zeros(self.T + 1)
        var[1:] = self.betas[1:] * (1.0 - abar[:-1]) / (1.0 - abar[1:])
        return _read_only(var)

    # The forward process and the two reverse steps live with the schedule (as a diffusers
    # scheduler's add_noise / step): the sampler and the guidance only call them.
    def add_noise(self, x0: np.ndarray, eps: np.ndarray, t: int) -> np.ndarray:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        abar = self.alpha_bars[t]
        return np.sqrt(abar) * x0 + np.sqrt(1.0 - abar) * eps

    def eps_from_x0(self, x_t: np.ndarray, x0: np.ndarray, t: int) -> np.ndarray:
        """The eps that x_t and an x0 imply: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
        abar = self.alpha_bars[t]
        return (x_t - np.sqrt(abar) * x0) / np.sqrt(1.0 - abar)

    def ddpm_step(self, x: np.ndarray, eps: np.ndarray, t: int, rng) -> np.ndarray:
        """Algorithm 1 line 11/18: d^{t-1} = (d^t - beta_t / sqrt(1-abar_t) eps) / sqrt(alpha_t) + sigma_t z_t,
        one z_t (rng.standard_normal) for every frame; z_1 = 0."""
        beta, alpha, abar = self.betas[t], self.alphas[t], self.alpha_bars[t]
        mean = (x - beta / np.sqrt(1.0 - abar) * eps) / np.sqrt(alpha)
        if t == 1:
            return mean
        z = rng.standard_normal(x.shape[1:])[None]
        return mean + np.sqrt(self.posterior_variance[t]) * z

    def ddim_step(self, x: np.ndarray, eps: np.ndarray, x0: np.ndarray, t: int, t_next: int, eta: float,
                  rng) -> np.ndarray:
        """DDIM from t to t_next with noise eta (0: deterministic), one draw for every frame."""
        abar, abar_next = self.alpha_bars[t], self.alpha_bars[t_next]
        sigma = eta * np.sqrt((1.0 - abar_next) / (1.0 - abar) * (1.0 - abar / abar_next))
        x = np.sqrt(abar_next) * x0 + np.sqrt(max(1.0 - abar_next - sigma ** 2, 0.0)) * eps
        if t_next == 0 or eta == 0.0:
            return x                                                 # the last step adds no noise
        return x + sigma * rng.standard_normal(x.shape[1:])[None]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "steps": self.T, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "snr_shift": self.snr_shift, "variance": "posterior"}

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseSchedule":
        try:
            return cls(kind=str(data["kind"]), steps=int(data["steps"]),
                       beta_start=float(data["beta_start"]), beta_end=float(data["beta_end"]),
                       snr_shift=float(data.get("snr_shift", 1.0)))  # cards before the shift: 1
        except (KeyError, TypeError, ValueError) as error:
            raise AnimateMeError(f"the model card's schedule is incomplete ({error}): re-export the model") from None


def _read_only(array: np.ndarray) -> np.ndarray:
    """The cached arrays are shared by every reader: nobody may change them in place."""
    array.flags.writeable = False
    return array


def ddim_timesteps(start: int, stop: int, steps: int, spacing: str = "linear") -> np.ndarray:
    """`steps`+1 integer timesteps from `start` down to `stop` (both included), strictly decreasing.

    A DDIM pass over them takes `steps` jumps. "linear" spaces them evenly; "quadratic" puts
    t = stop + (start - stop) (1 - i/steps)^2, denser near the clean end, where the shifted
    schedule's SNR changes fastest (from 0.09 at t = 100 to 100 at t = 1 with shift 100).
    """
    if not 0 <= stop < start:
        raise AnimateMeError(f"a DDIM segment must run from a later to an earlier step, got {start} -> {stop}")
    if spacing not in SPACINGS:
        raise AnimateMeError(f"unknown DDIM spacing {spacing!r}: use one of {SPACINGS}")
    steps = int(min(max(steps, 1), start - stop))
    if spacing == "linear":
        return np.round(np.linspace(start, stop, steps + 1)).astype(np.int64)
    fractions = (1.0 - np.arange(steps + 1) / steps) ** 2
    times = np.round(stop + (start - stop) * fractions).astype(np.int64)
    for i in range(steps - 1, -1, -1):          # keep the jumps distinct where rounding merges them
        times[i] = max(times[i], times[i + 1] + 1)
    return times
