"""Export the EMA denoiser to ONNX with its JSON card, and check it against PyTorch.

The graph: inputs x_t (B,V,3) float32, t (B,) int64 in 1..T, signal (B,C) float32 [, neutral
(B,V,3)]; outputs epsilon and x0 (B,V,3). Batch is dynamic; the spiral indices and the schedule's
sqrt(abar) table are constants inside the graph. Opset 17.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.runtime import CARD_FORMAT, NEUTRAL_SCALE_MM, card_path, file_sha256

from ..splits import split_arrays
from .data import load_template_arrays
from .network import Denoiser, count_flops
from .train import ema_model, load_checkpoint, read_log

OPSET = 17


class _WithNeutral(nn.Module):
    def __init__(self, model: Denoiser):
        super().__init__()
        self.model = model

    def forward(self, x_t, t, signal, neutral):
        return self.model(x_t, t, signal, neutral)


class _WithoutNeutral(_WithNeutral):
    def forward(self, x_t, t, signal):
        return self.model(x_t, t, signal)


def example_inputs(model: Denoiser, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    T = int(model.sqrt_abar.shape[0] - 1)
    inputs = [torch.randn(batch, config.num_vertices, 3, generator=generator),
              torch.randint(1, T + 1, (batch,), generator=generator),
              torch.rand(batch, config.num_labels, generator=generator)]
    if config.use_neutral:
        inputs.append(0.5 * torch.randn(batch, config.num_vertices, 3, generator=generator))
    return tuple(inputs)


def write_onnx(model: Denoiser, path: Path) -> None:
    wrapper = (_WithNeutral if model.config.use_neutral else _WithoutNeutral)(model).eval()
    names = ["x_t", "t", "signal"] + (["neutral"] if model.config.use_neutral else [])
    dynamic = {name: {0: "batch"} for name in names + ["epsilon", "x0"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example_inputs(model, 2), str(path), input_names=names,
                          output_names=["epsilon", "x0"], dynamic_axes=dynamic, opset_version=OPSET,
                          # no folding: weights keep their names (bench rebuilds the torch
                          # model from them); ONNX Runtime folds the transposes at load
                          do_constant_folding=False, dynamo=False)
    import onnx
    onnx.checker.check_model(onnx.load(str(path)))


def parity(model: Denoiser, path: Path, batch: int = 8, seed: int = 1) -> dict:
    """Max abs / relative difference of both outputs, PyTorch vs ONNX Runtime, on random inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = example_inputs(model, batch, seed)
    with torch.no_grad():
        expected = [o.numpy() for o in model(*inputs)]
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    got = session.run(["epsilon", "x0"], feed)
    report = {"batch": batch}
    for name, want, have in zip(("epsilon", "x0"), expected, got):
        diff = float(np.abs(want - have).max())
        report[f"{name}_max_abs_diff"] = diff
        report[f"{name}_max_rel_diff"] = diff / max(float(np.abs(want).max()), 1e-12)
    return report


