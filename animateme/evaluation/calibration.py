"""`animateme calibrate-guidance`: a label-guidance weight per label, measured on training subjects
(or on unseen people).

A denoiser trained frame by frame under-plays the labels whose takes come in several variants (its
samples average part of them away), and label guidance enlarges every label alike: one weight that
brings angry up to its ground truth's apex overshoots sad and disgust by half. This measures, for a
few weights, each label's apex amplitude over its ground truth's on *training* sequences (the test
set is left to `animateme eval`; a corpus built with `data build --train-from` lends its test split of
unseen people instead), and picks per label the weight where the ratio crosses the target,
interpolating linearly between the measured weights.

Fast mode and paper mode are calibrated apart (`mode`): paper mode guides all 1,000 steps of
Algorithm 1, and each guided step starts the next from a state already further along the label, so
the same weight enlarges its motion more than fast mode's nine steps do (the bundled model: 1.28x
the ground truth's apex in paper mode where fast mode gave 1.08x). The card keeps one table each.
Each mode samples at its own temperature: fast mode at the card's `fast_temperature`, paper mode
at 1, as `core.sample.sampler.sample` does by default.

Each sequence is sampled on its first frame (whose e_0 drives the shared trunk), its ground truth's
apex frame and the apex's two neighbours only: in Algorithm 1 (and its DDIM variant) a frame depends
on its own e_k, the shared trajectory and the shared noise, so those frames are the ones the full
40-frame sample would give.

`knob="gain"` measures fast mode's signal gain instead (`calibrate-guidance --gain`): the label
sampled unguided with its signal times each gain (core/sample/sampler.py). A label whose guidance makes its
samples more prototypical than people's plays at the ground truth's size this way instead.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import expression_signal

from ..splits import Split
from .modes import MODES
from .variety import apex_amplitude, apex_frames

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
GAINS = (1.0, 1.3, 1.6, 1.9)
KNOBS = {"guidance": "guidance weight", "gain": "signal gain"}
TARGET = 1.0
SPLIT_WORDS = {"train": "training", "test": "test-split"}


def pick_rows(split: Split, labels: int, per_label: int) -> list[int]:
    """`per_label` sequences of each label, spread evenly over the split (so over subjects)."""
    rows = []
    for label in range(labels):
        members = np.flatnonzero(split.label == label)
        take = np.linspace(0, len(members) - 1, min(per_label, len(members))).round().astype(int)
        rows += members[take].tolist()
    return rows


def measure(split: Split, runtime, label_names, weights=WEIGHTS, per_label: int = 50, seeds: int = 1,
            options: dict | None = None, show_progress: bool = True, mode: str = "fast",
            only: list[str] | None = None, knob: str = "guidance") -> dict:
    """{"weights": [...], "ratio": {label: [apex amplitude ratio at each weight]}} in `mode`
    ("fast" or "paper"), for every label or the labels in `only`; with knob "gain" the "weights"
    are fast mode's signal gains, sampled without guidance."""
    from animateme_blender.core.sample.sampler import sample
    from animateme_blender.core.sample.settings import SamplingSettings

    measured = [name for name in label_names if only is None or name in only]
    rows = [row for row in pick_rows(split, len(label_names), per_label)
            if label_names[int(split.label[row])] in measured]
    apex = apex_frames(split.deform[rows])
    truth = {name: [] for name in measured}
    reached = {name: [[] for _ in weights] for name in measured}
    jobs = [(row, int(a), seed) for row, a in zip(rows, apex) for seed in range(seeds)]
    if mode not in MODES:
        raise AnimateMeError(f"unknown sampler mode {mode!r}: use one of {', '.join(MODES)}")
    if knob not in KNOBS or (knob == "gain" and mode != "fast"):
        raise AnimateMeError(f"calibrate the guidance weight in either mode, or fast mode's signal gain; got {knob} "
                             f"in {mode} mode")
    for row, a, seed in tqdm(jobs, desc=f"calibrate {knob} ({mode})", unit="sample",
                             disable=not show_progress):
        # Frame 0 first: the shared trunk runs on the first row's signal, as in the full sample.
        frames = np.unique(np.concatenate([[0], np.arange(max(a - 1, 0), min(a + 2, split.deform.shape[1]))]))
        signal = expression_signal(split.progression[row], split.mix(row))[frames]
        name = label_names[int(split.label[row])]
        truth[name].append(apex_amplitude(split.deform[row][frames][None])[0])
        for index, weight in enumerate(weights):
            knobs = ({"guidance": 0.0, "fast_gain_by_label": {name: float(weight)}} if knob == "gain"
                     else {"guidance": float(weight)})
            settings = SamplingSettings.for_runtime(runtime, **MODES[mode], **(options or {}), **knobs,
                                                    guidance_by_label={}, paper_guidance_by_label={})
            out = sample(runtime, split.neutral[row], signal, settings, seed=1000 * int(row) + seed)
            reached[name][index].append(apex_amplitude(out[None])[0])
    ratio = {name: [float(np.mean(values) / np.mean(truth[name])) for values in reached[name]]
             for name in measured}
    return {"weights": [float(w) for w in weights], "ratio": ratio, "sequences_per_label": per_label,
            "seeds": seeds, "mode": mode, "knob": knob}


