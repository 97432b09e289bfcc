"""The papers' preprocessing: any-length sequences to K frames, and extremeness factors.

AnimateMe supp. §1.1: longer sequences keep their most distinct frames (in terms of the difference
from consecutive frames); shorter ones are interpolated between their most different frames. The
per-frame labels travel through the same selection and interpolation, so they stay aligned.
"""

from __future__ import annotations

import numpy as np

from animateme_blender.core.errors import AnimateMeError

FRAMES = 40


def to_fixed_length(frames: np.ndarray, labels: np.ndarray, length: int = FRAMES
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(N,V,3) frames and (N,) per-frame labels -> (length,V,3), (length,)."""
    frames = np.asarray(frames, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 2 or labels.shape != frames.shape[:1]:
        raise AnimateMeError(
            f"a sequence needs at least 2 frames of shape (V,3) and one label per frame; "
            f"got frames {frames.shape} and labels {labels.shape}"
        )
    if frames.shape[0] > length:
        keep = most_distinct_frames(frames, length)
        return frames[keep], labels[keep]
    frames, labels = list(frames), list(labels)
    while len(frames) < length:
        gaps = [_distance(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
        i = int(np.argmax(gaps))
        frames.insert(i + 1, 0.5 * (frames[i] + frames[i + 1]))
        labels.insert(i + 1, 0.5 * (labels[i] + labels[i + 1]))
    return np.stack(frames), np.asarray(labels, dtype=np.float32)


def most_distinct_frames(frames: np.ndarray, length: int) -> np.ndarray:
    """Indices of `length` frames, first and last always kept: repeatedly drop the interior frame
    closest to its predecessor (mean per-vertex distance), i.e. the least distinct one."""
    keep = list(range(frames.shape[0]))
    # gap[j] = distance from keep[j] to keep[j-1]; recomputed only next to a removal.
    gap = [np.inf] + [_distance(frames[keep[j - 1]], frames[keep[j]]) for j in range(1, len(keep))]
    while len(keep) > length:
        j = int(np.argmin(gap[1:-1])) + 1  # interior frames only
        del keep[j], gap[j]
        gap[j] = _distance(frames[keep[j - 1]], frames[keep[j]])
    return np.asarray(keep)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).mean())


def extremeness(apex_displacement: np.ndarray, category: np.ndarray, method: str = "max",
                reference: np.ndarray | None = None, reference_category: np.ndarray | None = None) -> np.ndarray:
    """Per-sequence extremeness factor s (floored at 1e-3).

    apex_displacement: (S,) landmark displacement neutral -> apex of each sequence.
    reference, reference_category: the sequences whose statistics set the scale (a corpus's
    training split); default: the sequences themselves. A held-out sequence must be scaled by the
    training statistics alone, or e = 1 means a different reach in training and in evaluation
    (one held-out take beyond the training maximum would shrink every take of its category).
    "max" (AnimateMe §1.1): normalised by the reference's largest in the same expression category,
    so in (0, 1] on the reference and past 1 for a take that reaches further.
    "zscore" (Potamias et al. eq. 6): (clip((m - mu_e) / sigma_e, -1, 1) + 1) / 2.
    """
    m = np.asarray(apex_displacement, dtype=np.float64)
    category = np.asarray(category)
    if reference is None:
        reference, reference_category = m, category
    reference = np.asarray(reference, dtype=np.float64)
    reference_category = np.asarray(reference_category)
    s = np.zeros_like(m)
    for c in np.unique(category):
        sel, ref = category == c, reference[reference_category == c]
        if not len(ref):
            raise AnimateMeError(f"category {c} has no reference sequences to set its extremeness scale: "
                                 "every label must occur in the training split (add subjects who play it, or hold out fewer)")
        if method == "max":
            s[sel] = m[sel] / max(ref.max(), 1e-12)
        elif method == "zscore":
            z = (m[sel] - ref.mean()) / max(ref.std(), 1e-12)
            s[sel] = (np.clip(z, -1.0, 1.0) + 1.0) / 2.0
        else:
            raise AnimateMeError(f"unknown extremeness method {method!r}: use 'max' or 'zscore'")
    s = np.maximum(s, 1e-3)
    return s.astype(np.float32)