def export(checkpoint_path: str | Path, template_path: str | Path, out_path: str | Path,
           guidance: float = 0.0, guidance_kind: str = "neutral", smoothing: float = 0.0,
           guidance_rescale: float = 0.0, learnt_guidance: float | None = None,
           fast_temperature: float | None = None, guidance_in_graph: bool = False) -> dict:
    """Write `out_path` (.onnx) and its card (.json); returns the card. `guidance` > 0 and
    `smoothing` > 0 record the label guidance and output smoothing the sampler should run this model
    with (the card's `sampling`). `learnt_guidance` w is for a model trained with learnt guidance
    (train.py): the graph plays the guided prediction at w, one call per step, and the card records
    w (`learnt_guidance`) with no sampler guidance."""
    sampling = sampling_entry(guidance, guidance_kind, smoothing, guidance_rescale,
                              fast_temperature=fast_temperature)
    checkpoint = load_checkpoint(checkpoint_path)
    template = load_template_arrays(template_path)
    if checkpoint["fingerprint"] != template["fingerprint"]:
        raise AnimateMeError(
            f"the checkpoint was trained for template {checkpoint['fingerprint']}, not "
            f"{template['fingerprint']}: export with the template it was trained on"
        )
    model = ema_model(checkpoint, template["spirals"])
    if model.config.learnt_guidance:
        weight = 0.0 if learnt_guidance is None else float(learnt_guidance)
        if not (np.isfinite(weight) and weight >= 0.0):
            raise AnimateMeError(f"--learnt-guidance-weight must be >= 0, got {learnt_guidance}")
        if sampling["guidance"] > 0:
            raise AnimateMeError("this model learnt its guidance: give --learnt-guidance-weight, not --guidance")
        if guidance_in_graph:
            model.export_cfg = weight      # the doubled call (true CFG with the null label)
        else:
            model.export_guidance = weight
    elif learnt_guidance or guidance_in_graph:
        raise AnimateMeError("--learnt-guidance-weight needs a model trained with --learnt-guidance")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.stem + ".partial.onnx")
    write_onnx(model, partial)
    check = parity(model, partial)
    if max(check["epsilon_max_rel_diff"], check["x0_max_rel_diff"]) > 1e-4:
        raise AnimateMeError(f"ONNX output differs from PyTorch beyond 1e-4 relative ({check}): not exported")
    partial.replace(out_path)
    run_dir = Path(checkpoint_path)
    run_dir = run_dir if run_dir.is_dir() else run_dir.parent
    training = {"steps": int(checkpoint["step"]), "seconds": round(float(checkpoint["seconds"]), 1),
                "world_size": int(checkpoint.get("world_size", 1)),
                "batch": int(checkpoint["train_config"]["batch"]),
                "seed": int(checkpoint["train_config"]["seed"]),
                "neutral_swap": float(checkpoint["train_config"].get("neutral_swap", 0.0)),
                "upper_face_weight": float(checkpoint["train_config"].get("upper_face_weight", 1.0)),
                "branch_at": int(checkpoint["train_config"].get("branch_at", 0))}
    if model.config.learnt_guidance:
        config = checkpoint["train_config"]
        training |= {"label_dropout": float(config.get("label_dropout", 0.0)),
                     "guidance_max": float(config.get("guidance_max", 0.0)),
                     "guidance_zero_share": float(config.get("guidance_zero_share", 0.0))}
    training["validation_identities"] = len(checkpoint.get("val_identities", []))
    training["corpus_fingerprint"] = _corpus_fingerprint(checkpoint, run_dir)
    if checkpoint.get("init_from"):
        training["init_from"] = checkpoint["init_from"]  # steps above count from there
    try:
        log = read_log(run_dir)
        training["final_loss"] = float(log[-5:, 1].mean()) if len(log) else None
    except AnimateMeError:
        pass
    card = {
        "format": CARD_FORMAT,
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labels": list(checkpoint["label_names"]),
        "num_vertices": model.config.num_vertices,
        "template_fingerprint": template["fingerprint"],
        "schedule": model.config.schedule,
        "prediction": (f"{model.config.prediction} head; the graph returns x0 and "
                       "epsilon = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)"),
        "normalisation": {"kind": "per_vertex_rms", "scale": [round(float(s), 6) for s in checkpoint["scale"]],
                          "neutral_scale_mm": NEUTRAL_SCALE_MM},
        "uses_neutral": bool(model.config.use_neutral),
        "full_intensity": full_intensity(checkpoint),
        "sampling": sampling,
    } | ({"learnt_guidance": {"weight": weight, "in_graph": bool(guidance_in_graph),
                              "note": ("pred(e) + w (pred(e) - pred(null)) computed in the graph on a doubled batch "
                                       "(conditional and null label): one call per step, twice the work"
                                       if guidance_in_graph else
                                       "pred(e) + w (pred(e) - pred(null)) learnt by the network and baked into "
                                       "the graph: the sampler calls it once per step, unguided")}}
         if model.config.learnt_guidance else {}) | {
        "inputs": {"x_t": "(B,V,3) float32, normalised", "t": "(B,) int64 in 1..T",
                   "signal": "(B,C) float32 e_k"} | ({"neutral": "(B,V,3) float32"} if model.config.use_neutral else {}),
        "outputs": {"epsilon": "(B,V,3)", "x0": "(B,V,3)"},
        "opset": OPSET,
        "network": model.config.to_dict() | {"parameters": sum(p.numel() for p in model.parameters()),
                                             "gflop_per_frame": round(count_flops(model.config) / 1e9, 4)},
        "training": training,
        "parity": check,
        "sha256": file_sha256(out_path),
    }
    card_path(out_path).write_text(json.dumps(card, indent=1) + "\n")
    return card


