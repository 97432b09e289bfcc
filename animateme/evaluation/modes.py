"""`animateme eval-modes`: paper mode (Algorithm 1, all T steps) against fast mode (DDIM) on the
held-out test conditions, through the shipped runtime.

What it answers: does paper mode reach the ground truth's apex (its amplitude ratio per label),
and does fast mode give the same figures (within 5 %)? Paper mode costs ~1,000 network calls, so
each condition is sampled on a few of its frames only: the apex frame of the ground truth and a
few spread over the sequence. That is exact, not an approximation: in Algorithm 1 a frame depends
only on its own e_k, the shared trajectory and the shared noise, which the sampler draws the same
way whatever the number of frames.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from animateme_blender.core.sample.progression import expression_signal

from .corpus import Corpus
from .metrics import per_vertex_error
from .variety import apex_amplitude, apex_frames

MODES = {"paper": {"mode": "ddpm"}, "fast": {"mode": "ddim"}}


def frames_to_sample(progression: np.ndarray, apex: int, count: int) -> np.ndarray:
    """The apex frame plus `count - 1` frames spread evenly over the sequence, sorted, distinct."""
    spread = np.linspace(0, len(progression) - 1, max(count - 1, 0)).round().astype(int)
    return np.unique(np.concatenate([[apex], spread]))


def compare_modes(corpus: Corpus, runtime, per_label: int = 8, seeds: int = 2, frames: int = 4,
                  show_progress: bool = True, options: dict | None = None) -> dict:
    """Per label and overall: apex amplitude over the ground truth's, for each mode; the mean
    displacement error to the ground truth on the sampled frames; seconds per sample. `options`
    (e.g. guidance) go to the sampler in both modes."""
    from animateme_blender.core.sample.sampler import sample
    from animateme_blender.core.sample.settings import SamplingSettings

    test = corpus.test
    labels = corpus.label_names
    rows = []
    for label in range(len(labels)):
        members = np.flatnonzero(test.label == label)
        rows += members[np.linspace(0, len(members) - 1, min(per_label, len(members))).round().astype(int)].tolist()
    apex = apex_frames(test.deform[rows])
    amplitude = {mode: [] for mode in MODES}
    error = {mode: [] for mode in MODES}
    seconds = {mode: 0.0 for mode in MODES}
    truth_amplitude, row_labels = [], []
    jobs = [(row, a, seed) for row, a in zip(rows, apex) for seed in range(seeds)]
    settings = {mode: SamplingSettings.for_runtime(runtime, **mode_options, **(options or {}))
                for mode, mode_options in MODES.items()}
    for row, a, seed in tqdm(jobs, desc="paper vs fast", unit="sample", disable=not show_progress):
        chosen = frames_to_sample(test.progression[row], int(a), frames)
        signal = expression_signal(test.progression[row], test.mix(row))[chosen]
        truth = test.deform[row][chosen]
        truth_amplitude.append(apex_amplitude(truth[None])[0])
        row_labels.append(int(test.label[row]))
        for mode in MODES:
            started = time.perf_counter()
            out = sample(runtime, test.neutral[row], signal, settings[mode], seed=1000 * int(row) + seed)
            seconds[mode] += time.perf_counter() - started
            amplitude[mode].append(apex_amplitude(out[None])[0])
            error[mode].append(per_vertex_error(out, truth))
    truth_amplitude, row_labels = np.asarray(truth_amplitude), np.asarray(row_labels)

    def ratio(values, mask):
        return float(np.mean(np.asarray(values)[mask]) / truth_amplitude[mask].mean())

    figures = {"labels": list(labels), "per_label": per_label, "seeds": seeds, "frames_per_sample": frames, "samples": len(jobs),
               "modes": {}}
    for mode in MODES:
        values = np.asarray(amplitude[mode])
        figures["modes"][mode] = {
            "amplitude_ratio": ratio(values, np.ones(len(values), bool)),
            "amplitude_ratio_by_expression": {name: ratio(values, row_labels == c) for c, name in enumerate(labels)},
            "error_mm": float(np.mean(error[mode])),
            "error_mm_by_expression": {name: float(np.mean(np.asarray(error[mode])[row_labels == c]))
                                       for c, name in enumerate(labels)},
            "seconds_per_sample": seconds[mode] / len(jobs),
        }
    paper, fast = figures["modes"]["paper"], figures["modes"]["fast"]
    figures["fast_over_paper"] = {
        "amplitude": fast["amplitude_ratio"] / paper["amplitude_ratio"],
        "amplitude_by_expression": {name: fast["amplitude_ratio_by_expression"][name] /
                                    paper["amplitude_ratio_by_expression"][name] for name in labels},
        "error": fast["error_mm"] / paper["error_mm"],
    }
    return figures


def markdown(figures: dict, labels, model_name: str, command: str) -> str:
    paper, fast = figures["modes"]["paper"], figures["modes"]["fast"]
    ratio = figures["fast_over_paper"]
    lines = ["# Paper mode against fast mode", "",
             f"`{command}`: the model `{model_name}` on {figures['samples']} held-out conditions "
             f"({figures['per_label']} test sequences per label x {figures['seeds']} seeds), each sampled on "
             f"{figures['frames_per_sample']} of its frames including the ground truth's apex (exact: a frame "
             "depends only on its own e_k and the shared trajectory and noise). Paper mode is Algorithm 1 "
             "(T = 1000, t_s = 400, temperature 1); fast mode is the extension's default DDIM.", "",
             "| Measure | " + " | ".join(labels) + " | All |", "|---" * (len(labels) + 2) + "|"]

    def row(name, values, overall, fmt="{:.2f}"):
        lines.append(f"| {name} | " + " | ".join(fmt.format(values[label]) for label in labels)
                     + f" | {fmt.format(overall)} |")

    row("Paper mode amplitude ratio", paper["amplitude_ratio_by_expression"], paper["amplitude_ratio"])
    row("Fast mode amplitude ratio", fast["amplitude_ratio_by_expression"], fast["amplitude_ratio"])
    row("Fast / paper amplitude", ratio["amplitude_by_expression"], ratio["amplitude"], "{:.3f}")
    row("Paper mode error (mm)", paper["error_mm_by_expression"], paper["error_mm"], "{:.3f}")
    row("Fast mode error (mm)", fast["error_mm_by_expression"], fast["error_mm"], "{:.3f}")
    lines += ["", f"Seconds per sample on these frames: paper {paper['seconds_per_sample']:.1f} s, "
              f"fast {fast['seconds_per_sample']:.2f} s (`animateme bench` times the 40-frame generation).", ""]
    return "\n".join(lines)
