"""`framemean`: the training corpus's mean deformation for a frame's label and progression.

Not a model anyone ships, a yardstick. AnimateMe conditions each frame on its own e_k only, and
deterministic models minimise squared error with the conditional mean E[x | label, progression];
this table is that mean, estimated directly from the training frames (progression binned, read
back by linear interpolation). What it cannot predict — motion before the progression rises, blinks,
drift, per-sequence asymmetry — no per-frame, subject-independent generator can either; the sequence
baselines (LSTM, PCA) see the whole curve and can.
"""

from __future__ import annotations

import numpy as np

from ..splits import Split

BINS = 20


def mean_table(split: Split, bins: int = BINS) -> np.ndarray:
    """(C, bins+1, V, 3) mean training deformation per label and progression bin."""
    labels = len(split.label_names)
    flat_bin = np.clip(np.rint(split.progression * bins), 0, bins).astype(int)       # (S,K)
    key = (split.label[:, None] * (bins + 1) + flat_bin).reshape(-1)
    frames = split.deform.reshape(-1, *split.deform.shape[2:]).astype(np.float64)
    sums = np.zeros((labels * (bins + 1), *frames.shape[1:]))
    np.add.at(sums, key, frames)
    counts = np.bincount(key, minlength=labels * (bins + 1)).astype(np.float64)
    table = sums / np.maximum(counts, 1.0)[:, None, None]
    table = table.reshape(labels, bins + 1, *frames.shape[1:])
    # A bin with no frames (small corpora) borrows from the nearest filled bin of its label.
    counts = counts.reshape(labels, bins + 1)
    for label in range(labels):
        filled = np.flatnonzero(counts[label])
        if len(filled) == 0:
            continue
        for b in np.flatnonzero(counts[label] == 0):
            table[label, b] = table[label, filled[np.argmin(np.abs(filled - b))]]
    return table.astype(np.float32)


def read_table(table: np.ndarray, mix: np.ndarray, progression: np.ndarray) -> np.ndarray:
    """(K,V,3): the label mix of each label's mean deformation at every frame's progression."""
    bins = table.shape[1] - 1
    position = np.clip(np.asarray(progression, np.float64) * bins, 0, bins)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, bins)
    weight = (position - low)[:, None, None]
    out = np.zeros((len(position), *table.shape[2:]))
    for label, share in enumerate(np.asarray(mix, np.float64)):
        if share:
            out += share * ((1.0 - weight) * table[label, low] + weight * table[label, high])
    return out.astype(np.float32)