def sampling_entry(guidance: float, guidance_kind: str, smoothing: float, guidance_rescale: float = 0.0,
                   guidance_by_label: dict | None = None, paper_guidance_by_label: dict | None = None,
                   fast_temperature: float | None = None, guidance_kind_by_label: dict | None = None,
                   fast_gain_by_label: dict | None = None) -> dict:
    """The card's `sampling`, checked: label guidance (one weight, or one per label, and one per
    label for paper mode; one kind, or one per label where it differs from `guidance_kind`), its
    rescale, output smoothing, fast mode's temperature (None: the sampler's default) and its signal
    gain per label (those other than 1) (core/sample/sampler.py)."""
    from animateme_blender.core.sample.guidance import canonical_kind, check_guidance, check_rescale
    from animateme_blender.core.sample.settings import check_gain, check_temperature
    from animateme_blender.core.sample.smoothing import check_smoothing

    check_guidance(guidance, guidance_kind)
    for weight in [*(guidance_by_label or {}).values(), *(paper_guidance_by_label or {}).values()]:
        check_guidance(weight, guidance_kind)
    for kind in (guidance_kind_by_label or {}).values():
        check_guidance(0.0, kind)
    check_rescale(guidance_rescale)
    check_smoothing(smoothing)
    entry = {"guidance": float(guidance), "guidance_kind": guidance_kind,
             "guidance_rescale": float(guidance_rescale), "smoothing": float(smoothing)}
    default_kind = canonical_kind(guidance_kind)
    kinds = {str(k): canonical_kind(v) for k, v in (guidance_kind_by_label or {}).items()
             if canonical_kind(v) != default_kind}
    if kinds:
        entry["guidance_kind_by_label"] = kinds
    if guidance_by_label:
        entry["guidance_by_label"] = {str(k): float(v) for k, v in guidance_by_label.items()}
    if paper_guidance_by_label:
        entry["paper_guidance_by_label"] = {str(k): float(v) for k, v in paper_guidance_by_label.items()}
    if fast_temperature is not None:
        check_temperature(float(fast_temperature), "fast temperature")
        entry["fast_temperature"] = float(fast_temperature)
    for gain in (fast_gain_by_label or {}).values():
        check_gain(float(gain))
    gains = {str(k): float(v) for k, v in (fast_gain_by_label or {}).items() if float(v) != 1.0}
    if gains:
        entry["fast_gain_by_label"] = gains
    return entry


def write_sampling(model_path: str | Path, guidance: float, guidance_kind: str, smoothing: float = 0.0,
                   guidance_rescale: float = 0.0, guidance_by_label: dict | None = None,
                   paper_guidance_by_label: dict | None = None, fast_temperature: float | None = None,
                   guidance_kind_by_label: dict | None = None, fast_gain_by_label: dict | None = None) -> dict:
    """Record in an exported model's card how to sample it (label guidance, output smoothing:
    measured with `animateme eval --guidance ... --smoothing ...`); the ONNX file and its checksum
    are untouched."""
    from animateme_blender.core.sample.runtime import read_card
    from animateme_blender.core.sample.settings import label_gains

    sampling = sampling_entry(guidance, guidance_kind, smoothing, guidance_rescale, guidance_by_label,
                              paper_guidance_by_label, fast_temperature, guidance_kind_by_label, fast_gain_by_label)
    card = read_card(model_path)
    label_gains(card["labels"], sampling.get("fast_gain_by_label", {}))   # names only the model's labels
    card["sampling"] = sampling
    path = card_path(model_path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(card, indent=1) + "\n")
    partial.replace(path)
    return card


