"""The words a request is made of, one table each, read by every front end.

The panel's enum items, the command line's argparse choices and the batch job's columns all come
from these tables, so a quality, a landmark or a remedy cannot exist in one front end and not in
another. bpy-free: the bpy layer turns a table into enum items with `enum_items`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import AnimateMeError
from .remedies import MIN_LANDMARKS, REMEDIES, Remedy  # noqa: F401 (the one remedy table and landmark minimum)
from .sample.progression import LABELS, TIMING_PRESETS


@dataclass(frozen=True)
class Choice:
    name: str          # what scripts and the command line write
    label: str         # what the panel shows
    description: str
    runs: str = ""     # what the code runs for it, where that is another word (a quality's sampler mode)


EXPRESSIONS = tuple(Choice(label, label.capitalize(), f"Generate a {label} expression") for label in LABELS)
TIMINGS = tuple(Choice(name, name.capitalize(), f"The '{name}' onset / apex / offset timing")
                for name in TIMING_PRESETS)
CUSTOM_TIMING = Choice("custom", "Custom", "Set onset, apex, offset and end in frames")
QUALITIES = (
    Choice("fast", "Fast (DDIM)", "Nine denoising steps: about a second on a CPU", runs="ddim"),
    Choice("paper", "Paper (DDPM)", "All 1,000 steps of the paper's sampler: about a minute on a CPU", runs="ddpm"),
)
DEVICES = (
    Choice("auto", "Auto", "The GPU when onnxruntime-gpu sees one, else the CPU"),
    Choice("cpu", "CPU", "Always the CPU"),
    Choice("gpu", "GPU", "The GPU (needs the GPU build of the add-on and a CUDA GPU)"),
)

# What a generation writes. Frames stays the default: exactly what the model generated (the rig
# keeps only what its 52 shapes can say; `animateme bench-rig` and docs/rig.md measure both).
OUTPUTS = (
    Choice("frames", "Frames", "One shape key per frame: exactly what the model generated"),
    Choice("rig", "ARKit Rig", "52 ARKit-named shape keys on this face (made once, reused) and a clip sampled "
           "within them as their keyframed weights, one Action per clip: for engines, VRM, Faceit, glTF"),
)

# Landmarks an artist places; left and right are the face's own (the person's left).
LANDMARKS = (
    Choice("nose_tip", "Nose tip", "The tip of the nose"),
    Choice("mouth_left", "Mouth corner (left)", "The face's own left corner of the mouth"),
    Choice("mouth_right", "Mouth corner (right)", "The face's own right corner of the mouth"),
    Choice("eye_inner_left", "Eye inner corner (left)", "Inner corner of the face's own left eye"),
    Choice("eye_inner_right", "Eye inner corner (right)", "Inner corner of the face's own right eye"),
    Choice("eye_outer_left", "Eye outer corner (left)", "Outer corner of the face's own left eye"),
    Choice("eye_outer_right", "Eye outer corner (right)", "Outer corner of the face's own right eye"),
    Choice("chin", "Chin", "The lowest point of the chin, on the midline"),
)
LANDMARK_NAMES = tuple(c.name for c in LANDMARKS)
LANDMARK_GROUP_PREFIX = "AM_landmark_"
# Older spellings (the registration core's first names, `animateme register`) -> the names above.
LANDMARK_ALIASES = {
    "left_eye_inner": "eye_inner_left", "right_eye_inner": "eye_inner_right",
    "left_eye_outer": "eye_outer_left", "right_eye_outer": "eye_outer_right",
}


def landmark_group(name: str) -> str:
    return f"{LANDMARK_GROUP_PREFIX}{name}"


# The remedy table (Remedy, REMEDIES) lives in remedies.py; read here by remedy_text/explain_error.


def remedy_text(keys, front_end: str = "panel") -> str:
    """"; or "-joined words for the remedy keys, in the given (quickest-first) order; unknown
    keys are skipped, so a message never names an option that does not exist."""
    words = [getattr(REMEDIES[k], front_end) for k in keys if k in REMEDIES]
    return "; or ".join(words)


def explain_error(error: Exception, front_end: str = "panel") -> str:
    """The one line a user reads: the core's problem and, for a refusal, what to do (quickest
    first). Errors without remedies keep their own message (it already says what to do)."""
    remedies = tuple(getattr(error, "remedies", ()) or ())
    if not remedies:
        return str(error)
    problem = str(getattr(error, "problem", "") or error).rstrip(". ")
    todo = remedy_text(remedies, front_end)
    return f"{problem}. To fix: {todo}" if todo else problem


# ------------------------------------------------------------------------------------ parsing
def parse_mix(text: str | None) -> tuple[str | None, float]:
    """"sad:0.3" -> ("sad", 0.3); "sad" -> ("sad", 0.5); empty -> (None, 0.0)."""
    if not text:
        return None, 0.0
    label, _, weight = str(text).partition(":")
    try:
        alpha = float(weight) if weight else 0.5
    except ValueError:
        raise AnimateMeError(f"--mix {text!r}: write LABEL:WEIGHT, e.g. sad:0.3") from None
    return label.strip().lower(), alpha


def landmark_name(name: str) -> str:
    key = str(name).strip().lower()
    key = LANDMARK_ALIASES.get(key, key)
    if key not in LANDMARK_NAMES:
        raise AnimateMeError(f"unknown landmark {name!r}: use {', '.join(LANDMARK_NAMES)}")
    return key


def parse_landmarks(value) -> dict[str, int] | None:
    """"nose_tip=12,mouth_left=40" or {"nose_tip": 12, ...} -> {name: vertex index}; None when empty."""
    if value in (None, "", {}):
        return None
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = []
        for item in str(value).split(","):
            name, _, index = item.partition("=")
            items.append((name, index))
    out = {}
    for name, index in items:
        try:
            vertex = int(index)
        except (TypeError, ValueError):
            raise AnimateMeError(f"landmark {name}={index!r}: write name=vertex_index, e.g. nose_tip=123") from None
        if vertex < 0:
            raise AnimateMeError(f"landmark {name}={vertex}: a vertex index is 0 or more")
        out[landmark_name(name)] = vertex
    if len(out) < MIN_LANDMARKS:
        raise AnimateMeError(f"{len(out)} landmark(s) given: give at least {MIN_LANDMARKS} "
                             f"(of {', '.join(LANDMARK_NAMES)})")
    return out


def parse_indices(value) -> list[int] | None:
    """Vertex indices as a list, "0-4999,5100", or a .txt/.json file of them; None when empty."""
    if value in (None, "", []):
        return None
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip()
        path = Path(text)
        if path.suffix.lower() in (".txt", ".json") or path.is_file():
            if not path.is_file():
                raise AnimateMeError(f"region file {path} not found: give a .txt or .json of vertex indices")
            text = path.read_text()
            if path.suffix.lower() == ".json":
                try:
                    return parse_indices(json.loads(text))
                except ValueError:
                    raise AnimateMeError(f"{path}: not JSON; write a list of vertex indices") from None
        items = text.replace("\n", ",").replace(" ", ",").split(",")
    out = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        first, dash, last = item.partition("-")
        try:
            out.extend(range(int(first), int(last) + 1) if dash else [int(first)])
        except ValueError:
            raise AnimateMeError(f"region {item!r}: write vertex indices or ranges, e.g. 0-4999,5100") from None
    if not out or min(out) < 0:
        raise AnimateMeError("the region lists no vertex indices (or a negative one): give the face's vertices")
    return out


# ------------------------------------------------------------------------------------ front ends
def enum_items(choices, upper: bool = False) -> list[tuple[str, str, str]]:
    """Blender EnumProperty items from a table (identifier, name, description)."""
    return [(c.name.upper() if upper else c.name, c.label, c.description) for c in choices]


def names(choices) -> list[str]:
    return [c.name for c in choices]


def add_request_arguments(parser) -> None:
    """The generation options every headless entry point shares (`animateme generate`, the batch
    script), so their flags cannot drift apart."""
    parser.add_argument("--expression", default="happy", choices=names(EXPRESSIONS))
    parser.add_argument("--mix", help="second expression and its weight, e.g. sad:0.3")
    parser.add_argument("--transition", action="store_true", help="go from --expression to the --mix label")
    parser.add_argument("--intensity", type=float, default=1.0)
    parser.add_argument("--timing", default="default", choices=names(TIMINGS))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", default="fast", choices=names(QUALITIES))
    parser.add_argument("--variation", type=float, default=None,
                        help="sampling temperature in [0, 1] (default: 1 for paper, the fast default for fast)")
    parser.add_argument("--device", default="auto", choices=names(DEVICES))
    parser.add_argument("--output", default="frames", choices=names(OUTPUTS),
                        help="frames: one shape key per frame; rig: the 52 ARKit shapes and their weight curves")


def add_fit_arguments(parser, region_help: str) -> None:
    """--landmarks, --region, --force: the fit's controls, as the panel has them."""
    parser.add_argument("--landmarks", help=f"{MIN_LANDMARKS} or more name=vertex_index, e.g. nose_tip=12,mouth_left=40,"
                                            "mouth_right=77; names: " + ", ".join(LANDMARK_NAMES))
    parser.add_argument("--region", help=region_help)
    parser.add_argument("--force", action="store_true",
                        help="use the fit even when it is refused (the output records that it was forced)")
