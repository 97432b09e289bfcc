"""Torch side of sampling: the denoiser behind the runtime's interface, and a reference sampler.

`TorchDenoiser` lets the core sampler drive the PyTorch model (eager timing in `animateme bench`).
`reference_sample` is an independent torch transcription of Algorithm 1 and its DDIM variant,
written out frame-batched without the core's de-duplication; tests hold the ONNX sampler to it.
Both draw noise from numpy's generator in the same order as the core (eps, then one z per step).
"""

from __future__ import annotations

import numpy as np
import torch

from animateme_blender.core.sample.runtime import neutral_feature
from animateme_blender.core.sample.schedule import NoiseSchedule, ddim_timesteps

from .network import Denoiser


class TorchDenoiser:
    """The runtime interface (`denoise`, `schedule`, `scale`, ...) over a torch `Denoiser`."""

    provider = "torch-eager"

    def __init__(self, model: Denoiser, card: dict, device: str = "cpu", faces: np.ndarray | None = None):
        self.model = model.eval().to(device)
        self.card = card
        self.faces = faces            # the template's triangles: the card's output smoothing needs them
        self.device = device
        self.labels = tuple(card["labels"])
        self.num_vertices = int(card["num_vertices"])
        self.schedule = NoiseSchedule.from_dict(card["schedule"])
        self.scale = np.asarray(card["normalisation"]["scale"], dtype=np.float32)
        self.uses_neutral = bool(card.get("uses_neutral", False))

    @torch.no_grad()
    def denoise(self, x_t, t, signal, neutral=None):
        to = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)
        eps, x0 = self.model(to(x_t), to(t, torch.int64), to(signal),
                             None if neutral is None else to(neutral))
        return eps.cpu().numpy(), x0.cpu().numpy()


@torch.no_grad()
def reference_sample(model: Denoiser, card: dict, neutral: np.ndarray, signal: np.ndarray, mode: str = "ddim",
                     steps: int | None = None, t_s: int = 400, seed: int = 0, eta: float = 0.0,
                     branch_steps: int | None = None, temperature: float = 1.0,
                     spacing: str = "linear") -> np.ndarray:
    """(K,V,3) mm. DDIM here needs explicit `steps` and `branch_steps`; `temperature` scales every draw."""
    schedule = NoiseSchedule.from_dict(card["schedule"])
    T = schedule.T
    betas = torch.tensor(schedule.betas, dtype=torch.float64)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, 0)
    posterior = torch.tensor(schedule.posterior_variance, dtype=torch.float64)
    scale = torch.as_tensor(card["normalisation"]["scale"], dtype=torch.float64)
    signal = torch.as_tensor(np.asarray(signal), dtype=torch.float32)
    K, V = signal.shape[0], scale.shape[0]
    use_neutral = bool(card.get("uses_neutral", False))
    neutral_in = torch.as_tensor(neutral_feature(neutral))[None] if use_neutral else None
    rng = np.random.default_rng(seed)
    noise = lambda: temperature * torch.as_tensor(rng.standard_normal((V, 3)), dtype=torch.float64)

    def net(x, t, e):
        n = None if neutral_in is None else neutral_in.expand(len(x), -1, -1)
        eps, x0 = model(x.float(), torch.full((len(x),), t, dtype=torch.int64), e, n)
        return eps.double(), x0.double()

    if mode == "ddpm":
        shared = list(range(T, t_s - 1, -1))
        branch = list(range(t_s, -1, -1))
    else:
        shared = ddim_timesteps(T, t_s, steps - branch_steps).tolist()
        branch = ddim_timesteps(t_s, 0, branch_steps, spacing).tolist()

    def step(x, t, t_next, e):
        eps, x0 = net(x, t, e)
        if mode == "ddpm":
            x = (x - betas[t] / torch.sqrt(1 - abar[t]) * eps) / torch.sqrt(alphas[t])
            return x + (posterior[t].sqrt() * noise() if t > 1 else 0.0)
        sigma = eta * torch.sqrt((1 - abar[t_next]) / (1 - abar[t]) * (1 - abar[t] / abar[t_next]))
        x = abar[t_next].sqrt() * x0 + torch.sqrt((1 - abar[t_next] - sigma ** 2).clamp_min(0)) * eps
        return x + (sigma * noise() if t_next > 0 and eta > 0 else 0.0)

    x = noise()[None]
    for t, t_next in zip(shared[:-1], shared[1:]):
        x = step(x, t, t_next, signal[:1])
    x = x.expand(K, -1, -1).clone()
    for t, t_next in zip(branch[:-1], branch[1:]):
        x = step(x, t, t_next, signal)
    return (x * scale[None, :, None]).float().numpy()
