"""Training, saving and loading the two baselines. A checkpoint carries the template fingerprint
it was trained on, the corpus fingerprint, its seed and everything needed to rebuild the network
(the hierarchy included), so loading never depends on code that builds the hierarchy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from animateme import paths
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.template import Template

from animateme.evaluation.corpus import Corpus
from animateme.evaluation.pca import PCA, fit_pca

from .hierarchy import MeshHierarchy, build_hierarchy
from .lstm_decoder import LSTMSpiralModel, pair_loss
from .pca_blendshapes import PCABlendshapeModel, fit_mapping

BASELINES = ("lstm", "pca")


def checkpoint_path(kind: str, directory: str | Path | None = None) -> Path:
    return Path(directory or paths.data_dir() / "checkpoints") / f"{kind}.pt"


def train_lstm(corpus: Corpus, template: Template, seed: int = 0, epochs: int = 40,
               batch: int = 8, pairs: int = 3, learning_rate: float = 1e-3, decay: float = 0.99,
               weight_decay: float = 5e-5, show_progress: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Train the LSTM + spiral decoder (002 §4: Adam, lr 1e-3 decayed x0.99 per epoch, weight
    decay 5e-5, loss eq. 5) and return its checkpoint.

    Each step the LSTM reads whole sequences but only `pairs` random pairs of consecutive frames
    per sequence are decoded and scored (eq. 5 on those pairs): decoding dominates the cost and
    neighbouring frames are nearly alike, so this trains several times faster per epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    hierarchy = build_hierarchy(template.vertices, template.faces, template.spirals)
    signal = torch.as_tensor(corpus.train.signal())
    deform = torch.as_tensor(corpus.train.deform)
    scale = float(corpus.train.deform.std())
    model = LSTMSpiralModel(len(corpus.label_names), hierarchy, scale)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, decay)
    history = []
    started = time.monotonic()
    bar = tqdm(range(epochs), desc="lstm baseline", unit="epoch", disable=not show_progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(signal), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            first = torch.randint(0, deform.shape[1] - 1, (len(rows), pairs), generator=generator)
            frames = torch.stack([first, first + 1], dim=2).reshape(len(rows), -1)
            predicted = model(signal[rows], frames).reshape(len(rows), pairs, 2, *deform.shape[2:])
            truth = deform[rows][torch.arange(len(rows))[:, None], frames].reshape(predicted.shape)
            loss = pair_loss(predicted, truth)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        schedule.step()
        history.append(total / len(order))
        bar.set_postfix(loss=f"{history[-1]:.3f} mm")
    log(f"lstm baseline: {epochs} epochs in {time.monotonic() - started:.0f} s, "
        f"final training loss {history[-1]:.3f} mm (L1 + temporal coherence)")
    return {
        "kind": "lstm", "seed": seed, "epochs": epochs, "batch": batch, "pairs": pairs,
        "history": history,
        "template_fingerprint": template.fingerprint, "corpus_fingerprint": corpus.corpus_fingerprint,
        "label_names": list(corpus.label_names), "scale": scale,
        "hierarchy": hierarchy.state(), "state_dict": model.state_dict(),
    }


def train_pca(corpus: Corpus, lstm_checkpoint: dict, seed: int = 0,
              log: Callable[[str], None] = print) -> dict:
    """Fit the PCA blendshapes (64 components) and the map from the frozen LSTM latent to them."""
    pca = fit_pca(corpus.train.deform.reshape(-1, *corpus.train.deform.shape[-2:]), 64, seed=seed)
    lstm = build_model(lstm_checkpoint)
    model = PCABlendshapeModel(len(corpus.label_names), pca)
    model.encoder.load_state_dict(lstm.encoder.state_dict())
    fit_mapping(model, corpus.train.signal(), corpus.train.deform, pca)
    explained = float(pca.variance.sum() / max(corpus.train.deform.reshape(
        -1, corpus.train.deform[0, 0].size).var(axis=0, ddof=1).sum(), 1e-12))
    log(f"pca baseline: {len(pca.components)} components explain {100 * explained:.1f} % of the "
        "training deformation variance")
    return {
        "kind": "pca", "seed": seed, "explained_variance": explained,
        "template_fingerprint": lstm_checkpoint["template_fingerprint"],
        "corpus_fingerprint": corpus.corpus_fingerprint, "lstm_seed": lstm_checkpoint["seed"],
        "label_names": list(corpus.label_names), "pca": pca.state(),
        "state_dict": model.state_dict(),
    }


def build_model(checkpoint: dict) -> torch.nn.Module:
    """The network a checkpoint describes, weights loaded, in eval mode."""
    labels = len(checkpoint["label_names"])
    if checkpoint["kind"] == "lstm":
        model = LSTMSpiralModel(labels, MeshHierarchy.from_state(checkpoint["hierarchy"]),
                                checkpoint["scale"])
    else:
        model = PCABlendshapeModel(labels, PCA.from_state(checkpoint["pca"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(path)


def load_checkpoint(kind: str, fingerprint: str, directory: str | Path | None = None) -> dict:
    """The `kind` checkpoint, checked against the template fingerprint the evaluation uses."""
    path = checkpoint_path(kind, directory)
    if not path.is_file():
        raise AnimateMeError(f"no {kind} baseline at {path}: run `animateme baselines train {kind}` first "
                             "(or `animateme eval --train-missing`)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say so in one line
        raise AnimateMeError(
            f"cannot read {kind} baseline {path} ({type(error).__name__}): "
            f"run `animateme baselines train {kind}` again") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != kind:
        raise AnimateMeError(f"{path} is not a {kind} baseline: run `animateme baselines train {kind}` again")
    if checkpoint["template_fingerprint"] != fingerprint:
        raise AnimateMeError(
            f"{kind} baseline {path} was trained on template {checkpoint['template_fingerprint']} "
            f"but the corpus uses {fingerprint}: run `animateme baselines train {kind}` again")
    return checkpoint
