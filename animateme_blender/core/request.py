"""What to generate, made and checked in one place: `Request` (expression or mix or transition,
intensity, timing, frames, seed, quality, variation) and `build_request`, which every front end
(the panel, a batch job, the command line) makes one with; clip frames <-> timing fractions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import AnimateMeError
from .sample.progression import LABELS, TIMING_PRESETS, Timing, expression_signal, label_mix, progression_curve
from .sample.settings import check_temperature
from .vocabulary import QUALITIES, parse_mix

SAMPLER_MODES = {quality.name: quality.runs for quality in QUALITIES}   # the sampler mode of each quality


@dataclass(frozen=True)
class Request:
    """What to generate. `mix` is the interpolation slider between `expression` and `second`;
    with `transition`, the clip goes from `expression` to `second` instead of blending them."""

    expression: str = "happy"
    second: str | None = None
    mix: float = 0.0
    transition: bool = False
    intensity: float = 1.0
    timing: Timing = Timing()
    frames: int = 40
    seed: int = 0
    quality: str = "fast"
    variation: float | None = None   # sampling temperature; None: the quality's default

    def validate(self) -> "Request":
        label_mix(self.expression, self.second, self.mix if self.second else 0.0)
        if self.transition and not self.second:
            raise AnimateMeError("a transition needs a second expression: set one, or turn transition off")
        if self.quality not in SAMPLER_MODES:
            raise AnimateMeError(f"unknown quality {self.quality!r}: use 'fast' (DDIM) or 'paper' (DDPM)")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise AnimateMeError(f"seed must be a non-negative integer, got {self.seed}")
        if self.variation is not None:
            check_temperature(float(self.variation), "variation")
        progression = progression_curve(self.frames, self.intensity, self.timing)
        if self.intensity > 0 and not (progression > 0).any():
            # Too few frames for the timing: every frame lands on a neutral phase (Frames = 2 did).
            enough = next((n for n in range(int(self.frames) + 1, 1000)
                           if (progression_curve(n, self.intensity, self.timing) > 0).any()), None)
            raise AnimateMeError(f"with {self.frames} frames no frame reaches the expression (every frame falls "
                                 f"on a neutral phase of the timing): raise Frames to {enough} or more")
        return self

    @property
    def label(self) -> str:
        """Short name used for shape keys and files: happy, happy-sad30, happy-to-sad."""
        if not self.second:
            return self.expression
        if self.transition:
            return f"{self.expression}-to-{self.second}"
        return f"{self.expression}-{self.second}{int(round(self.mix * 100)):02d}"

    def progression(self) -> np.ndarray:
        return progression_curve(self.frames, self.intensity, self.timing)

    def signal(self, labels: tuple[str, ...] = LABELS) -> np.ndarray:
        """(K, C) e_k = p_k * m_k; for a transition m_k slides from the first label to the second
        over the hold between apex and offset."""
        progression = self.progression()
        if not self.transition:
            mix = label_mix(self.expression, self.second, self.mix if self.second else 0.0, labels)
            return expression_signal(progression, mix)
        t = np.linspace(0.0, 1.0, self.frames)
        span = max(self.timing.offset - self.timing.apex, 1e-6)
        weights = np.clip((t - self.timing.apex) / span, 0.0, 1.0)
        mixes = np.stack([label_mix(self.expression, self.second, float(w), labels) for w in weights])
        signal = progression[:, None] * mixes
        expression_signal(progression, mixes[0])  # the same validation as the one-label path
        return signal.astype(np.float32)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["timing"] = asdict(self.timing)
        return data


def timing_from_frames(frames: int, onset: int, apex: int, offset: int, end: int) -> Timing:
    """Phase boundaries given as frame numbers within the clip (0-based) -> fractions. Refused in
    frames, the units the panel shows."""
    last = max(int(frames) - 1, 1)
    if not 0 <= onset <= apex <= offset <= end <= last:
        raise AnimateMeError(
            f"custom timing needs 0 <= Onset <= Apex <= Offset <= End <= {last} (the clip's last frame; "
            f"Frames is {frames}), got Onset {onset}, Apex {apex}, Offset {offset}, End {end}: "
            "lower the late ones or raise Frames")
    return Timing(onset / last, apex / last, offset / last, end / last).validate()


def timing_preset(name: str) -> Timing:
    try:
        return TIMING_PRESETS[name]
    except KeyError:
        raise AnimateMeError(f"unknown timing preset {name!r}: use one of {', '.join(TIMING_PRESETS)}") from None


def frames_from_timing(frames: int, timing: Timing) -> tuple[int, int, int, int]:
    """A timing's phase boundaries as clip frames (0-based): what the Custom fields start from."""
    last = max(int(frames) - 1, 1)
    marks = [int(round(m * last)) for m in (timing.onset, timing.apex, timing.offset, timing.end)]
    return tuple(min(max(m, 0), last) for m in marks)


def build_request(expression: str = "happy", second: str | None = None, weight: float = 0.5,
                  transition: bool = False, intensity: float = 1.0, timing: "str | Timing" = "default",
                  frames: int = 40, seed: int = 0, quality: str = "fast", variation: float | None = None) -> Request:
    """The one place a Request is made from front-end options (panel, batch job, command line)."""
    second = str(second).strip().lower() if second else None
    if isinstance(timing, str):
        timing = timing_preset(timing.strip().lower())
    return Request(expression=str(expression).strip().lower(), second=second,
                   mix=0.0 if (transition or not second) else float(weight),
                   transition=bool(transition and second), intensity=float(intensity), timing=timing,
                   frames=int(frames), seed=int(seed), quality=str(quality).strip().lower(),
                   variation=None if variation is None else float(variation)).validate()


def request_from_options(options) -> Request:
    """From anything with the command line's attributes (an argparse Namespace, a batch Job):
    `mix` is the text "LABEL[:WEIGHT]"."""
    second, weight = parse_mix(getattr(options, "mix", None))
    return build_request(options.expression, second, weight, bool(getattr(options, "transition", False)),
                         options.intensity, options.timing, options.frames, options.seed, options.quality,
                         getattr(options, "variation", None))

