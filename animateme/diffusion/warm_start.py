"""Starting a training run from an exported model (ONNX + card) instead of from scratch.

A run folder is the only thing that resumes training, and it lives in an ignored folder; the shipped
or candidate ONNX file is what survives. Its initialisers carry every weight under its PyTorch name
(`model.<parameter>`, the export wraps the denoiser as `model`) and its card carries the network's
configuration and the per-vertex normalisation, so a new run can start from those weights on a new
corpus (fine-tuning) with a fresh optimiser and learning-rate schedule.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from animateme_blender.core.errors import AnimateMeError

from .network import Denoiser, DenoiserConfig

PREFIX = "model."


# Configuration a new run may add to an exported model's, and the parameters that come with it
# (initialised so the network plays as before: network.py).
ADDABLE = {"learnt_guidance": ("null_signal", "guidance_mlp.")}


def state_from_model(onnx_path: str | Path, spirals: np.ndarray, fingerprint: str,
                     overrides: dict | None = None) -> dict:
    """A checkpoint-shaped dict (model and EMA weights, model_config, scale, step 0) from an exported
    model, checked against the template the new run trains on. `overrides` turns on what ADDABLE
    lists (e.g. {"learnt_guidance": True}): the parameters it brings start fresh."""
    import onnx
    from onnx import numpy_helper

    onnx_path = Path(onnx_path)
    card_path = onnx_path.with_suffix(".json")
    if not onnx_path.is_file() or not card_path.is_file():
        raise AnimateMeError(f"--init-from needs {onnx_path} and its card {card_path.name} beside it")
    card = json.loads(card_path.read_text())
    if card.get("template_fingerprint") != fingerprint:
        raise AnimateMeError(f"{onnx_path} was trained on template {card.get('template_fingerprint')}, "
                             f"not {fingerprint}: start this run from scratch or use that template")
    # The card's `network` is the configuration plus figures (parameter count, GFLOP): keep the former.
    settings = {f.name: card["network"][f.name] for f in fields(DenoiserConfig) if f.name in card["network"]}
    unknown = sorted(set(overrides or {}) - set(ADDABLE))
    if unknown:
        raise AnimateMeError(f"a warm start cannot change {', '.join(unknown)}")
    config = DenoiserConfig(**(settings | dict(overrides or {})))
    # A learnt-guidance export holds its guidance path but not the null label (the graph never
    # drops the label): that one starts again from zero.
    fresh = tuple(prefix for key, prefixes in ADDABLE.items() if getattr(config, key) for prefix in prefixes)
    weights = {init.name[len(PREFIX):]: torch.from_numpy(numpy_helper.to_array(init).copy())
               for init in onnx.load(str(onnx_path)).graph.initializer if init.name.startswith(PREFIX)}
    # Parameters come from the file; buffers (spiral indices, the schedule's square roots) follow from
    # the template and the configuration, and the exporter may share or fold them.
    network_shell = Denoiser(config, spirals)
    state = network_shell.state_dict()
    for name, _ in network_shell.named_parameters():
        if name not in weights and name.startswith(fresh) and fresh:
            continue
        if name not in weights:
            raise AnimateMeError(f"{onnx_path} lacks the weight {name}: it cannot seed a training run")
        if tuple(weights[name].shape) != tuple(state[name].shape):
            raise AnimateMeError(f"{onnx_path}: {name} is {tuple(weights[name].shape)}, the card's network "
                                 f"wants {tuple(state[name].shape)}")
        state[name] = weights[name].to(state[name].dtype)
    return {"model": state, "ema": {k: v.clone() for k, v in state.items()}, "step": 0, "seconds": 0.0,
            "model_config": config.to_dict(),
            "scale": np.asarray(card["normalisation"]["scale"], dtype=np.float32),
            "init_from": {"model": str(onnx_path), "sha256": card.get("sha256"),
                          "steps": card.get("training", {}).get("steps")}}
