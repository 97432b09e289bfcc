"""The per-frame expression signal e_k = p_k * m that conditions the denoiser.

`m` is the label mix (one-hot, or (1-a)*onehot(A) + a*onehot(B) for the interpolation slider) and
`p_k` the progression: 0 at neutral, rising linearly through the onset, s (the intensity, or
extremeness) over the apex, falling linearly through the offset (Potamias et al. §5.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnimateMeError

LABELS: tuple[str, ...] = ("happy", "sad", "surprise", "fear", "angry", "disgust")
MAX_FRAMES = 1000


def label_index(name: str, labels: tuple[str, ...] = LABELS) -> int:
    try:
        return labels.index(name.strip().lower())
    except ValueError:
        raise AnimateMeError(
            f"unknown expression {name!r}: choose one of {', '.join(labels)}"
        ) from None


def label_mix(first: str, second: str | None = None, alpha: float = 0.0,
              labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """(C,) weights: only `first` at alpha=0, only `second` at alpha=1."""
    if not np.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise AnimateMeError(f"interpolation must lie in [0, 1], got {alpha}")
    mix = np.zeros(len(labels), dtype=np.float32)
    mix[label_index(first, labels)] += 1.0 - alpha if second else 1.0
    if second:
        mix[label_index(second, labels)] += alpha
    return mix


@dataclass(frozen=True)
class Timing:
    """Phase boundaries as fractions of the clip, 0 <= onset <= apex <= offset <= end <= 1.

    onset: the face starts to move; apex: the expression is fully there; offset: it starts to
    relax; end: it is neutral again.
    """

    onset: float = 0.1
    apex: float = 0.35
    offset: float = 0.7
    end: float = 0.95

    def validate(self) -> "Timing":
        marks = (self.onset, self.apex, self.offset, self.end)
        if not all(np.isfinite(m) for m in marks) or not (
            0.0 <= self.onset <= self.apex <= self.offset <= self.end <= 1.0
        ):
            raise AnimateMeError(
                f"timing must satisfy 0 <= onset <= apex <= offset <= end <= 1, got {marks}"
            )
        return self


TIMING_PRESETS: dict[str, Timing] = {
    "default": Timing(),
    "quick": Timing(0.05, 0.2, 0.8, 0.95),
    "slow": Timing(0.1, 0.55, 0.75, 1.0),
    "hold": Timing(0.05, 0.35, 1.0, 1.0),  # reaches apex and stays there
}


def progression_curve(frames: int, intensity: float = 1.0, timing: Timing = Timing()) -> np.ndarray:
    """(K,) progression p_k in [0, intensity] following the four phases."""
    check_frame_count(frames)
    if not np.isfinite(intensity) or not 0.0 <= intensity <= 1.0:
        raise AnimateMeError(f"intensity must lie in [0, 1], got {intensity}")
    timing.validate()
    t = np.linspace(0.0, 1.0, frames, dtype=np.float64)
    rise = _ramp(t, timing.onset, timing.apex)
    fall = 1.0 - _ramp(t, timing.offset, timing.end)
    return (intensity * np.minimum(rise, fall)).astype(np.float32)


def _ramp(t: np.ndarray, start: float, stop: float) -> np.ndarray:
    if stop <= start:  # an instant change, after `start` (so offset = end = 1 never falls)
        return (t > start).astype(np.float64)
    return np.clip((t - start) / (stop - start), 0.0, 1.0)


def expression_signal(progression: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """(K, C) e_k = p_k * m, checked so the sampler never sees a bad condition."""
    progression = np.asarray(progression, dtype=np.float32)
    mix = np.asarray(mix, dtype=np.float32)
    if progression.ndim != 1:
        raise AnimateMeError(f"progression must be one value per frame, got shape {progression.shape}")
    check_frame_count(len(progression))
    with np.errstate(invalid="ignore", over="ignore"):
        signal = progression[:, None] * mix[None, :]
    check_signal(signal)
    return signal


def check_frame_count(frames: int) -> None:
    if int(frames) != frames or not 1 <= frames <= MAX_FRAMES:
        raise AnimateMeError(f"frame count must be between 1 and {MAX_FRAMES}, got {frames}")


def check_signal(signal: np.ndarray, num_labels: int | None = None) -> None:
    if signal.ndim != 2 or (num_labels is not None and signal.shape[1] != num_labels):
        raise AnimateMeError(f"expression signal must have shape (frames, labels), got {signal.shape}")
    check_frame_count(signal.shape[0])
    if not np.all(np.isfinite(signal)):
        raise AnimateMeError("expression signal has NaN or infinite values")
    if np.any(signal < 0):
        raise AnimateMeError("expression signal has negative values: intensities and mixes are >= 0")
