"""Label guidance for the sampler (core/sample/sampler.py): the weights, the contrasts and one guided call.

A guided prediction is pred(e) + w (pred(e) - pred(contrast)), on eps and x0 alike. The model was
trained without label dropout, so there is no unconditional branch; the contrasts are signals it
knows (GUIDANCE_KINDS; the sampler's notes say what each does). A kind may also be a mixture of
them, 'blend:0.5+neutral:0.5': the contrast is then the mixture of their predictions, fractions
summing to 1 (half pushed away from the other labels, half only away from no motion). Weights and
kinds may differ per label: a frame mixes its labels' by intensity, so a blend of two expressions
sits between them and the neutral frame e = 0 is never guided.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnimateMeError

GUIDANCE_KINDS = ("neutral", "others", "blend")


def kind_parts(kind: str) -> tuple[tuple[str, float], ...]:
    """'blend' -> (('blend', 1.0),); 'blend:0.6+neutral:0.4' -> (('blend', 0.6), ('neutral', 0.4)):
    the named contrasts a kind mixes, with their fractions (positive, summing to 1)."""
    parts = []
    for item in str(kind).split("+"):
        name, sep, fraction = (part.strip() for part in item.partition(":"))
        try:
            value = float(fraction) if sep else 1.0
        except ValueError:
            value = float("nan")
        if name not in GUIDANCE_KINDS or not np.isfinite(value) or value <= 0.0 or any(name == n for n, _ in parts):
            raise AnimateMeError(f"unknown guidance kind {kind!r}: use one of {', '.join(GUIDANCE_KINDS)}, "
                                 f"or a mixture such as 'blend:0.5+neutral:0.5' (each kind once, fractions > 0)")
        parts.append((name, value))
    total = sum(value for _, value in parts)
    if abs(total - 1.0) > 1e-6:
        raise AnimateMeError(f"the fractions of guidance kind {kind!r} sum to {total:g}: they must sum to 1")
    return tuple(parts)


def canonical_kind(kind: str) -> str:
    """One spelling per contrast: 'blend:1' -> 'blend', ' blend:0.5 + neutral:0.5' -> 'blend:0.5+neutral:0.5',
    so a card does not keep as a per-label exception a kind equal to its default."""
    parts = kind_parts(kind)
    if len(parts) == 1:
        return parts[0][0]
    return "+".join(f"{name}:{fraction:.10g}" for name, fraction in parts)


def check_guidance(value: float, kind: str) -> None:
    kind_parts(kind)
    if not np.isfinite(value) or not 0.0 <= value <= 20.0:
        raise AnimateMeError(f"guidance must lie in [0, 20] (0: none), got {value}")


def label_guidance(labels, guidance: float, by_label: dict | None) -> np.ndarray:
    """(C,) guidance weight per label: `guidance` for all, or the card's per-label weights (measured
    so that each label's apex matches its ground truth's, `animateme calibrate-guidance`)."""
    if not by_label:
        return np.full(len(labels), float(guidance))
    missing = [label for label in labels if label not in by_label]
    if missing:
        raise AnimateMeError(f"per-label guidance lacks {', '.join(missing)}: give a weight for every label")
    weights = np.array([float(by_label[label]) for label in labels])
    for value in weights:
        check_guidance(value, GUIDANCE_KINDS[0])
    return weights


def label_guidance_kinds(labels, kind: str, by_label: dict | None) -> tuple[str, ...]:
    """(C,) guidance kind per label: `kind` for all, or the card's per-label kinds (a label not
    named there takes `kind`)."""
    check_guidance(0.0, kind)
    unknown = sorted(set(by_label or {}) - set(labels))
    if unknown:
        raise AnimateMeError(f"per-label guidance kinds name unknown labels {', '.join(unknown)}: "
                             f"the model's labels are {', '.join(labels)}")
    kinds = tuple(str((by_label or {}).get(label, kind)) for label in labels)
    for value in kinds:
        check_guidance(0.0, value)
    return kinds


def row_guidance(signal: np.ndarray, label_weights: np.ndarray) -> np.ndarray:
    """(B,) each frame's guidance weight: its labels' weights mixed by intensity (a blend of two
    expressions is guided between their weights; e = 0 is not guided at all)."""
    signal = np.asarray(signal, dtype=np.float64)
    total = signal.sum(axis=1)
    return np.where(total > 0, signal @ label_weights / np.maximum(total, 1e-12), 0.0)


def check_rescale(value: float) -> None:
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise AnimateMeError(f"guidance rescale must lie in [0, 1] (0: none), got {value}")


def guidance_contrasts(signal: np.ndarray, kind) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B,C) signals -> (rows, contrast signals, weights): for each frame with e != 0, the signals
    its prediction is pushed away from and their weights (summing to 1 per frame). `kind` is one
    guidance kind, or one per label (label_guidance_kinds): a frame then takes each of its labels'
    kinds in the share of its intensity that label holds."""
    signal = np.asarray(signal, dtype=np.float32)
    count = signal.shape[1]
    kinds = np.array((kind,) * count if isinstance(kind, str) else tuple(kind))
    intensity = signal.sum(axis=1)
    rows, contrasts, weights = [], [], []
    for row in np.flatnonzero(intensity > 0):
        s = float(intensity[row])
        row_kinds = list(dict.fromkeys(kinds[signal[row] > 0]))
        for row_kind in row_kinds:
            # One kind in the frame takes all of it (exactly 1, as with a single kind for all labels).
            share = 1.0 if len(row_kinds) == 1 else float(signal[row, kinds == row_kind].sum()) / s
            for contrast, weight in _kind_contrasts(signal[row], s, str(row_kind)):
                rows.append(row)
                contrasts.append(contrast)
                weights.append(share * weight)
    return (np.asarray(rows, dtype=np.int64), np.asarray(contrasts, np.float32).reshape(-1, count),
            np.asarray(weights, np.float64))


