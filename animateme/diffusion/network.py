"""The denoiser: a spiral convolution network on the template, no down-sampling (AnimateMe supp. §3).

Input features per vertex: the noisy (normalised) deformation, a small learnable index embedding
and, optionally, the subject's neutral geometry. The timestep (sinusoidal features through a
learnable MLP, wider than the mesh channels) and the expression signal e_k are injected at every
layer as a per-channel scale and shift. Widths and spiral lengths grow with depth.

The head predicts v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022), turned into
x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v: near t = 0 the clean deformation is then the input
itself plus a small correction. The earlier x0 head (`prediction="x0"`, still loaded) had to learn
that identity through six non-linear layers and, after 2,500 steps, still missed the input by
0.8 mm at t = 1 (SNR 100), so it played each label's mean instead of what the noise had started.
The forward pass returns the noise eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) beside x0, so
the sampler is the paper's Algorithm 1 whatever the head (both formulas: noise.py).

`global_context` adds, at every layer, a zero-initialised linear map of the mean feature over all
vertices: spiral layers only see a few rings, and whether a take is the "pressed lips" or the
"bared teeth" anger is a decision for the whole face.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.schedule import NoiseSchedule

from .noise import NoiseAt, TorchSchedule

PREDICTIONS = ("x0", "v")


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
    prediction: str = "x0"          # "v" for new runs (see above); "x0": models trained before
    global_context: bool = False
    learnt_guidance: bool = False   # a null label and a guidance-weight input (see below)
    schedule: dict = field(default_factory=lambda: NoiseSchedule().to_dict())

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.spiral_lengths = tuple(int(n) for n in self.spiral_lengths)
        if len(self.channels) != len(self.spiral_lengths) or not self.channels:
            raise AnimateMeError("the denoiser needs one spiral length per layer")
        if self.prediction not in PREDICTIONS:
            raise AnimateMeError(f"unknown prediction {self.prediction!r}: use one of {PREDICTIONS}")

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

        # Buffers under these names: checkpoints, warm starts and the export carry them.
        tables = TorchSchedule(NoiseSchedule.from_dict(config.schedule))
        self.register_buffer("sqrt_abar", tables.sqrt_abar)
        self.register_buffer("sqrt_one_minus_abar", tables.sqrt_one_minus_abar)

        self.index_embedding = nn.Parameter(0.1 * torch.randn(config.num_vertices, config.index_dim))
        self.time_mlp = nn.Sequential(
            nn.Linear(config.time_dim, config.time_dim), nn.SiLU(),
            nn.Linear(config.time_dim, config.time_dim),
        )
        self.signal_mlp = nn.Sequential(
            nn.Linear(config.num_labels, config.signal_dim), nn.SiLU(),
            nn.Linear(config.signal_dim, config.signal_dim),
        )
        if config.learnt_guidance:
            self.null_signal = nn.Parameter(torch.zeros(config.signal_dim))
            self.guidance_mlp = nn.Sequential(nn.Linear(1, config.signal_dim), nn.SiLU(),
                                              nn.Linear(config.signal_dim, config.signal_dim))
            nn.init.zeros_(self.guidance_mlp[2].weight)
            nn.init.zeros_(self.guidance_mlp[2].bias)
        # The w a call without `guidance` plays (the export traces it in as a constant).
        self.export_guidance = 0.0
        # Set (a weight w) to play classifier-free guidance with the null label in one doubled call
        # instead of the learnt guidance (the export's --guidance-in-graph).
        self.export_cfg: float | None = None
        cond_dim = config.time_dim + config.signal_dim
        in_channels = 3 + config.index_dim + (3 if config.use_neutral else 0)
        self.convs = nn.ModuleList()
        self.modulations = nn.ModuleList()
        self.contexts = nn.ModuleList()
        for out_channels, length in zip(config.channels, config.spiral_lengths):
            self.convs.append(SpiralConv(in_channels, out_channels, spirals[:, :length]))
            self.modulations.append(nn.Linear(cond_dim, 2 * out_channels))
            if config.global_context:
                self.contexts.append(nn.Linear(in_channels, out_channels))
            in_channels = out_channels
        self.head = SpiralConv(in_channels, 3, spirals[:, : config.spiral_lengths[-1]])
        # Start as plain convolutions; conditioning and context grow in.
        for layer in (*self.modulations, *self.contexts):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _signal_features(self, signal: torch.Tensor, guidance: torch.Tensor | None,
                         drop: torch.Tensor | None) -> torch.Tensor:
        features = self.signal_mlp(signal)
        if not self.config.learnt_guidance:
            if guidance is not None or drop is not None:
                raise AnimateMeError("this denoiser has no learnt guidance: train it with --learnt-guidance")
            return features
        if drop is not None:
            features = torch.where(drop[:, None], self.null_signal[None, :].expand_as(features), features)
        if guidance is None:   # (B, 1) from the signal, so the traced graph keeps a dynamic batch
            weight = torch.zeros_like(signal[:, :1]) + float(self.export_guidance)
        else:
            weight = guidance.to(features.dtype)[:, None]
        return features + self.guidance_mlp(weight)

    def _head(self, x_t: torch.Tensor, t: torch.Tensor, signal: torch.Tensor,
              neutral: torch.Tensor | None = None, guidance: torch.Tensor | None = None,
              drop: torch.Tensor | None = None) -> torch.Tensor:
        """What the network predicts: x0 or v, as `config.prediction` says."""
        batch = x_t.shape[0]
        features = [x_t, self.index_embedding.unsqueeze(0).expand(batch, -1, -1)]
        if self.config.use_neutral:
            if neutral is None:
                raise AnimateMeError("this denoiser was trained with the neutral geometry: pass it")
            features.append(neutral)
        h = torch.cat(features, dim=-1)
        cond = torch.cat([self.time_mlp(timestep_features(t, self.config.time_dim)),
                          self._signal_features(signal, guidance, drop)], dim=-1)
        cond = F.silu(cond)
        for index, (conv, modulation) in enumerate(zip(self.convs, self.modulations)):
            scale, shift = modulation(cond).unsqueeze(1).chunk(2, dim=-1)
            pre = conv(h) * (1.0 + scale) + shift
            if self.config.global_context:
                pre = pre + self.contexts[index](h.mean(dim=1, keepdim=True))
            out = F.elu(pre)
            h = out + h if out.shape == h.shape else out      # residual where widths agree
        return self.head(h)

    def _cfg_head(self, x_t, t, signal, neutral, weight: float) -> torch.Tensor:
        """Classifier-free guidance inside one call: the conditional (w = 0) and null-label
        predictions of one doubled batch, pred(e) + w (pred(e) - pred(null)). Combined on the head's
        output: x0 (and eps) are affine in it with the same x_t, so this is the same mix of x0."""
        def twice(tensor):
            return None if tensor is None else torch.cat([tensor, tensor])
        keep = torch.zeros_like(t, dtype=torch.bool)
        drop = torch.cat([keep, torch.ones_like(t, dtype=torch.bool)])
        zero = torch.zeros_like(torch.cat([t, t]), dtype=x_t.dtype)
        both = self._head(twice(x_t), twice(t), twice(signal), twice(neutral), zero, drop)
        both = both.reshape(2, -1, both.shape[1], both.shape[2])
        return both[0] + weight * (both[0] - both[1])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, signal: torch.Tensor,
                neutral: torch.Tensor | None = None, guidance: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (eps, x0): the noise Algorithm 1 uses, and the clean deformation it came from.
        `guidance` (B,) w and `drop` (B,) bool (the null label) only for a learnt-guidance model;
        without them it plays `export_guidance`, with every label kept."""
        if self.export_cfg is not None and guidance is None and drop is None:
            predicted = self._cfg_head(x_t, t, signal, neutral, float(self.export_cfg))
        else:
            predicted = self._head(x_t, t, signal, neutral, guidance, drop)
        noise = NoiseAt.gather(self.sqrt_abar, self.sqrt_one_minus_abar, t.clamp_min(1))
        x0 = predicted if self.config.prediction == "x0" else noise.x0_from_v(x_t, predicted)
        return noise.eps_from_x0(x_t, x0), x0


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
