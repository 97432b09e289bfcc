"""`animateme eval`: run generators over the held-out test subjects and measure them.

Every generator answers the same conditions: each test sequence's subject neutral, one-hot label
and progression curve. The classifier is trained once on the training ground truth and judges the
test ground truth and every generator's output alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from . import metrics
from .classifier import train_classifier
from .generators import DETERMINISTIC, EvalContext, make_generator


@dataclass
class EvalSettings:
    seed: int = 0                    # first sampling seed; the classifier's seed too
    seeds: int = 3                   # samples per condition for diversity (stochastic generators)
    diversity_conditions: int = 12   # conditions sampled `seeds` times (the slow part)
    quick: bool = False              # a small subset, for tests and smoke runs
    quick_sequences: int = 12
    per_label: int | None = None     # evaluate this many sequences per label (a subset)
    classifier_epochs: int = 60
    show_progress: bool = True


@dataclass
class EvalResult:
    figures: dict                                   # everything that goes into eval.json
    indices: np.ndarray                             # test sequences evaluated
    outputs: dict = field(default_factory=dict)     # name -> (N,K,V,3) generated deformations


def display_path(path) -> str:
    """Relative to the repository when inside it, so committed reports name no machine's folders."""
    from pathlib import Path

    from animateme.paths import REPO_ROOT
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def select_conditions(context: EvalContext, settings: EvalSettings) -> np.ndarray:
    """All test sequences; with --quick or --per-label, a few from each label, spread evenly over
    its sequences (so over subjects), so every row of the tables fills."""
    test = context.corpus.test
    if settings.per_label is None and not settings.quick:
        return np.arange(len(test))
    per_label = settings.per_label or max(1, settings.quick_sequences // len(test.label_names))
    chosen = []
    for label in range(len(test.label_names)):
        rows = np.flatnonzero(test.label == label)
        chosen.append(rows[::max(1, len(rows) // per_label)][:per_label])
    return np.sort(np.concatenate(chosen))


def generate_all(name: str, generator, context: EvalContext, indices: np.ndarray, seed: int,
                 show_progress: bool) -> np.ndarray:
    test = context.corpus.test
    out = np.empty((len(indices), *test.deform.shape[1:]), dtype=np.float32)
    for row, index in enumerate(tqdm(indices, desc=f"generate {name}", unit="seq",
                                     disable=not show_progress, leave=False)):
        out[row] = generator(test.neutral[index], test.mix(index), test.progression[index], seed + int(index))
    return out


def diversity_of(name: str, generator, context: EvalContext, indices: np.ndarray,
                 first: np.ndarray, settings: EvalSettings) -> float:
    """Mean over conditions of the mean pairwise distance between `seeds` samples."""
    if name in DETERMINISTIC or settings.seeds < 2:
        return 0.0
    test = context.corpus.test
    scores = []
    count = min(settings.diversity_conditions, len(indices))
    for row in tqdm(range(count), desc=f"diversity {name}", unit="seq",
                    disable=not settings.show_progress, leave=False):
        index = indices[row]
        samples = [first[row]] + [
            generator(test.neutral[index], test.mix(index), test.progression[index],
                      settings.seed + int(index) + 100_003 * extra)
            for extra in range(1, settings.seeds)]
        scores.append(metrics.diversity(np.stack(samples)))
    return float(np.mean(scores))


def classification(classifier, sequences: np.ndarray, truth_labels: np.ndarray, labels) -> dict:
    """Table 3 scores, plus the classifier's mean probability for the intended label: it still
    separates generators when every one of them is classified correctly."""
    probabilities = classifier.probabilities(sequences)
    scores = metrics.classification_scores(truth_labels, probabilities.argmax(axis=1), labels)
    scores["true_label_probability"] = float(probabilities[np.arange(len(truth_labels)), truth_labels].mean())
    return scores


def evaluate(context: EvalContext, names: list[str], settings: EvalSettings) -> EvalResult:
    corpus = context.corpus
    test, train = corpus.test, corpus.train
    labels = corpus.label_names
    indices = select_conditions(context, settings)
    truth = test.deform[indices]
    truth_labels = test.label[indices]
    # Build every generator before the long work, so a missing checkpoint fails at once.
    generators = {name: make_generator(name, context) for name in names}

    started = time.monotonic()
    classifier = train_classifier(train.deform, train.label, len(labels),
                                  epochs=settings.classifier_epochs, seed=settings.seed,
                                  show_progress=settings.show_progress)
    figures = {
        "corpus": {"directory": display_path(corpus.directory), "corpus_fingerprint": corpus.corpus_fingerprint,
                   "template_fingerprint": corpus.fingerprint, "train_sequences": len(train),
                   "test_sequences": len(test), "test_subjects": int(len(np.unique(test.subject))),
                   "evaluated_sequences": int(len(indices)), "frames": int(test.frames),
                   "label_names": list(labels)},
        "settings": {"seed": settings.seed, "seeds": settings.seeds, "per_label": settings.per_label,
                     "diversity_conditions": settings.diversity_conditions, "quick": settings.quick,
                     "classifier_epochs": settings.classifier_epochs,
                     "diffusion_options": context.diffusion_options},
        "classifier": {"train_accuracy": float(np.mean(classifier.predict(train.deform) == train.label))},
        "ground_truth_smoothness": metrics.smoothness(truth),
        "generators": {},
    }
    result = EvalResult(figures, indices)
    for name, generator in generators.items():
        generated = generate_all(name, generator, context, indices, settings.seed, settings.show_progress)
        result.outputs[name] = generated
        per_expression = {
            label: metrics.per_vertex_error(generated[truth_labels == index], truth[truth_labels == index])
            for index, label in enumerate(labels) if np.any(truth_labels == index)}
        specificity = metrics.specificity(generated, train.deform)
        figures["generators"][name] = {
            "per_vertex_error": metrics.per_vertex_error(generated, truth),
            "per_vertex_error_by_expression": per_expression,
            "per_frame_error": metrics.per_frame_error(generated, truth).tolist(),
            "classification": classification(classifier, generated, truth_labels, labels),
            "specificity": float(specificity.mean()),
            "specificity_by_expression": {
                label: float(specificity[truth_labels == index].mean())
                for index, label in enumerate(labels) if np.any(truth_labels == index)},
            "diversity": diversity_of(name, generator, context, indices, generated, settings),
            "smoothness": metrics.smoothness(generated),
            "deterministic": name in DETERMINISTIC,
        }
    figures["seconds"] = round(time.monotonic() - started, 1)
    return result
