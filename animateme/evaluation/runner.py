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

from . import distribution, metrics, surface, variety
from .classifier import train_classifier
from .generators import DETERMINISTIC, EvalContext, make_generator

# The generator whose Fréchet distance is set against each other's (`frechet_gaps`).
CANDIDATE = "diffusion"


@dataclass
class EvalSettings:
    seed: int = 0                    # first sampling seed; the classifier's seed too
    best_of: int = 5                 # samples per condition for best-of-N error and seed diversity
    best_of_per_label: int = 6       # conditions per label sampled `best_of` times (the slow part)
    reference_fraction: float = 0.25  # training subjects held back from the feature network
    dense_face: bool = True          # roughness on a dense real face too (needs ../shared real-faces)
    quick: bool = False              # a small subset, for tests and smoke runs
    quick_sequences: int = 12
    per_label: int | None = None     # evaluate this many sequences per label (a subset)
    classifier_epochs: int = 60
    feature_networks: int = 3        # feature networks (seeds) the set measures are averaged over
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
    for candidate in (Path(path).absolute(), Path(path).resolve()):   # a linked data/ folder stays data/
        try:
            return str(candidate.relative_to(REPO_ROOT))
        except ValueError:
            continue
    return str(Path(path).resolve())


def select_conditions(context: EvalContext, settings: EvalSettings) -> np.ndarray:
    """All test sequences; with --quick or --per-label, a few from each label, taken as whole
    (subject, label) groups spread evenly over the subjects, so every row of the tables fills and
    the spread within a group can still be measured."""
    test = context.corpus.test
    if settings.per_label is None and not settings.quick:
        return np.arange(len(test))
    per_label = settings.per_label or max(1, settings.quick_sequences // len(test.label_names))
    chosen = []
    for label in range(len(test.label_names)):
        rows = np.flatnonzero(test.label == label)
        subjects = np.unique(test.subject[rows])
        takes = max(1, len(rows) // max(len(subjects), 1))
        wanted = min(len(subjects), max(1, -(-per_label // takes)))
        for subject in subjects[np.linspace(0, len(subjects) - 1, wanted).round().astype(int)]:
            chosen.append(rows[test.subject[rows] == subject])
    return np.sort(np.unique(np.concatenate(chosen)))


def spread_over_labels(labels: np.ndarray, per_label: int) -> np.ndarray:
    """Row numbers: up to `per_label` of each label's rows, evenly spaced."""
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rows.append(members[np.linspace(0, len(members) - 1, min(per_label, len(members))).round().astype(int)])
    return np.unique(np.concatenate(rows)) if rows else np.zeros(0, int)


def generate_all(name: str, generator, context: EvalContext, indices: np.ndarray, seed: int,
                 show_progress: bool) -> np.ndarray:
    test = context.corpus.test
    out = np.empty((len(indices), *test.deform.shape[1:]), dtype=np.float32)
    for row, index in enumerate(tqdm(indices, desc=f"generate {name}", unit="seq",
                                     disable=not show_progress, leave=False)):
        out[row] = generator(test.neutral[index], test.mix(index), test.progression[index], seed + int(index))
    return out


def extra_samples(name: str, generator, context: EvalContext, indices: np.ndarray, rows: np.ndarray,
                  first: np.ndarray, settings: EvalSettings) -> np.ndarray:
    """(R, N, K, V, 3): for each chosen row, its first sample and N-1 more with other seeds.
    Deterministic generators are not sampled again (every sample would be the first)."""
    test = context.corpus.test
    count = settings.best_of if name not in DETERMINISTIC else 1
    out = np.empty((len(rows), count, *first.shape[1:]), dtype=np.float32)
    for r, row in enumerate(tqdm(rows, desc=f"best-of-{count} {name}", unit="seq",
                                 disable=not settings.show_progress or count == 1, leave=False)):
        index = indices[row]
        out[r, 0] = first[row]
        for extra in range(1, count):
            out[r, extra] = generator(test.neutral[index], test.mix(index), test.progression[index],
                                      settings.seed + int(index) + 100_003 * extra)
    return out


def hold_back_subjects(subjects: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, reference rows) of the training split, divided by subject.

    The set measures live in a classifier's features; a network embeds the sequences it was trained
    on differently from unseen ones (it has fitted them), so the ground truth's own train-vs-test
    distance would be inflated if its training sequences were the network's own. The feature
    network is therefore trained without the reference subjects, which it sees as fresh as the
    test subjects."""
    people = np.unique(subjects)
    rng = np.random.default_rng(seed)
    held = rng.choice(people, max(1, int(round(fraction * len(people)))), replace=False)
    reference = np.isin(subjects, held)
    return np.flatnonzero(~reference), np.flatnonzero(reference)


def set_scores(generated: np.ndarray, generated_labels: np.ndarray, real: np.ndarray,
               real_labels: np.ndarray, labels) -> dict:
    """Fréchet distance and k-NN precision/recall, overall and per label, in classifier features."""
    def scores(a, b):
        if len(a) < 2 or len(b) < 2:
            return {"frechet_distance": float("nan"), "precision": float("nan"), "recall": float("nan")}
        precision, recall = distribution.precision_recall(b, a)
        return {"frechet_distance": distribution.frechet_distance(a, b), "precision": precision, "recall": recall}
    out = scores(generated, real)
    per = {label: scores(generated[generated_labels == c], real[real_labels == c])
           for c, label in enumerate(labels) if np.any(real_labels == c)}
    for key in ("frechet_distance", "precision", "recall"):
        out[f"{key}_by_expression"] = {label: values[key] for label, values in per.items()}
    return out


def mean_set_scores(runs: list[dict]) -> dict:
    """set_scores of several feature networks -> their mean, figure by figure and label by label,
    with each overall figure's value per network (`<figure>_per_network`) to read its spread."""
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = {label: float(np.mean([run[key][label] for run in runs])) for label in value}
        else:
            out[key] = float(np.mean([run[key] for run in runs]))
            out[f"{key}_per_network"] = [float(run[key]) for run in runs]
    return out


def by_label(function, labels, truth_labels, *arrays) -> dict:
    """{label: function(*arrays restricted to the label)} for the labels present."""
    return {label: function(*(a[truth_labels == c] for a in arrays))
            for c, label in enumerate(labels) if np.any(truth_labels == c)}


def classification(classifier, sequences: np.ndarray, truth_labels: np.ndarray, labels) -> tuple[dict, np.ndarray]:
    """(Table 3 scores, plus the classifier's mean probability for the intended label: it still
    separates generators when every one of them is classified correctly; (N,) whether each sample
    was read as its label)."""
    probabilities = classifier.probabilities(sequences)
    predicted = probabilities.argmax(axis=1)
    scores = metrics.classification_scores(truth_labels, predicted, labels)
    scores["true_label_probability"] = float(probabilities[np.arange(len(truth_labels)), truth_labels].mean())
    scores["confusion"] = confusion(truth_labels, predicted, len(labels)).tolist()
    return scores, predicted == truth_labels


def evaluate(context: EvalContext, names: list[str], settings: EvalSettings) -> EvalResult:
    corpus = context.corpus
    test, train = corpus.test, corpus.train
    labels = corpus.label_names
    indices = select_conditions(context, settings)
    truth = test.deform[indices]
    truth_labels = test.label[indices]
    groups = test.subject[indices] * len(labels) + truth_labels      # (subject, label) groups
    best_rows = spread_over_labels(truth_labels, settings.best_of_per_label)
    # Build every generator before the long work, so a missing checkpoint fails at once.
    generators = {name: make_generator(name, context) for name in names}

    started = time.monotonic()
    classifier = train_classifier(train.deform, train.label, len(labels),
                                  epochs=settings.classifier_epochs, seed=settings.seed,
                                  show_progress=settings.show_progress)
    test_predictions = classifier.predict(truth)
    fit_rows, reference_rows = hold_back_subjects(train.subject, settings.reference_fraction, settings.seed)
    # The feature network's training run sets the scale of the set measures (docs/model-history.md),
    # so they are averaged over several networks, each network's value kept.
    embedders = [train_classifier(train.deform[fit_rows], train.label[fit_rows], len(labels),
                                  epochs=settings.classifier_epochs, seed=settings.seed + 1 + network,
                                  show_progress=settings.show_progress)
                 for network in range(max(1, settings.feature_networks))]
    real_features = [embedder.embedding(truth) for embedder in embedders]
    template_laplacian = surface.graph_laplacian(context.template.faces, context.template.num_vertices)
    dense, dense_missing = None, "--no-dense-face"
    if settings.dense_face:
        from .dense_face import default_dense_face
        dense, dense_missing = default_dense_face(context.template)
    # Each sequence's apex (the ground truth's most displaced frame): what the dense face shows.
    apex = variety.apex_frames(truth)
    dense_truth = dense.carry(truth[np.arange(len(truth)), apex]) if dense else None
    figures = {
        "corpus": {"directory": display_path(corpus.directory), "corpus_fingerprint": corpus.corpus_fingerprint,
                   "template_fingerprint": corpus.fingerprint, "train_sequences": len(train),
                   "test_sequences": len(test), "test_subjects": int(len(np.unique(test.subject))),
                   "evaluated_sequences": int(len(indices)), "frames": int(test.frames),
                   "label_names": list(labels),
                   "subject_label_groups_with_two_or_more": int(np.sum(np.bincount(groups) >= 2))},
        "settings": {"seed": settings.seed, "per_label": settings.per_label, "quick": settings.quick,
                     "best_of": settings.best_of, "best_of_per_label": settings.best_of_per_label,
                     "best_of_conditions": int(len(best_rows)),
                     "reference_fraction": settings.reference_fraction,
                     "reference_sequences": int(len(reference_rows)),
                     "classifier_epochs": settings.classifier_epochs,
                     "feature_networks": len(embedders),
                     "diffusion_options": context.diffusion_options},
        "classifier": {"train_accuracy": float(np.mean(classifier.predict(train.deform) == train.label)),
                       "test_confusion": confusion(truth_labels, test_predictions, len(labels)).tolist()},
        "ground_truth_smoothness": metrics.smoothness(truth),
        "dense_face": {"name": dense.name, "vertices": int(len(dense.vertices)), "fit": dense.fit_score}
        if dense else {"not_measured": dense_missing},
        "generators": {},
    }
    result = EvalResult(figures, indices)
    generated_features, correct_of = {}, {}
    for name, generator in generators.items():
        generated = generate_all(name, generator, context, indices, settings.seed, settings.show_progress)
        result.outputs[name] = generated
        per_expression = {
            label: metrics.per_vertex_error(generated[truth_labels == index], truth[truth_labels == index])
            for index, label in enumerate(labels) if np.any(truth_labels == index)}
        specificity = metrics.specificity(generated, train.deform)
        # The ground truth's set measures compare the training set with the held-out one (its own
        # train-vs-test distance); a generator's compare its output with the held-out ground truth.
        scored = train.deform[reference_rows] if name == "gt" else generated
        feature_labels = train.label[reference_rows] if name == "gt" else truth_labels
        scores, correct = classification(classifier, generated, truth_labels, labels)
        embedded = [embedder.embedding(scored) for embedder in embedders]
        if name != "gt":   # kept for the gaps against the ground truth and between generators
            correct_of[name], generated_features[name] = correct, embedded
        set_figures = mean_set_scores([
            set_scores(features, feature_labels, real, truth_labels, labels)
            for features, real in zip(embedded, real_features)])
        samples = extra_samples(name, generator, context, indices, best_rows, generated, settings)
        best_truth = truth[best_rows]
        best_labels = truth_labels[best_rows]
        best = np.array([variety.best_of_n_error(s, t) for s, t in zip(samples, best_truth)])
        single = np.array([metrics.per_vertex_error(s[0], t) for s, t in zip(samples, best_truth)])
        seed_spread = np.array([metrics.diversity(s) for s in samples])
        dense_scores = None
        if dense is not None:
            carried = dense.carry(generated[np.arange(len(generated)), apex])
            dense_scores = {
                "roughness_ratio": surface.roughness_ratio(dense.laplacian, carried, dense_truth),
                "roughness_ratio_by_expression": by_label(
                    lambda g, t: surface.roughness_ratio(dense.laplacian, g, t), labels, truth_labels,
                    carried, dense_truth)}
        figures["generators"][name] = {
            "per_vertex_error": metrics.per_vertex_error(generated, truth),
            "per_vertex_error_by_expression": per_expression,
            "per_frame_error": metrics.per_frame_error(generated, truth).tolist(),
            "classification": scores,
            "specificity": float(specificity.mean()),
            "specificity_by_expression": {
                label: float(specificity[truth_labels == index].mean())
                for index, label in enumerate(labels) if np.any(truth_labels == index)},
            "diversity": float(seed_spread.mean()),
            "smoothness": metrics.smoothness(generated),
            "deterministic": name in DETERMINISTIC,
            **set_figures,
            "best_of_n_error": float(best.mean()),
            "single_sample_error_on_best_of_conditions": float(single.mean()),
            "best_of_n_error_by_expression": by_label(np.mean, labels, best_labels, best),
            "amplitude_ratio": variety.amplitude_ratio(generated, truth),
            "amplitude_ratio_by_expression": by_label(variety.amplitude_ratio, labels, truth_labels,
                                                      generated, truth),
            "diversity_ratio": variety.spread_ratio(generated, truth, groups),
            "diversity_ratio_by_expression": by_label(variety.spread_ratio, labels, truth_labels,
                                                      generated, truth, groups),
            "roughness_ratio": surface.roughness_ratio(template_laplacian, generated, truth),
            "roughness_ratio_by_expression": by_label(
                lambda g, t: surface.roughness_ratio(template_laplacian, g, t), labels, truth_labels,
                generated, truth),
            "dense_face": dense_scores,
        }
    subjects = test.subject[indices]
    if len(np.unique(subjects)) < 2:
        figures["frechet_gaps"] = {"not_measured": "needs two or more test subjects"}
    else:
        figures["frechet_gaps"] = frechet_gaps(generated_features, real_features, subjects, settings.seed)
        # "Within 3 points of the ground truth's accuracy" has a sampling error too.
        truth_correct = test_predictions == truth_labels
        for name, correct in correct_of.items():
            figures["generators"][name]["classification"]["accuracy_gap"] = distribution.accuracy_gap(
                correct, truth_correct, subjects, seed=settings.seed)
    figures["seconds"] = round(time.monotonic() - started, 1)
    return result


def frechet_gaps(features: dict, real_features: list, subjects: np.ndarray, seed: int) -> dict:
    """The model's Fréchet distance minus each other generator's, per feature network, with a
    subject bootstrap interval (distribution.frechet_gap): whether a ranking is more than the
    sampling error of the held-out set. Each generator's distances are drawn once."""
    others = [name for name in features if name != CANDIDATE]
    if CANDIDATE not in features or not others:
        return {"not_measured": f"needs {CANDIDATE} and another generator"}
    drawn = {name: distribution.frechet_draws(features[name], real_features, subjects, seed=seed)
             for name in [CANDIDATE, *others]}
    people = len(np.unique(subjects))
    return {"candidate": CANDIDATE,
            "baselines": {name: distribution.gap_of_draws(drawn[CANDIDATE], drawn[name], people) for name in others}}


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(C,C) counts: row = true label, column = predicted."""
    out = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(out, (np.asarray(truth), np.asarray(predicted)), 1)
    return out