def update_sampling(model_path: str | Path, **changes) -> dict:
    """write_sampling with the card's current settings for everything not in `changes` (None drops
    an optional one: a per-label table of weights, kinds or gains, fast mode's temperature)."""
    from animateme_blender.core.sample.runtime import read_card
    from animateme_blender.core.sample.settings import card_settings

    return write_sampling(model_path, **(card_settings(read_card(model_path)) | changes))


FULL_INTENSITY_PERCENTILE = 90


def full_intensity(checkpoint: dict) -> dict:
    """{label: e} the user's intensity 1 plays: the FULL_INTENSITY_PERCENTILE-th percentile of the
    label's peak e_k over the training sequences. e is scaled by each label's single most extreme
    sequence (AnimateMe's extremeness), so e = 1 is one example and most sequences peak far below
    it (measured: sad's median peak 0.15); a model asked for e = 1 extrapolates, and the 12,500-step
    candidate's sad read as happy there on every face. Without the corpus (moved away), 1."""
    labels = list(checkpoint["label_names"])
    path = Path(checkpoint["train_config"]["corpus"])
    if not path.is_file():
        return {label: 1.0 for label in labels}
    data = split_arrays(path, ("progression", "label", "label_names"))
    peaks, label_of = data["progression"].max(axis=1), data["label"]
    names = [str(name) for name in data["label_names"]]
    out = {}
    for label in labels:
        chosen = peaks[label_of == names.index(label)] if label in names else np.zeros(0)
        out[label] = round(float(np.percentile(chosen, FULL_INTENSITY_PERCENTILE)), 4) if len(chosen) else 1.0
    return out


def _corpus_fingerprint(checkpoint: dict, run_dir: Path | None = None) -> str | None:
    """The eval reports' corpus fingerprint of the folder the run trained on, when it is still there.
    Kept in the run folder against the files' sizes and times (hashing a 5.6 GB corpus at every
    export of a weight sweep is minutes)."""
    from animateme.evaluation.corpus import corpus_fingerprint

    folder = Path(checkpoint["train_config"]["corpus"]).parent
    files = [folder / f"{name}.npz" for name in ("train", "test")]
    if not all(path.is_file() for path in files):
        return None
    key = [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in files]
    cache = None if run_dir is None else run_dir / "corpus_fingerprint.json"
    if cache is not None and cache.is_file():
        try:
            kept = json.loads(cache.read_text())
            if kept.get("files") == key:
                return str(kept["fingerprint"])
        except (ValueError, KeyError):
            pass
    fingerprint = corpus_fingerprint(folder)
    if cache is not None and run_dir.is_dir():
        cache.write_text(json.dumps({"files": key, "fingerprint": fingerprint}) + "\n")
    return fingerprint


def plot_training_curve(run_dir: str | Path, out_png: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    log = read_log(run_dir)
    if not len(log):
        raise AnimateMeError(f"the training log in {run_dir} is empty: train for longer")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(log[:, 0], log[:, 1], lw=0.6, alpha=0.4, label="loss (per log interval)")
    window = max(1, len(log) // 50)
    smooth = np.convolve(log[:, 1], np.ones(window) / window, mode="valid")
    ax.plot(log[window - 1:, 0], smooth, lw=1.5, label=f"moving mean ({window})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (normalised)")
    ax.set_title(f"denoiser training: {int(log[-1, 0])} steps, {log[-1, 3] / 60:.0f} min")
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
