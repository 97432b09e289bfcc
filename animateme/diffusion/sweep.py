"""`animateme sweep-guidance`: which learnt-guidance weight w to bake into the export, chosen on the
run's validation identities (never the held-out set).

For each w the run's EMA network plays the guided prediction at w (no export: the torch model,
`TorchDenoiser`), fast mode as the sampler runs it, and each label's apex amplitude over its ground
truth's is measured on validation sequences (`evaluation/calibration.measure`: frame 0, the apex and
its neighbours, which is what the full 40-frame sample gives there). The chosen w is the one whose
per-label ratios lie nearest 1 (the largest distance |log ratio| over the labels, smallest), one w
for every label: no per-label table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

from .data import load_template_arrays
from .reference import TorchDenoiser
from .train import ema_model, load_checkpoint


def card_of(checkpoint: dict, model) -> dict:
    """What the sampler reads from a card, for a checkpoint that was not exported."""
    return {"labels": list(checkpoint["label_names"]), "num_vertices": model.config.num_vertices,
            "schedule": model.config.schedule, "uses_neutral": bool(model.config.use_neutral),
            "normalisation": {"scale": [float(s) for s in checkpoint["scale"]]}, "sampling": {}}


def sweep(run: str | Path, corpus: str | Path, template: str | Path, weights, per_label: int = 12,
          seeds: int = 1, in_graph: bool = False, temperature: float | None = None,
          show_progress: bool = True) -> dict:
    from animateme.evaluation.calibration import measure
    from animateme.splits import load_split

    checkpoint = load_checkpoint(run)
    arrays = load_template_arrays(template)
    model = ema_model(checkpoint, arrays["spirals"])
    if not model.config.learnt_guidance:
        raise AnimateMeError("this run has no learnt guidance: use `animateme calibrate-guidance`")
    split = load_split(Path(corpus) / "test.npz")
    if list(split.label_names) != list(checkpoint["label_names"]):
        raise AnimateMeError(f"{corpus}: labels {list(split.label_names)} are not the model's")
    runtime = TorchDenoiser(model, card_of(checkpoint, model))
    options = {} if temperature is None else {"temperature": float(temperature)}
    ratios = {}
    for weight in weights:
        if in_graph:
            model.export_cfg = float(weight)
        else:
            model.export_guidance = float(weight)
        figures = measure(split, runtime, list(split.label_names), weights=(0.0,), per_label=per_label,
                          seeds=seeds, options=options, show_progress=show_progress, mode="fast")
        ratios[float(weight)] = {name: values[0] for name, values in figures["ratio"].items()}
    worst = {w: max(abs(np.log(r)) for r in by_label.values()) for w, by_label in ratios.items()}
    chosen = min(worst, key=worst.get)
    return {"run": str(run), "step": int(checkpoint["step"]), "corpus": str(corpus), "per_label": per_label,
            "seeds": seeds, "in_graph": in_graph, "temperature": temperature, "ratio": ratios,
            "worst_log_ratio": worst, "chosen": chosen}


def markdown(result: dict, command: str) -> str:
    names = list(next(iter(result["ratio"].values())))
    lines = [f"# Learnt-guidance weight on the validation identities (step {result['step']})", "",
             f"`{command}`: fast mode, apex amplitude over the ground truth's on {result['per_label']} "
             f"validation sequences per label; chosen: the w whose worst label lies nearest 1.", "",
             "| w | " + " | ".join(names) + " | worst |log| |", "|---" * (len(names) + 2) + "|"]
    for weight, by_label in result["ratio"].items():
        mark = "**" if weight == result["chosen"] else ""
        lines.append(f"| {mark}{weight:g}{mark} | " + " | ".join(f"{by_label[n]:.2f}" for n in names)
                     + f" | {result['worst_log_ratio'][weight]:.3f} |")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result, command))
