"""The shipped denoiser: an ONNX file and its JSON card, run with ONNX Runtime.

`load_runtime` checks everything before any work starts: the file exists, its sha256 matches the
card (a truncated or damaged download fails here), the card was made for this template, and the
session opens. Execution provider: CUDA when onnxruntime-gpu sees a GPU, else CPU; `provider` says
which was chosen.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AnimateMeError
from .schedule import NoiseSchedule

CARD_FORMAT = "animateme-denoiser"
NEUTRAL_SCALE_MM = 50.0
DEVICES = ("auto", "cpu", "cuda")


def neutral_feature(neutral: np.ndarray, scale_mm: float = NEUTRAL_SCALE_MM) -> np.ndarray:
    """(..., V, 3) neutral mm -> the denoiser's neutral input: centred on its centroid, scaled."""
    neutral = np.asarray(neutral, dtype=np.float32)
    return (neutral - neutral.mean(axis=-2, keepdims=True)) / np.float32(scale_mm)


def card_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class DenoiserRuntime:
    """One ONNX Runtime session plus what the card says about it."""

    session: object
    card: dict
    provider: str
    max_batch: int = 256
    faces: np.ndarray | None = None     # the template's triangles, when loaded with the Template

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.card["labels"])

    @property
    def num_vertices(self) -> int:
        return int(self.card["num_vertices"])

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_dict(self.card["schedule"])

    @property
    def scale(self) -> np.ndarray:
        """(V,) per-vertex normalisation: model space x scale = millimetres."""
        return np.asarray(self.card["normalisation"]["scale"], dtype=np.float32)

    @property
    def full_intensity(self) -> np.ndarray:
        """(C,) the signal e a label plays at the user's intensity 1, per label: the card's
        `full_intensity` (the 90th percentile of the label's peak e over the training sequences:
        a strong expression as the corpus performs it; e = 1 is only its single most extreme
        sequence, where a model has seen one example), else 1 (cards before 2026-11-30)."""
        table = self.card.get("full_intensity", {})
        return np.array([float(table.get(label, 1.0)) for label in self.labels], dtype=np.float32)

    @property
    def uses_neutral(self) -> bool:
        return bool(self.card.get("uses_neutral", False))

    def denoise(self, x_t: np.ndarray, t: np.ndarray, signal: np.ndarray,
                neutral: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B,V,3) normalised x_t, (B,) steps 1..T, (B,C) e_k [, (B,V,3) neutral feature]
        -> (eps, x0), each (B,V,3) float32; run in chunks of at most `max_batch` frames."""
        eps_parts, x0_parts = [], []
        for start in range(0, x_t.shape[0], self.max_batch):
            end = start + self.max_batch
            feed = {"x_t": np.ascontiguousarray(x_t[start:end], dtype=np.float32),
                    "t": np.ascontiguousarray(t[start:end], dtype=np.int64),
                    "signal": np.ascontiguousarray(signal[start:end], dtype=np.float32)}
            if self.uses_neutral:
                feed["neutral"] = np.ascontiguousarray(neutral[start:end], dtype=np.float32)
            eps, x0 = self.session.run(["epsilon", "x0"], feed)
            eps_parts.append(eps)
            x0_parts.append(x0)
        return np.concatenate(eps_parts), np.concatenate(x0_parts)


def read_card(model_path: str | Path) -> dict:
    path = card_path(model_path)
    if not path.exists():
        raise AnimateMeError(f"model card {path} is missing: keep the .json beside the .onnx (re-export or reinstall)")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise AnimateMeError(f"model card {path} is unreadable ({error}): re-export or reinstall the model") from None
    needed = ("format", "labels", "num_vertices", "template_fingerprint", "schedule", "normalisation", "sha256")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or any(k not in card for k in needed):
        raise AnimateMeError(f"{path} is not an AnimateMe model card: re-export the model with `animateme export`")
    if len(card["normalisation"].get("scale", ())) != int(card["num_vertices"]):
        raise AnimateMeError(f"{path}: normalisation does not cover {card['num_vertices']} vertices; re-export")
    return card


def choose_providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device not in DEVICES:
        raise AnimateMeError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise AnimateMeError("Device GPU asked for, but ONNX Runtime sees no GPU here (it needs onnxruntime-gpu and a "
                             "CUDA card): set Device to Auto or CPU (the panel's Device, or --device auto)")
    if device != "cpu" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_runtime(model_path: str | Path, template, device: str = "auto", max_batch: int = 256,
                 threads: int | None = None) -> DenoiserRuntime:
    """Open the denoiser for `template` (a Template, or its fingerprint string)."""
    model_path = Path(model_path)
    fingerprint = template if isinstance(template, str) else getattr(template, "fingerprint", None)
    if not fingerprint:
        raise AnimateMeError("load_runtime needs the template (or its fingerprint) the model must match")
    where = "(Preferences ▸ Add-ons ▸ AnimateMe ▸ Model, or --model), or clear it to use the bundled model"
    if model_path.is_dir():
        raise AnimateMeError(f"the model path {model_path} is a folder: choose the .onnx file in it {where}")
    if not model_path.is_file():
        raise AnimateMeError(f"model {model_path} not found: choose an AnimateMe .onnx file {where}")
    card = read_card(model_path)
    if file_sha256(model_path) != card["sha256"]:
        raise AnimateMeError(
            f"model {model_path} fails its checksum (truncated or damaged): re-export it or reinstall the add-on"
        )
    if card["template_fingerprint"] != fingerprint:
        raise AnimateMeError(
            f"model {model_path.name} was trained for template {card['template_fingerprint']}, "
            f"not {fingerprint}: use the model built with this template"
        )
    if int(max_batch) < 1:
        raise AnimateMeError(f"max_batch must be at least 1, got {max_batch}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise AnimateMeError("onnxruntime is not installed: install the add-on's wheels (pip install onnxruntime)") from None
    providers = choose_providers(device)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as error:  # ORT raises its own exception types for unreadable graphs
        raise AnimateMeError(f"ONNX Runtime cannot open {model_path} ({error}): re-export the model") from None
    names = {i.name for i in session.get_inputs()}
    wanted = {"x_t", "t", "signal"} | ({"neutral"} if card.get("uses_neutral") else set())
    if names != wanted:
        raise AnimateMeError(f"{model_path} has inputs {sorted(names)}, its card expects {sorted(wanted)}: re-export")
    chosen = session.get_providers()[0]
    faces = getattr(template, "faces", None)
    return DenoiserRuntime(session=session, card=card, provider=chosen, max_batch=int(max_batch),
                           faces=None if faces is None else np.asarray(faces))