def weight_for(weights, ratios, target: float = TARGET) -> tuple[float, bool]:
    """(weight, reached): the smallest weight where the measured ratio crosses `target`, linear
    between measurements; the largest weight measured and False when none reaches it."""
    weights, ratios = np.asarray(weights, float), np.asarray(ratios, float)
    if ratios[0] >= target:
        return float(weights[0]), True
    for k in range(1, len(weights)):
        if ratios[k] >= target:
            share = (target - ratios[k - 1]) / (ratios[k] - ratios[k - 1])
            return float(weights[k - 1] + share * (weights[k] - weights[k - 1])), True
    return float(weights[-1]), False


def choose(figures: dict, target: float = TARGET) -> dict:
    """Per-label weights from `measure`'s figures; raises when a label never reaches the target."""
    chosen = reached_weights(figures, target)
    short = [f"{name} ({max(figures['ratio'][name]):.2f} at most)" for name, weight in chosen.items()
             if weight is None]
    if short:
        raise AnimateMeError(f"{KNOBS[figures.get('knob', 'guidance')]} up to {figures['weights'][-1]:g} does not bring "
                             f"{', '.join(short)} to {target:g}x the ground truth's apex: "
                             "measure larger weights (--weights) or retrain")
    return chosen


def reached_weights(figures: dict, target: float = TARGET) -> dict:
    """{label: weight where its ratio crosses `target`, or None where no measured weight reaches it}."""
    chosen = {}
    for name, ratios in figures["ratio"].items():
        weight, reached = weight_for(figures["weights"], ratios, target)
        chosen[name] = round(weight, 3) if reached else None
    return chosen


def markdown(figures: dict, chosen: dict, command: str) -> str:
    names = list(figures["ratio"])
    knob = KNOBS[figures.get("knob", "guidance")]
    title = "Fast mode's signal gain per label (unguided)" if figures.get("knob") == "gain" else "Label guidance per label"
    lines = [f"# {title}", "",
             f"`{command}`: apex amplitude over the ground truth's on {figures['sequences_per_label']} "
             f"{SPLIT_WORDS[figures.get('split', 'train')]} sequences per label ({figures.get('mode', 'fast')} mode), for each {knob}; the chosen "
             f"{knob} is where the ratio crosses {TARGET:g} (linear between measurements).", "",
             f"| {knob} | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for index, weight in enumerate(figures["weights"]):
        lines.append(f"| {weight:g} | " + " | ".join(f"{figures['ratio'][n][index]:.2f}" for n in names) + " |")
    lines.append("| **chosen** | " + " | ".join("not reached" if chosen[n] is None else f"**{chosen[n]:g}**"
                                                for n in names) + " |")
    return "\n".join(lines) + "\n"
