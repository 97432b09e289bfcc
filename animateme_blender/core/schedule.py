"""The DDPM noise schedule, in numpy: the one set of numbers training and sampling share.

Timesteps follow the paper's 1-based convention: t = 1 .. T, and index 0 of every array below
stands for t = 0 (clean data, alpha_bar = 1), so `alpha_bar[t]` reads like the equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AnimateMeError

SCHEDULE_KINDS = ("linear",)


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_t for t = 1..T and everything derived from it (float64)."""

    kind: str = "linear"
    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise AnimateMeError(f"unknown noise schedule {self.kind!r}: use one of {SCHEDULE_KINDS}")
        if int(self.steps) != self.steps or not 2 <= self.steps <= 100_000:
            raise AnimateMeError(f"the schedule needs between 2 and 100000 steps, got {self.steps}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise AnimateMeError(
                f"schedule betas must satisfy 0 < start <= end < 1, got {self.beta_start}, {self.beta_end}"
            )

    @property
    def T(self) -> int:
        return int(self.steps)

    @property
    def betas(self) -> np.ndarray:
        """(T+1,) with betas[0] = 0."""
        return np.concatenate([[0.0], np.linspace(self.beta_start, self.beta_end, self.T)])

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> np.ndarray:
        """(T+1,) cumulative products, alpha_bars[0] = 1."""
        return np.cumprod(self.alphas)

    @property
    def posterior_variance(self) -> np.ndarray:
        """(T+1,) sigma_t^2 = beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); 0 at t = 0 and 1."""
        abar = self.alpha_bars
        var = np.zeros(self.T + 1)
        var[1:] = self.betas[1:] * (1.0 - abar[:-1]) / (1.0 - abar[1:])
        return var

    def to_dict(self) -> dict:
        return {"kind": self.kind, "steps": self.T, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "variance": "posterior"}

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseSchedule":
        try:
            return cls(kind=str(data["kind"]), steps=int(data["steps"]),
                       beta_start=float(data["beta_start"]), beta_end=float(data["beta_end"]))
        except (KeyError, TypeError, ValueError) as error:
            raise AnimateMeError(f"the model card's schedule is incomplete ({error}): re-export the model") from None


def ddim_timesteps(start: int, stop: int, steps: int) -> np.ndarray:
    """`steps`+1 integer timesteps from `start` down to `stop` (both included), evenly spaced.

    A DDIM pass over them takes `steps` jumps; consecutive values are distinct.
    """
    if not 0 <= stop < start:
        raise AnimateMeError(f"a DDIM segment must run from a later to an earlier step, got {start} -> {stop}")
    steps = int(min(max(steps, 1), start - stop))
    return np.round(np.linspace(start, stop, steps + 1)).astype(np.int64)
