"""Emotion programs (`data/emotions.json`) and how one person performs them.

An emotion is a family of documented FACS variants (EMFACS prototypes and their major variants);
each subject draws its own variant of every emotion once and keeps it, with its own intensity
range, timing habits, gain per action unit, left/right bias and individual habits (face-model
shapes outside the prototypes: mouth to one side, cheek puff, jaw thrust, lip rolls...). A
sequence then plays the subject's variant through neutral -> onset -> apex -> offset at 60 fps,
sometimes blended with a confusable emotion (fear with surprise, anger with disgust, sadness
with fear) and sometimes at a low, ambiguous intensity, with per-sequence jitter, lags, drift
and blinks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

PROGRAMS_PATH = Path(__file__).parent / "data" / "emotions.json"


@dataclass
class Habit:
    probability: float
    shapes: np.ndarray        # (H,) shape indices
    one_of: bool              # True: the subject uses one of the shapes (a side), else all
    weight: tuple[float, float]
    emotions: np.ndarray      # (C,) bool: the emotions that show the habit


@dataclass
class Programs:
    labels: tuple[str, ...]
    variant_names: list[list[str]]       # per label
    variant_probability: list[np.ndarray]  # per label, (n,) summing to 1
    variant_weights: list[np.ndarray]    # per label, (n, E) apex weight of each shape
    blend_probability: float
    blend_weight: tuple[float, float]
    blend_partners: np.ndarray           # (C, C) row: probabilities of each partner (0 row: none)
    habits: list[Habit]
    blink_shapes: np.ndarray             # (2,) indices of the blink shapes (left, right)
    side: np.ndarray                     # (E,) -1 left, +1 right, 0 centre
    subject: dict
    style: dict

    @property
    def shape_weights(self) -> np.ndarray:
        """(C, E) each label's most common variant (its prototype)."""
        return np.stack([w[np.argmax(p)] for w, p in zip(self.variant_weights, self.variant_probability)])

    def used_shapes(self) -> np.ndarray:
        """Indices of every shape any variant, habit or blink can move."""
        used = [np.flatnonzero(w.any(0)) for w in self.variant_weights]
        used += [h.shapes for h in self.habits] + [self.blink_shapes]
        return np.unique(np.concatenate(used))


def load_programs(expression_names, path: Path = PROGRAMS_PATH) -> Programs:
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
        units, emotions, style = spec["action_units"], spec["emotions"], spec["style"]
    except (OSError, ValueError, KeyError) as error:
        raise AnimateMeError(f"cannot read emotion programs {path} ({error}): fix or restore the file") from None
    names = list(expression_names)
    labels = tuple(emotions)

    def shape_index(shape: str, where: str) -> int:
        if shape not in names:
            raise AnimateMeError(f"{path}: {where} uses shape {shape!r}, which the face model does not have")
        return names.index(shape)

    def unit_weights(program: dict, where: str) -> np.ndarray:
        weights = np.zeros(len(names), dtype=np.float32)
        for unit, weight in program.items():
            if unit not in units:
                raise AnimateMeError(f"{path}: {where} uses {unit}, which action_units does not define")
            for shape in units[unit]:
                index = shape_index(shape, unit)
                weights[index] = max(weights[index], weight)
        return weights

    variant_names, variant_probability, variant_weights = [], [], []
    for label, family in emotions.items():
        # A plain {unit: weight} map is an emotion with one variant.
        if not all(isinstance(v, dict) for v in family.values()):
            family = {"prototype": {"p": 1.0, "units": family}}
        try:
            probability = np.array([float(v["p"]) for v in family.values()])
            weights = np.stack([unit_weights(v["units"], f"emotion {label!r}") for v in family.values()])
        except KeyError as error:
            raise AnimateMeError(f"{path}: a variant of {label!r} lacks {error}: give each variant p and units") from None
        if len(probability) == 0 or (probability < 0).any() or probability.sum() <= 0:
            raise AnimateMeError(f"{path}: the variants of {label!r} need positive probabilities p")
        variant_names.append(list(family))
        variant_probability.append(probability / probability.sum())
        variant_weights.append(weights)

    blends = spec.get("blends", {})
    partners = np.zeros((len(labels), len(labels)))
    for label, row in blends.get("partners", {}).items():
        if label not in labels:
            continue  # a blend row for a label this file does not define plays no part
        for partner, share in row.items():
            if partner not in labels:
                raise AnimateMeError(f"{path}: blend partner {partner!r} of {label!r} is not an emotion")
            partners[labels.index(label), labels.index(partner)] = share
    sums = partners.sum(1, keepdims=True)
    partners = np.divide(partners, sums, out=np.zeros_like(partners), where=sums > 0)

    habits = []
    for name, habit in spec.get("idiosyncrasy", {}).get("habits", {}).items():
        shapes = np.array([shape_index(s, f"habit {name!r}") for s in habit["shapes"]])
        shown = np.array([label in habit["emotions"] for label in labels])
        habits.append(Habit(float(habit["p"]), shapes, bool(habit["one_of"]), tuple(habit["weight"]), shown))

    side = np.array([-1 if n.endswith("_L") else 1 if n.endswith("_R") else 0 for n in names])
    blink = np.array([shape_index(s, "AU45") for s in units["AU45"]])
    return Programs(labels, variant_names, variant_probability, variant_weights,
                    float(blends.get("p", 0.0)), tuple(blends.get("weight", (0.0, 0.0))), partners,
                    habits, blink, side, spec.get("subject", {}), style)


# ---- one person ------------------------------------------------------------------------------------

