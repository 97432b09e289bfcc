"""Where on the face a generator moves at the apex, against the held-out ground truth.

The amplitude ratio says how far a label moves in all; a label can reach 1.0 there while parting the
lips twice as far as people do and moving something else less, and the classifier and the dense
face's lip line see the difference. Per label, on held-out conditions, at each ground-truth apex
(its most displaced frame), three readings on the template's 68 landmarks, mm, template frame
(+y up):
- lips apart: the inner upper lip (61-63) minus the inner lower lip (65-67), vertical change;
- brows: the brows (17-26), vertical change (up +, down -);
- mouth corners: the outer corners (48, 54), vertical change.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

READINGS = ("lips apart", "brows", "mouth corners")
_UPPER_INNER, _LOWER_INNER = np.r_[61:64], np.r_[65:68]
_BROWS, _CORNERS = np.r_[17:27], np.array([48, 54])


def readings(apexes: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """(n,V,3) apex deformations (mm) and the template's (68,) landmark vertices -> {reading: (n,)}."""
    up = np.asarray(apexes, np.float64)[..., 1]
    at = lambda points: up[:, np.asarray(landmarks)[points]].mean(axis=1)   # noqa: E731
    return {"lips apart": at(_UPPER_INNER) - at(_LOWER_INNER), "brows": at(_BROWS),
            "mouth corners": at(_CORNERS)}


def compare(generators: dict[str, Callable], test, label_names, landmarks: np.ndarray, per_label: int,
            seed: int = 0, progress: Callable[[str], None] | None = None,
            apex_only: tuple[str, ...] = ()) -> dict:
    """{label: {generator: {reading: mean mm}}} on the first `per_label` held-out conditions of each
    label (a Corpus split); each generator as the evaluation's: (neutral, mix, progression, seed).
    The generators named in `apex_only` are asked for two frames, the first and the apex: for the
    diffusion sampler that is the same apex frame (Algorithm 1 runs its shared trunk on the first
    frame's signal and each frame's branch on its own) at a twentieth of the cost, which is what
    makes paper mode's 1,000 steps affordable here (test_sampler.py checks the sameness). Not for a
    generator whose frames depend on each other (the LSTM)."""
    results = {}
    for index, label in enumerate(label_names):
        rows = np.flatnonzero(np.asarray(test.label) == index)[:per_label]
        apex = [int(np.argmax(np.linalg.norm(test.deform[i], axis=-1).mean(-1))) for i in rows]
        results[label] = {}
        for name, generate in generators.items():
            if progress:
                progress(f"{label}: {name}")
            only = name in apex_only
            frames = np.stack([generate(test.neutral[i], test.mix(i),
                                        test.progression[i][[0, k]] if only else test.progression[i],
                                        seed + int(i))[-1 if only else k]
                               for i, k in zip(rows, apex)])
            results[label][name] = {key: float(value.mean())
                                    for key, value in readings(frames, landmarks).items()}
        results[label]["conditions"] = len(rows)
    return results


def markdown(results: dict, command: str, reference: str = "gt") -> str:
    """One table per reading: labels as rows, generators as columns, and each one over the reference."""
    names = [n for n in next(iter(results.values())) if n != "conditions"]
    others = [n for n in names if n != reference]
    lines = ["# Where each label moves (apex, mm)", "",
             f"`{command}`: the mean vertical change at each held-out condition's apex, template frame "
             "(+y up), and each generator's over the ground truth's (`evaluation/regions.py`).", ""]
    for reading in READINGS:
        lines += [f"## {reading}", "", "| label | conditions | " + " | ".join(names) + " | "
                  + " | ".join(f"{n} / {reference}" for n in others) + " |",
                  "|---" * (2 + len(names) + len(others)) + "|"]
        for label, row in results.items():
            truth = row[reference][reading]
            ratio = [f"{row[n][reading] / truth:.2f}" if abs(truth) > 0.2 else "-" for n in others]
            lines.append(f"| {label} | {row['conditions']} | " + " | ".join(f"{row[n][reading]:+.2f}" for n in names)
                         + " | " + " | ".join(ratio) + " |")
        lines.append("")
    lines.append("A ratio is left out (-) where the ground truth moves less than 0.2 mm; a negative one moves the "
                 "other way.")
    return "\n".join(lines) + "\n"
