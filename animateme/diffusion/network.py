"""The denoiser: a spiral convolution network on the template, no down-sampling (AnimateMe supp. §3).

Input features per vertex: the noisy (normalised) deformation, a small learnable index embedding
and, optionally, the subject's neutral geometry. The timestep (sinusoidal features through a
learnable MLP, wider than the mesh channels) and the expression signal e_k are injected at every
layer as a per-channel scale and shift. Widths and spiral lengths grow with depth.

The head predicts the clean deformation x0 (it trains far better on a small budget than predicting
the noise, see DESIGN.md "Measured here"); the forward pass also returns the noise
eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), so the sampler is the paper's Algorithm 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.schedule import NoiseSchedule


@dataclass
class DenoiserConfig:
    num_vertices: int
    num_labels: int
    channels: tuple[int, ...] = (32, 32, 48, 48, 64, 64)
    spiral_lengths: tuple[int, ...] = (9, 9, 12, 12, 12, 12)
    index_dim: int = 8
    time_dim: int = 128
    signal_dim: int = 64
    use_neutral: bool = False
    schedule: dict = field(default_factory=lambda: NoiseSchedule().to_dict())

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.spiral_lengths = tuple(int(n) for n in self.spiral_lengths)
        if len(self.channels) != len(self.spiral_lengths) or not self.channels:
            raise AnimateMeError("the denoiser needs one spiral length per layer")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"], data["spiral_lengths"] = list(self.channels), list(self.spiral_lengths)
        return data


class SpiralConv(nn.Module):
    """Gather each vertex's spiral of neighbours, then one linear layer (Potamias et al. eq. 3)."""

    def __init__(self, in_channels: int, out_channels: int, spirals: torch.Tensor):
        super().__init__()
        self.num_vertices, self.length = spirals.shape
        # Flattened so the gather is one index_select (one ONNX Gather with constant indices).
        self.register_buffer("indices", spirals.reshape(-1).long().clone())
        self.linear = nn.Linear(in_channels * self.length, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # (B,V,Cin) -> (B,V,Cout)
        gathered = x.index_select(1, self.indices)                   # (B, V*L, Cin)
        return self.linear(gathered.reshape(-1, self.num_vertices, self.length * x.shape[-1]))


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) sinusoids; the MLP after it is what learns."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig, spirals: np.ndarray):
        super().__init__()
        self.config = config
        spirals = np.asarray(spirals)
        if spirals.shape[0] != config.num_vertices or spirals.shape[1] < max(config.spiral_lengths):
            raise AnimateMeError(
                f"spirals of shape {spirals.shape} do not fit {config.num_vertices} vertices "
                f"with spiral length {max(config.spiral_lengths)}"
            )
        if spirals.min() < 0 or spirals.max() >= config.num_vertices:
            raise AnimateMeError("spiral indices fall outside the template: rebuild the template")
        spirals = torch.as_tensor(spirals, dtype=torch.long)

        schedule = NoiseSchedule.from_dict(config.schedule)
        abar = torch.as_tensor(schedule.alpha_bars, dtype=torch.float32)
        self.register_buffer("sqrt_abar", abar.sqrt())
        self.register_buffer("sqrt_one_minus_abar", (1.0 - abar).clamp_min(1e-12).sqrt())

        self.index_embedding = nn.Parameter(0.1 * torch.randn(config.num_vertices, config.index_dim))
        self.time_mlp = nn.Sequential(
            nn.Linear(config.time_dim, config.time_dim), nn.SiLU(),
            nn.Linear(config.time_dim, config.time_dim),
        )
        self.signal_mlp = nn.Sequential(
            nn.Linear(config.num_labels, config.signal_dim), nn.SiLU(),
            nn.Linear(config.signal_dim, config.signal_dim),
        )
        cond_dim = config.time_dim + config.signal_dim
        in_channels = 3 + config.index_dim + (3 if config.use_neutral else 0)
        self.convs = nn.ModuleList()
        self.modulations = nn.ModuleList()
        for out_channels, length in zip(config.channels, config.spiral_lengths):
            self.convs.append(SpiralConv(in_channels, out_channels, spirals[:, :length]))
            self.modulations.append(nn.Linear(cond_dim, 2 * out_channels))
            in_channels = out_channels
        self.head = SpiralConv(in_channels, 3, spirals[:, : config.spiral_lengths[-1]])
        for modulation in self.modulations:  # start as plain convolutions; conditioning grows in
            nn.init.zeros_(modulation.weight)
            nn.init.zeros_(modulation.bias)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, signal: torch.Tensor,
                   neutral: torch.Tensor | None = None) -> torch.Tensor:
        batch = x_t.shape[0]
        features = [x_t, self.index_embedding.unsqueeze(0).expand(batch, -1, -1)]
        if self.config.use_neutral:
            if neutral is None:
                raise AnimateMeError("this denoiser was trained with the neutral geometry: pass it")
            features.append(neutral)
        h = torch.cat(features, dim=-1)
        cond = torch.cat([self.time_mlp(timestep_features(t, self.config.time_dim)),
                          self.signal_mlp(signal)], dim=-1)
        cond = F.silu(cond)
        for conv, modulation in zip(self.convs, self.modulations):
            scale, shift = modulation(cond).unsqueeze(1).chunk(2, dim=-1)
            out = F.elu(conv(h) * (1.0 + scale) + shift)
            h = out + h if out.shape == h.shape else out      # residual where widths agree
        return self.head(h)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, signal: torch.Tensor,
                neutral: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (eps, x0): the noise Algorithm 1 uses, and the clean deformation it came from."""
        x0 = self.predict_x0(x_t, t, signal, neutral)
        t = t.clamp_min(1)
        a = self.sqrt_abar.index_select(0, t)[:, None, None]
        s = self.sqrt_one_minus_abar.index_select(0, t)[:, None, None]
        return (x_t - a * x0) / s, x0


def count_flops(config: DenoiserConfig) -> float:
    """Multiply-adds x 2 of one forward pass for one frame (spiral layers dominate)."""
    in_channels = 3 + config.index_dim + (3 if config.use_neutral else 0)
    macs = 0
    for out_channels, length in zip(config.channels, config.spiral_lengths):
        macs += in_channels * length * out_channels
        in_channels = out_channels
    macs += in_channels * config.spiral_lengths[-1] * 3
    return 2.0 * macs * config.num_vertices


def build_denoiser(config: DenoiserConfig, spirals: np.ndarray) -> Denoiser:
    return Denoiser(config, spirals)