@dataclass
class SubjectStyle:
    """How one subject performs: drawn once, kept across all its sequences."""
    variant: np.ndarray          # (C,) index of its variant of each emotion
    intensity_centre: float
    timing_scale: float          # multiplies every phase duration
    gain: np.ndarray             # (E,) persistent gain per shape
    asymmetry: float             # persistent left/right bias
    habit_weights: np.ndarray    # (C, E) habit shapes added to each emotion at apex

    def variant_names(self, programs: Programs) -> list[str]:
        return [programs.variant_names[c][v] for c, v in enumerate(self.variant)]


def draw_subject(rng: np.random.Generator, programs: Programs) -> SubjectStyle:
    settings = programs.subject
    shapes = len(programs.side)
    variant = np.array([rng.choice(len(p), p=p) for p in programs.variant_probability])
    gain = np.clip(1 + settings.get("unit_gain_sd", 0.0) * rng.standard_normal(shapes), 0.4, 1.6)
    gain[programs.side == 1] = gain[programs.side == -1]  # a person's left and right units alike
    habits = np.zeros((len(programs.labels), shapes))
    for habit in programs.habits:
        if rng.random() >= habit.probability:
            continue
        chosen = [rng.choice(habit.shapes)] if habit.one_of else habit.shapes
        habits[np.ix_(habit.emotions, chosen)] = rng.uniform(*habit.weight)
    return SubjectStyle(
        variant=variant,
        intensity_centre=float(rng.uniform(*settings.get("intensity_centre", (0.35, 1.0)))),
        timing_scale=float(np.exp(settings.get("timing_scale_log_sd", 0.0) * rng.standard_normal())),
        gain=gain,
        asymmetry=float(settings.get("asymmetry_sd", 0.0) * rng.standard_normal()),
        habit_weights=habits)


# ---- one sequence ----------------------------------------------------------------------------------

def sequence_program(rng: np.random.Generator, programs: Programs, label: int,
                     subject: SubjectStyle) -> np.ndarray:
    """(E,) apex weights of one sequence: the subject's variant, sometimes a blend, its habits."""
    program = programs.variant_weights[label][subject.variant[label]].astype(np.float64)
    partners = programs.blend_partners[label]
    if partners.any() and rng.random() < programs.blend_probability:
        partner = rng.choice(len(partners), p=partners)
        blended = programs.variant_weights[partner][subject.variant[partner]] * rng.uniform(*programs.blend_weight)
        program = np.maximum(program, blended)
    return (program + subject.habit_weights[label]) * subject.gain


def draw_intensity(rng: np.random.Generator, programs: Programs, subject: SubjectStyle) -> float:
    style = programs.style
    low, high = style["apex_intensity"]
    if rng.random() < style.get("low_intensity_fraction", 0.0):
        return float(rng.uniform(*style["low_intensity"]))   # a faint, ambiguous display
    spread = programs.subject.get("intensity_spread", 0.0)
    return float(np.clip(subject.intensity_centre + spread * rng.standard_normal(), low, high))


def synthesize_sequence(rng: np.random.Generator, programs: Programs, label: int, basis: np.ndarray,
                        subject: SubjectStyle | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """One raw 60 fps sequence: (T, V, 3) deformations, (T,) phase label in [0,1], apex intensity.
    Without a subject, one is drawn for this sequence alone."""
    subject = subject or draw_subject(rng, programs)
    style = programs.style
    fps = style["fps"]
    phases = {k: rng.uniform(*v) * subject.timing_scale for k, v in style["phase_seconds"].items()}
    if rng.random() < style["fast_fraction"]:  # a few quick ones, shorter than K frames
        phases = {k: v * style["fast_scale"] for k, v in phases.items()}
    bounds = np.cumsum([0.0] + [phases[k] for k in ("neutral", "onset", "apex", "offset", "rest")])
    length = max(int(round(bounds[-1] * fps)), 8)
    t = np.arange(length) / fps

    def phase(times: np.ndarray) -> np.ndarray:
        rise = np.clip((times - bounds[1]) / max(bounds[2] - bounds[1], 1e-6), 0, 1)
        fall = np.clip((times - bounds[3]) / max(bounds[4] - bounds[3], 1e-6), 0, 1)
        return np.minimum(rise, 1 - fall)

    intensity = draw_intensity(rng, programs, subject)
    program = sequence_program(rng, programs, label, subject)
    active = np.flatnonzero(program)
    jitter = 1 + style["au_jitter"] * rng.standard_normal(len(active))
    asymmetry = subject.asymmetry + style["asymmetry"] * rng.standard_normal()
    lags = style["au_lag_seconds"] * rng.standard_normal(len(active))
    drift = 1 + style["apex_drift"] * np.sin(2 * np.pi * (t / max(phases["apex"], 0.2)) + rng.uniform(0, 6.3))

    weights = np.zeros((length, basis.shape[0]), dtype=np.float64)
    for i, shape in enumerate(active):
        curve = _smoothstep(phase(t - lags[i])) * drift
        side = 1 + asymmetry * programs.side[shape]
        weights[:, shape] = np.clip(intensity * program[shape] * jitter[i] * side * curve, 0, 1.2)
    for _ in range(rng.poisson(style["blink_rate_per_second"] * t[-1])):
        centre, width = rng.uniform(0, t[-1]), rng.uniform(*style["blink_seconds"])
        pulse = np.clip(1 - np.abs(t - centre) / (width / 2), 0, 1)
        weights[:, programs.blink_shapes] = np.maximum(weights[:, programs.blink_shapes], pulse[:, None])
    frames = np.tensordot(weights, basis, axes=1).astype(np.float32)
    return frames, phase(t).astype(np.float32), intensity


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)
