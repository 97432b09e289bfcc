"""The forward process on the torch side: x_t from x0, and x0 and eps from the denoiser's head.

The numpy `NoiseSchedule` (core/sample/schedule.py) owns the schedule and the sampler's copy of
these formulas (float64, one t per call). Training and the network need them in float32, with one t
per frame and inside the exported graph, so they live here once, on float32 tables made from that
schedule's alpha_bars. Keep the operation order: checkpoints and exports are compared bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from animateme_blender.core.sample.schedule import NoiseSchedule


class TorchSchedule:
    """float32 (T+1,) tables of a `NoiseSchedule`: abar_t, sqrt(abar_t) and sqrt(1 - abar_t)."""

    def __init__(self, schedule: NoiseSchedule):
        self.abar = torch.tensor(schedule.alpha_bars, dtype=torch.float32)
        self.sqrt_abar = self.abar.sqrt()
        # 1 - abar_0 = 0: clamped so that no table entry divides by zero.
        self.sqrt_one_minus_abar = (1.0 - self.abar).clamp_min(1e-12).sqrt()

    def at(self, t: torch.Tensor) -> "NoiseAt":
        return NoiseAt.gather(self.sqrt_abar, self.sqrt_one_minus_abar, t)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.at(t).add_noise(x0, eps)

    def one_minus_abar(self, t: torch.Tensor) -> torch.Tensor:
        """(B,1,1) 1 - abar_t, from abar itself (the v loss weight; not sqrt(1 - abar_t) squared)."""
        return 1.0 - self.abar.index_select(0, t)[:, None, None]


@dataclass(frozen=True)
class NoiseAt:
    """a = sqrt(abar_t) and s = sqrt(1 - abar_t) of a batch of timesteps, (B,1,1) each."""

    a: torch.Tensor
    s: torch.Tensor

    @classmethod
    def gather(cls, sqrt_abar: torch.Tensor, sqrt_one_minus_abar: torch.Tensor, t: torch.Tensor) -> "NoiseAt":
        """From the tables (a TorchSchedule's, or the Denoiser's buffers, which checkpoints and the
        export carry): one Gather per table in the graph, shared by every formula below."""
        return cls(sqrt_abar.index_select(0, t)[:, None, None], sqrt_one_minus_abar.index_select(0, t)[:, None, None])

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        return self.a * x0 + self.s * eps

    def x0_from_v(self, x_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v, for v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0."""
        return self.a * x_t - self.s * v

    def eps_from_x0(self, x_t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The eps that x_t and an x0 imply: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
        return (x_t - self.a * x0) / self.s
