"""The papers' measures, every one in millimetres on deformation sequences (K,V,3).

Sequences are deformations from the subject's neutral (the corpus contract), so a generated
sequence and its ground truth share the neutral and their difference is the vertex error.
"""

from __future__ import annotations

import numpy as np


def vertex_distances(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(...,V) Euclidean distance of each vertex between two equally shaped (...,V,3) arrays."""
    return np.linalg.norm(np.asarray(generated, np.float64) - np.asarray(truth, np.float64), axis=-1)


def per_vertex_error(generated: np.ndarray, truth: np.ndarray) -> float:
    """Mean Euclidean vertex distance over all frames and vertices (002 §5.2, Table 2)."""
    return float(vertex_distances(generated, truth).mean())


def per_frame_error(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(K,) mean vertex distance of each frame (002 Fig. 5); leading batch axes are averaged."""
    distances = vertex_distances(generated, truth)          # (...,K,V)
    return distances.reshape(-1, *distances.shape[-2:]).mean(axis=(0, 2))


def error_map(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(V,) mean distance of each vertex over frames (and batch): the heatmap of 002 Fig. 3."""
    distances = vertex_distances(generated, truth)
    return distances.reshape(-1, distances.shape[-1]).mean(axis=0)


def specificity(generated: np.ndarray, training: np.ndarray, candidates: int = 16) -> np.ndarray:
    """(N,) for each generated sequence, the per-vertex error to its closest training sequence
    (000 Table 1).

    generated (N,K,V,3), training (M,K,V,3). The exact measure is a mean of norms, which no
    matrix product gives; so the `candidates` training sequences nearest in plain L2 (one matrix
    product) are shortlisted and the exact per-vertex error is taken over them. The L2 nearest is
    always on the list, so a sequence that is in the training set scores exactly 0.
    """
    generated = np.asarray(generated, np.float32)
    training = np.asarray(training, np.float32)
    # float32 views: the training set can be hundreds of MB; the ranking only shortlists.
    flat_generated = generated.reshape(len(generated), -1)
    flat_training = training.reshape(len(training), -1)
    squared = (np.einsum("ij,ij->i", flat_generated, flat_generated, dtype=np.float64)[:, None]
               + np.einsum("ij,ij->i", flat_training, flat_training, dtype=np.float64)[None, :]
               - 2.0 * (flat_generated @ flat_training.T).astype(np.float64))
    count = min(candidates, len(training))
    shortlist = np.argpartition(squared, count - 1, axis=1)[:, :count]
    scores = np.empty(len(generated))
    for i, rows in enumerate(shortlist):
        scores[i] = vertex_distances(generated[i][None], training[rows]).mean(axis=(1, 2)).min()
    return scores


def diversity(samples: np.ndarray) -> float:
    """Mean pairwise per-vertex distance between sequences generated for one condition with
    different seeds, samples (N,K,V,3); 0 for a deterministic generator (or N < 2)."""
    samples = np.asarray(samples)
    pairs = [(i, j) for i in range(len(samples)) for j in range(i + 1, len(samples))]
    if not pairs:
        return 0.0
    return float(np.mean([per_vertex_error(samples[i], samples[j]) for i, j in pairs]))


def smoothness(sequence: np.ndarray) -> float:
    """Mean length of the second difference x_{k+1} - 2 x_k + x_{k-1} over frames and vertices
    (mm per frame², lower is smoother); a sequence moving at constant velocity scores 0."""
    sequence = np.asarray(sequence, np.float64)
    if sequence.shape[-3] < 3:
        return 0.0
    second = sequence[..., 2:, :, :] - 2.0 * sequence[..., 1:-1, :, :] + sequence[..., :-2, :, :]
    return float(np.linalg.norm(second, axis=-1).mean())


def classification_scores(truth: np.ndarray, predicted: np.ndarray,
                          label_names: tuple[str, ...]) -> dict:
    """Accuracy and per-class precision, recall and F1 (002 Table 3), plus their macro means.

    A class that is never predicted has precision 0 (likewise recall for a class never present)."""
    truth = np.asarray(truth)
    predicted = np.asarray(predicted)
    per_class = {}
    for index, name in enumerate(label_names):
        true_positive = int(np.sum((predicted == index) & (truth == index)))
        predicted_count = int(np.sum(predicted == index))
        actual_count = int(np.sum(truth == index))
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / actual_count if actual_count else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_count}
    present = [scores for scores in per_class.values() if scores["support"]]
    macro = {key: float(np.mean([scores[key] for scores in present])) if present else 0.0
             for key in ("precision", "recall", "f1")}
    accuracy = float(np.mean(truth == predicted)) if len(truth) else 0.0
    return {"accuracy": accuracy, "per_class": per_class, "macro": macro}
