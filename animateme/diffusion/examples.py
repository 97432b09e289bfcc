"""What one training step is shown: its timesteps, whose neutral, the branch states of Algorithm 1,
the guidance weights and guided targets, the loss weight per vertex, and which identities are kept
out for validation. train.py runs the loop; these decide the examples, each testable alone.
`config` is train.TrainConfig.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.schedule import NoiseSchedule

from .data import FrameCorpus

if TYPE_CHECKING:
    from .train import TrainConfig


def draw_timesteps(config: TrainConfig, T: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ U{1..T}, except that a share `focus_share` is drawn from U{1..t_focus}: with the shifted
    schedule the steps above ~t_s hold almost no signal and need far fewer examples to learn."""
    t = torch.randint(1, T + 1, (config.batch,), generator=generator)
    focus = min(int(config.t_focus), T)
    if focus < T and config.focus_share > 0:
        near = torch.randint(1, focus + 1, (config.batch,), generator=generator)
        pick = torch.rand(config.batch, generator=generator) < config.focus_share
        t = torch.where(pick, near, t)
    return t


def branch_share(schedule: NoiseSchedule, t_s: int) -> torch.Tensor:
    """(T+1,) float32: how much of the e_0 trunk a frame's state still holds at step t after
    branching at t_s (1 at t_s, 0 above it and at t = 0).

    Algorithm 1 denoises every frame on e_0 down to t_s, then on its own e_k. After the branch the
    ancestral steps (DDPM, or DDIM with eta = 1) mix each step's x0 estimate into the state; with a
    perfect estimate x_t = sqrt(abar_t) (b x_e0 + (1 - b) x0) + sqrt(1 - abar_t) eps, where
    b = SNR(t_s) / SNR(t) (the product of the posterior's weights on x_t telescopes to that ratio).
    A network trained only on x_t built from x0 never sees that state: at t_s it still holds the
    neutral, and with the shifted schedule a large motion (surprise's jaw) is visible through the
    noise, so the frames come out at ~0.4 of the take's apex."""
    snr = np.asarray(schedule.snr, dtype=np.float64)
    share = np.zeros(len(snr), dtype=np.float64)
    if t_s > 0:
        share[1:t_s + 1] = snr[t_s] / snr[1:t_s + 1]
    return torch.tensor(np.clip(share, 0.0, 1.0), dtype=torch.float32)


def shown_subjects(config: TrainConfig, subjects: torch.Tensor, count: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Whose neutral each frame is shown. A subject's way of playing an emotion (its variant, reach,
    timing) is drawn independently of its face, so a face says nothing about the variant; but with
    one take per label per training subject, a network fed the true neutral can learn "this face
    plays this variant" and then, on a face it never saw, averages the variants (it under-plays).
    Showing a share `neutral_swap` of frames a random training subject's neutral breaks that shortcut
    and keeps the face's real, geometric influence on the rest."""
    if config.neutral_swap <= 0:
        return subjects
    swap = torch.rand(len(subjects), generator=generator) < config.neutral_swap
    other = torch.randint(0, count, (len(subjects),), generator=generator)
    return torch.where(swap, other, subjects)


UPPER_FACE_FROM = 29   # Multi-PIE landmark: the middle of the nose; above it lie the brows and eyes


def vertex_loss_weights(vertices: np.ndarray, landmarks: np.ndarray | None, upper_weight: float) -> np.ndarray:
    """(V,) loss weight per vertex, mean 1: `upper_weight` above the nose's middle (template +y), 1
    below, normalised so the loss and learning rate keep their meaning. Made to test whether fear
    under-plays its brows (0.72 of people's, `animateme eval-regions`) because brows and eyes are a
    fifth of the template's vertices: at 3 for 5,500 steps they did not move (docs/model-history.md)."""
    upper_weight = float(upper_weight)
    if not (math.isfinite(upper_weight) and upper_weight > 0):
        raise AnimateMeError(f"--upper-face-weight must be > 0, got {upper_weight}")
    count = len(vertices)
    if upper_weight == 1.0:
        return np.ones(count, dtype=np.float32)
    if landmarks is None or len(landmarks) <= UPPER_FACE_FROM:
        raise AnimateMeError("--upper-face-weight needs the template's 68 landmarks: rebuild the template "
                             "(`animateme data template`) or leave the weight at 1")
    upper = np.asarray(vertices)[:, 1] > np.asarray(vertices)[int(landmarks[UPPER_FACE_FROM]), 1]
    weights = np.where(upper, upper_weight, 1.0)
    return (weights / weights.mean()).astype(np.float32)


def validation_identities(corpus: FrameCorpus, count: int, seed: int) -> np.ndarray:
    """`count` training identities (the corpus's `subject`, else its sequences) drawn with `seed`,
    kept out of training so that settings (the exported guidance weight, the checkpoint) are chosen
    on people the model never saw without reading the held-out set."""
    count = int(count)
    identity = corpus.identity if corpus.identity is not None else np.arange(len(corpus.neutral))
    people = np.unique(identity)
    if count < 0 or count >= len(people):
        raise AnimateMeError(f"--val-subjects must lie in [0, {len(people) - 1}], got {count}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(10_000 + seed).choice(people, size=count, replace=False))


def training_rows(corpus: FrameCorpus, held: np.ndarray) -> torch.Tensor:
    """Frame rows of the identities not held out for validation."""
    identity = corpus.identity if corpus.identity is not None else np.arange(len(corpus.neutral))
    keep_sequence = ~np.isin(identity, held)
    return torch.from_numpy(np.flatnonzero(keep_sequence[corpus.subject_of]))


def draw_guidance(config: TrainConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, drop) per frame: `label_dropout` of the frames see the null label (w = 0), the rest a
    guidance weight, 0 for `guidance_zero_share` of them (the plain conditional model, which is the
    guided target's teacher) and U[0, guidance_max] otherwise."""
    drop = torch.rand(batch, generator=generator) < config.label_dropout
    weight = torch.rand(batch, generator=generator) * float(config.guidance_max)
    plain = torch.rand(batch, generator=generator) < config.guidance_zero_share
    weight = torch.where(drop | plain, torch.zeros_like(weight), weight)
    return weight, drop


def guided_target(teacher: nn.Module, x0: torch.Tensor, inputs: list, weight: torch.Tensor) -> torch.Tensor:
    """Model guidance (Tang et al. 2025, "Diffusion models without classifier-free guidance"), with
    the w = 0 conditional model as the teacher: a frame trained at w > 0 is fitted on
    x0 + w (x0(e) - x0(null)), both predictions the teacher's (EMA, no gradient) on the same noisy
    input. Its expectation is the classifier-free-guided prediction pred(e) + w (pred(e) - pred(null)),
    so at sampling the network's prediction at w is the guided one, in one call."""
    rows = torch.nonzero(weight > 0).squeeze(1)
    if len(rows) == 0:
        return x0
    n = len(rows)
    x_t, t, signal, neutral = (tensor[rows] for tensor in inputs)
    with torch.no_grad():
        _, pred = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([signal, signal]),
                          torch.cat([neutral, neutral]), torch.zeros(2 * n, device=x0.device),
                          torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x0.device))
    target = x0.clone()
    target[rows] = x0[rows] + weight[rows, None, None] * (pred[:n] - pred[n:])
    return target
