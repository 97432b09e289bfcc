"""The model of Potamias et al. §4: an LSTM encoder over the per-frame expression signal and a
spiral-convolution mesh decoder with up-sampling layers, whose output is the deformation added to
the subject's neutral (eq. 4). Table 1 scaled to our ~1,000-vertex template:

    FC 64 -> n3 x 64 | up n3->n2, spiral conv 64->32, ReLU | up n2->n1, conv 32->16, ReLU
    | up n1->V, conv 16->8, ReLU | conv 8->3
with n_l = V / 4**l (see `hierarchy`). The paper's four x5 up-samplings reach 28k vertices from 46;
three x4 ones reach our V from ~16.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .hierarchy import MeshHierarchy

LATENT = 64


class SpiralConv(nn.Module):
    """Spiral convolution (002 eq. 3): each vertex's output is one linear layer over the features
    gathered along its spiral, sum_l W_l f(S_l(v)) + b.

    Computed in the equivalent order "project, then gather": every vertex's features are first
    multiplied by all W_l, and the (out-channel) results are gathered and summed along the spiral.
    The gathered tensor then has the (smaller) output width instead of L x the input width, which
    halves the memory traffic that dominates training on a CPU.
    """

    def __init__(self, inputs: int, outputs: int, spirals: np.ndarray):
        super().__init__()
        spirals = torch.as_tensor(np.asarray(spirals), dtype=torch.long)
        self.length, self.inputs, self.outputs = spirals.shape[1], inputs, outputs
        # Row v, position l of the spiral reads entry (S_l(v), l) of the projected features.
        self.register_buffer("gather", (spirals * self.length + torch.arange(self.length)).reshape(-1))
        self.linear = nn.Linear(inputs * self.length, outputs)  # weight[o, l*inputs + c] = W_l[o, c]

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B,n,in) -> (B,n,out)
        batch, count, _ = features.shape
        weight = self.linear.weight.view(self.outputs, self.length, self.inputs)
        weight = weight.permute(2, 1, 0).reshape(self.inputs, self.length * self.outputs)
        projected = (features @ weight).reshape(batch, count * self.length, self.outputs)
        gathered = projected.index_select(1, self.gather).reshape(batch, count, self.length, self.outputs)
        return gathered.sum(dim=2) + self.linear.bias


class Upsample(nn.Module):
    """Level l+1 -> level l: each finer vertex is a fixed blend of three coarser ones."""

    def __init__(self, index: np.ndarray, weight: np.ndarray):
        super().__init__()
        self.register_buffer("index", torch.as_tensor(np.asarray(index), dtype=torch.long))
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight), dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B,n_coarse,c) -> (B,n_fine,c)
        gathered = features.index_select(1, self.index.reshape(-1)).reshape(
            features.shape[0], *self.index.shape, -1)
        return (gathered * self.weight[None, :, :, None]).sum(dim=2)


class LSTMEncoder(nn.Module):
    """(B,K,C) expression signal -> (B,K,64) latent, one per frame."""

    def __init__(self, labels: int, latent: int = LATENT):
        super().__init__()
        self.lstm = nn.LSTM(labels, latent, batch_first=True)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        return self.lstm(signal)[0]


class SpiralDecoder(nn.Module):
    """(N,64) latent -> (N,V,3) deformation, in units of `scale` mm."""

    def __init__(self, hierarchy: MeshHierarchy, channels: tuple[int, ...] = (64, 32, 16, 8),
                 latent: int = LATENT):
        super().__init__()
        depth = len(hierarchy.levels) - 1
        if len(channels) != depth + 1:
            raise ValueError(f"need {depth + 1} channel counts for a {depth}-level hierarchy")
        self.coarsest = len(hierarchy.levels[depth])
        self.channels = channels
        self.fc = nn.Linear(latent, self.coarsest * channels[0])
        blocks = []
        for step, level in enumerate(range(depth - 1, -1, -1)):
            blocks.append(nn.ModuleList([
                Upsample(hierarchy.up_index[level], hierarchy.up_weight[level]),
                SpiralConv(channels[step], channels[step + 1], hierarchy.spirals[level]),
            ]))
        self.blocks = nn.ModuleList(blocks)
        self.head = SpiralConv(channels[-1], 3, hierarchy.spirals[0])

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        features = self.fc(latent).reshape(latent.shape[0], self.coarsest, self.channels[0])
        for upsample, conv in self.blocks:
            features = torch.relu(conv(upsample(features)))
        return self.head(features)


class LSTMSpiralModel(nn.Module):
    """x_t = D(E(e)_t) + x_id (002 eq. 4); forward returns the deformation D(z_t) in mm."""

    def __init__(self, labels: int, hierarchy: MeshHierarchy, scale: float):
        super().__init__()
        self.encoder = LSTMEncoder(labels)
        self.decoder = SpiralDecoder(hierarchy)
        # Deformations are a few mm: the decoder works in units of their spread.
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, signal: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """(B,K,C) signal -> (B,K,V,3) deformations; with `frames` (B,F) indices, only those
        frames are decoded (the LSTM still reads the whole signal) -> (B,F,V,3)."""
        latent = self.encoder(signal)
        if frames is not None:
            latent = torch.gather(latent, 1, frames[:, :, None].expand(-1, -1, latent.shape[2]))
        batch, count, _ = latent.shape
        out = self.decoder(latent.reshape(batch * count, -1)) * self.scale
        return out.reshape(batch, count, *out.shape[1:])


def coherence_loss(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """002 eq. 5: L1 reconstruction + L1 of the difference of consecutive-frame motion, (B,K,V,3)."""
    reconstruction = (predicted - truth).abs().mean()
    motion = ((predicted[:, 1:] - predicted[:, :-1]) - (truth[:, 1:] - truth[:, :-1])).abs().mean()
    return reconstruction + motion


def pair_loss(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """eq. 5 on P pairs of consecutive frames per sequence, (B,P,2,V,3): an unbiased estimate of
    `coherence_loss` over random frame pairs, at a fraction of the decoding cost."""
    reconstruction = (predicted - truth).abs().mean()
    motion = ((predicted[:, :, 1] - predicted[:, :, 0]) - (truth[:, :, 1] - truth[:, :, 0])).abs().mean()
    return reconstruction + motion