def _kind_contrasts(e: np.ndarray, s: float, kind: str) -> list[tuple[np.ndarray, float]]:
    """[(contrast signal, weight)] of one frame's signal e (intensity s) under one guidance kind,
    a mixture's parts weighted by their fractions."""
    return [(contrast, fraction * weight) for name, fraction in kind_parts(kind)
            for contrast, weight in _named_contrasts(e, s, name)]


def _named_contrasts(e: np.ndarray, s: float, kind: str) -> list[tuple[np.ndarray, float]]:
    """[(contrast signal, weight)] of one frame's signal e (intensity s) under one named kind."""
    count = len(e)
    if kind == "neutral":
        return [(np.zeros(count, np.float32), 1.0)]
    if kind == "blend":
        return [(((s - e) / (count - 1)).clip(0.0, None).astype(np.float32), 1.0)]
    share = ((s - e.astype(np.float64)) / (s * (count - 1))).clip(0.0, None)
    share /= share.sum()
    out = []
    for label in np.flatnonzero(share > 1e-9):
        other = np.zeros(count, np.float32)
        other[label] = s
        out.append((other, float(share[label])))
    return out


def guided_denoise(runtime, x, t, signal, neutral_in, guidance, contrasts, rescale=0.0, schedule=None):
    """(eps, x0) of pred(e) + w (pred(e) - sum_j weight_j pred(contrast_j)), one denoiser batch;
    `guidance` is w per frame (row_guidance), `contrasts` is guidance_contrasts(signal, kind).
    With `rescale` phi > 0 each guided frame's x0 is brought back towards its unguided RMS (Lin et
    al. 2024, "Common diffusion noise schedules and sample steps are flawed", eq. 15-16):
    x0 <- phi x0 rms(own)/rms(x0) + (1 - phi) x0, and eps follows from the new x0."""
    rows, contrasts, weights = contrasts
    batch_x = np.concatenate([x, x[rows]])
    batch_signal = np.concatenate([signal, contrasts]).astype(np.float32)
    batch_neutral = None if neutral_in is None else np.repeat(neutral_in, len(batch_x), axis=0)
    eps, x0 = runtime.denoise(batch_x, np.full(len(batch_x), t, dtype=np.int64), batch_signal, batch_neutral)

    def guide(pred):
        own = pred[:len(x)]
        contrast = np.zeros_like(own)
        np.add.at(contrast, rows, weights[:, None, None] * pred[len(x):])
        out = own.copy()
        out[rows] = own[rows] + guidance[rows, None, None] * (own[rows] - contrast[rows])
        return out

    eps_guided, x0_guided = guide(eps.astype(np.float64)), guide(x0.astype(np.float64))
    if rescale > 0 and len(rows):
        own, moved = x0[:len(x)][rows].astype(np.float64), x0_guided[rows]
        x0_guided[rows] = moved * (rescale * _rms(own) / np.maximum(_rms(moved), 1e-12) + (1.0 - rescale))
        eps_guided[rows] = schedule.eps_from_x0(x[rows].astype(np.float64), x0_guided[rows], t)
    return eps_guided, x0_guided


def _rms(frames: np.ndarray) -> np.ndarray:
    """(B,1,1) root mean square of each (V,3) frame."""
    return np.sqrt(np.mean(frames ** 2, axis=(1, 2), keepdims=True))
