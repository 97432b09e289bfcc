"""reports/eval.json (every figure, machine-readable) and reports/eval.md (tables shaped like
AnimateMe supp. Table 1 and Potamias et al. Tables 2-3, with the pictures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_json(figures: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, default=_plain) + "\n")
    return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _name(name: str) -> str:
    return "GT (test)" if name == "gt" else name


def summary_table(figures: dict) -> list[str]:
    lines = ["| Method | Accuracy (%) | Minus GT's (points, 95 % interval) | P(intended label) | Specificity (mm) "
             "| Per-vertex error (mm) | Diversity (mm) | Smoothness (mm/frame²) |", "|---" * 8 + "|"]
    for name, scores in figures["generators"].items():
        gap = scores["classification"].get("accuracy_gap")
        gap_cell = f"{gap['points']:+.2f} [{gap['interval'][0]:+.1f}, {gap['interval'][1]:+.1f}]" if gap else "-"
        lines.append(
            f"| {_name(name)} | {100 * scores['classification']['accuracy']:.2f} | {gap_cell} "
            f"| {scores['classification']['true_label_probability']:.3f} "
            f"| {scores['specificity']:.3f} | {scores['per_vertex_error']:.3f} "
            f"| {scores['diversity']:.3f} | {scores['smoothness']:.4f} |")
    return lines


def _cell(value, digits: int = 2) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _spread_cell(scores: dict, key: str, digits: int = 2) -> str:
    """A set measure's mean over the feature networks, with its range where there are several."""
    runs = scores.get(f"{key}_per_network") or []
    if len(runs) < 2 or not np.all(np.isfinite(runs)):
        return _cell(scores[key], digits)
    return f"{_cell(scores[key], digits)} ({min(runs):.{digits}f}–{max(runs):.{digits}f})"


def fair_table(figures: dict) -> list[str]:
    """The measures that are fair to stochastic generators, one row per generator."""
    best_of = figures["settings"]["best_of"]
    dense = "name" in (figures.get("dense_face") or {})
    lines = ["| Method | Fréchet distance | Precision | Recall | Single-sample error (mm) "
             f"| Best-of-{best_of} error (mm) | Amplitude ratio | Diversity ratio | Roughness ratio (template) "
             + ("| Roughness ratio (dense face) " if dense else "") + "|",
             "|---" * (9 + bool(dense)) + "|"]
    for name, scores in figures["generators"].items():
        row = (f"| {_name(name)}{' (train vs test)' if name == 'gt' else ''} "
               f"| {_spread_cell(scores, 'frechet_distance', 1)} | {_spread_cell(scores, 'precision')} "
               f"| {_spread_cell(scores, 'recall')} "
               f"| {_cell(scores['single_sample_error_on_best_of_conditions'], 3)} "
               f"| {_cell(scores['best_of_n_error'], 3)} | {_cell(scores['amplitude_ratio'])} "
               f"| {_cell(scores['diversity_ratio'])} | {_cell(scores['roughness_ratio'])} ")
        if dense:
            row += f"| {_cell((scores.get('dense_face') or {}).get('roughness_ratio'))} "
        lines.append(row + "|")
    return lines


def per_network_table(figures: dict, key: str = "frechet_distance") -> list[str]:
    """One row per generator, one column per feature network: each network has its own feature
    scale, so a column ranks the generators and columns are not compared with each other."""
    runs = {name: scores.get(f"{key}_per_network") or [] for name, scores in figures["generators"].items()}
    count = max((len(values) for values in runs.values()), default=0)
    if count < 2:
        return []
    lines = ["| Model | " + " | ".join(f"Network {n + 1}" for n in range(count)) + " |",
             "|---" * (count + 1) + "|"]
    lines += [f"| {_name(name)} | " + " | ".join(_cell(value, 1) for value in values) + " |"
              for name, values in runs.items() if len(values) == count]
    return ["### Fréchet distance in each feature network", "",
            "Each network embeds the sequences on its own scale: read down a column (the ranking), not "
            "across.", "", *lines, ""]


def by_expression_table(figures: dict, key: str, digits: int = 2, nested: str | None = None) -> list[str]:
    """One row per generator, one column per label, of a `key`_by_expression figure."""
    labels = figures["corpus"]["label_names"]
    lines = ["| Model | " + " | ".join(label.capitalize() for label in labels) + " | All |",
             "|---" * (len(labels) + 2) + "|"]
    for name, scores in figures["generators"].items():
        source = scores.get(nested) if nested else scores
        if not source:
            continue
        by = source[f"{key}_by_expression"]
        cells = []
        for label in labels:
            value = by.get(label)
            cells.append(_cell(value.get(key) if isinstance(value, dict) else value, digits))
        lines.append(f"| {_name(name)} | " + " | ".join(cells) + f" | {_cell(source[key], digits)} |")
    return lines


def confusion_table(figures: dict, matrix=None) -> list[str]:
    """Rows: true label, columns: the classifier's; the held-out ground truth's unless `matrix`."""
    labels = figures["corpus"]["label_names"]
    matrix = np.asarray(figures["classifier"]["test_confusion"] if matrix is None else matrix)
    lines = ["| true \\ predicted | " + " | ".join(label.capitalize() for label in labels) + " |",
             "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, matrix):
        lines.append(f"| {label.capitalize()} | " + " | ".join(str(int(v)) for v in row) + " |")
    return lines


def generated_confusions(figures: dict) -> list[str]:
    """What each generator's samples were taken for, same classifier (the ground truth's is above)."""
    lines = []
    for name, scores in figures["generators"].items():
        matrix = scores["classification"].get("confusion")
        if name != "gt" and matrix is not None:
            lines += [f"Confusion of {_name(name)}'s samples:", "", *confusion_table(figures, matrix), ""]
    return lines


FAIR_MEASURES = [
    "- **Fréchet distance** (as FID, on whole sequences): distance between Gaussians fitted to the "
    "generated and the held-out sequences in the classifier's penultimate-layer features (64-d); 0 for "
    "identical distributions, and a generator without variety pays its missing covariance. The GT row "
    "is the held-out ground truth against a label-matched, equally large draw of *training* sequences: "
    "the distance real unseen motion has, the floor to read the others against. The feature network's "
    "training run sets the scale of these set measures, so each is the mean over several networks trained "
    "with different seeds (`settings.feature_networks`), with their range in brackets; per-label tables "
    "show the mean.",
    "- **Precision / recall** (Kynkäänniemi et al. 2019, k = 3): share of generated sequences inside "
    "the held-out set's k-NN manifold (fidelity), and share of held-out sequences inside the generated "
    "set's manifold (coverage). A mean collapses recall.",
    "- **Best-of-N error**: for each of the conditions listed, the smallest per-vertex error among N "
    "samples with different seeds, beside the single-sample error on the same conditions (equal for "
    "deterministic models): does the generator play the real performance among its samples?",
    "- **Amplitude ratio**: mean apex amplitude (the most displaced frame's mean vertex displacement) "
    "over the ground truth's; below 1 the generator under-shoots.",
    "- **Diversity ratio**: mean pairwise distance between a generator's outputs for the same subject "
    "and label (its several test takes, each with its own seed) over the ground truth's own spread in "
    "the same groups; 1 varies as the person does, 0 plays one thing.",
    "- **Roughness ratio**: high-frequency share of the deformation energy, ||L d||² / ||d||² with "
    "the uniform graph Laplacian, over the ground truth's; on the template (all frames), and on a dense "
    "real face after carrying each sequence's apex through the extension's registration and binding. "
    "Above 1 is lumpier than real motion.",
]


READING = [
    "- Accuracy rewards prototypical motion: a mean of each label can be classified *better* than the "
    "ground truth itself, so it does not measure variety or realism; recall and the Fréchet distance do.",
    "- Per-label Fréchet distances are estimated from a few dozen sequences per set in 64 dimensions, so "
    "they are biased upward, the more so the smaller the set (the GT row's reference set is the smaller "
    "one): compare generators within a column, not a column with the overall figure.",
    "- Spread scales with amplitude: a generator that under-shoots also spreads less, so read the "
    "diversity ratio beside the amplitude ratio.",
    "- Roughness is blind to amplitude (a ratio of energies); deterministic models come out smoother than "
    "the ground truth, which has blinks, lags and habits; above 1 means lumps or noise.",
]


def expression_error_table(figures: dict) -> list[str]:
    labels = figures["corpus"]["label_names"]
    lines = ["| Model | " + " | ".join(label.capitalize() for label in labels) + " | Total |",
             "|---" * (len(labels) + 2) + "|"]
    for name, scores in figures["generators"].items():
        by = scores["per_vertex_error_by_expression"]
        cells = [f"{by[label]:.3f}" if label in by else "–" for label in labels]
        lines.append(f"| {_name(name)} | " + " | ".join(cells) + f" | {scores['per_vertex_error']:.3f} |")
    return lines


def classification_table(figures: dict) -> list[str]:
    names = list(figures["generators"])
    header = "| Expression | " + " | ".join(f"{_name(n)} Pre | Rec | F1" for n in names) + " |"
    lines = [header, "|---" * (1 + 3 * len(names)) + "|"]
    for label in figures["corpus"]["label_names"]:
        cells = []
        for name in names:
            scores = figures["generators"][name]["classification"]["per_class"][label]
            cells += [f"{scores['precision']:.2f}", f"{scores['recall']:.2f}", f"{scores['f1']:.2f}"]
        lines.append(f"| {label.capitalize()} | " + " | ".join(cells) + " |")
    cells = []
    for name in names:
        macro = figures["generators"][name]["classification"]["macro"]
        cells += [f"{macro['precision']:.2f}", f"{macro['recall']:.2f}", f"{macro['f1']:.2f}"]
    lines.append("| Total (macro) | " + " | ".join(cells) + " |")
    return lines


def guidance_words(options: dict) -> str:
    """'label guidance 1 (blend), rescaled 1', '... per label (happy 0.4, ...) ...' or 'no label guidance',
    then fast mode's signal gains where there are some."""
    gains = options.get("fast_gain_by_label") or {}
    gain_words = (f"; fast-mode signal gain {', '.join(f'{k} {v:g}' for k, v in gains.items())}" if gains else "")
    if not options.get("guidance") and not options.get("guidance_by_label"):
        return "no label guidance" + gain_words
    rescale = float(options.get("guidance_rescale", 0.0))
    def per_label(table: dict) -> str:
        return f"per label ({', '.join(f'{k} {v:g}' for k, v in table.items())})"

    by_label, paper = options.get("guidance_by_label"), options.get("paper_guidance_by_label")
    weight = per_label(by_label) if by_label else f"{options['guidance']:g}"
    kind = options.get("guidance_kind", "neutral")
    kinds = options.get("guidance_kind_by_label") or {}
    if kinds:
        by_kind = {}
        for label, label_kind in kinds.items():
            by_kind.setdefault(label_kind, []).append(label)
        kind += "".join(f"; {k} for {', '.join(names)}" for k, names in by_kind.items())
    return (f"label guidance {weight} ({kind})"
            + (f", rescaled {rescale:g}" if rescale else "")
            + (f"; in paper mode {per_label(paper)}" if paper else "") + gain_words)


def _sampler_sentence(options: dict) -> str:
    """How the diffusion model was sampled, when it was (its label guidance: the card's unless set)."""
    if "guidance" not in options:
        return ""
    guidance = guidance_words(options)
    settings = ", ".join(f"{'output smoothing' if k == 'smoothing' else k} {v:g}" if isinstance(v, float)
                         else f"{k} {v}" for k, v in options.items()
                         if k not in ("guidance", "guidance_kind", "guidance_rescale", "guidance_by_label",
                                      "paper_guidance_by_label", "guidance_kind_by_label", "fast_gain_by_label"))
    return f" Diffusion: {guidance}{'; ' + settings if settings else ''} (fast mode unless a mode is named)."


def frechet_gap_table(figures: dict) -> list[str]:
    """The model's Fréchet distance minus each baseline's, per network and on their mean, with the
    subject-bootstrap interval: a ranking whose interval straddles 0 is a tie at this test set's size."""
    gaps = figures.get("frechet_gaps") or {}
    if "baselines" not in gaps:
        return []
    first = next(iter(gaps["baselines"].values()))
    count, level = len(first["per_network"]), round(100 * first["level"])
    cell = lambda value, interval: f"{value:+.1f} [{interval[0]:+.1f}, {interval[1]:+.1f}]"  # noqa: E731
    lines = ["| Model minus | " + " | ".join(f"Network {n + 1}" for n in range(count))
             + " | Mean of networks | Draws closer (mean) |", "|---" * (count + 3) + "|"]
    for name, gap in gaps["baselines"].items():
        lines.append(f"| {_name(name)} | " + " | ".join(
            cell(v, i) for v, i in zip(gap["per_network"], gap["interval_per_network"]))
            + f" | {cell(gap['mean'], gap['interval_mean'])} | {100 * gap['closer_share_mean']:.0f} % |")
    return [f"### Is the model closer than each baseline? ({_name(gaps['candidate'])}'s Fréchet distance minus "
            "theirs)", "",
            f"Negative: the model is closer to the held-out people. In brackets the {level} % interval of "
            f"{first['draws']} bootstrap draws of the {first['subjects']} test subjects (paired: both generators "
            "scored on the same drawn sequences); an interval that holds 0 is a tie at this test set's size, "
            "not a ranking. The last column: the share of draws in which the model is closer on the mean "
            "of the networks.", "", *lines, ""]


def write_markdown(figures: dict, pictures: dict, path: Path, command: str) -> Path:
    corpus, settings = figures["corpus"], figures["settings"]
    lines = [
        "# Evaluation on the held-out test subjects",
        "",
        f"Made by `{command}`. Corpus `{corpus['directory']}` (corpus fingerprint "
        f"`{corpus['corpus_fingerprint']}`, template `{corpus['template_fingerprint']}`): "
        f"{corpus['train_sequences']} training sequences, {corpus['evaluated_sequences']} of "
        f"{corpus['test_sequences']} test sequences evaluated ({corpus['test_subjects']} test subjects), "
        f"{corpus['frames']} frames each. Seed {settings['seed']}; best of {settings['best_of']} samples "
        f"on {settings['best_of_conditions']} conditions ({settings['best_of_per_label']} per label)"
        + (" — **quick subset**" if settings["quick"] else "")
        + (f" — **subset: {settings['per_label']} per label**" if settings.get("per_label") else "") + "."
        + _sampler_sentence(settings.get("diffusion_options", {})),
        "",
        "All lengths are millimetres; every generator answers the same conditions (each test "
        "sequence's neutral, label and progression curve). GT is the test ground truth itself: its "
        "accuracy is the reference a generator should reach, its specificity is the distance of real "
        "unseen motion to the training set.",
        "",
        "## Measures fair to stochastic generators",
        "",
        *fair_table(figures),
        "",
        *FAIR_MEASURES,
        *([f"- Dense face: {figures['dense_face']['name']} ({figures['dense_face']['vertices']} vertices; "
           f"registration: {figures['dense_face']['fit']})."] if "name" in figures["dense_face"] else
          [f"- Dense face: **not measured** ({figures['dense_face']['not_measured']})."]),
        "",
        *per_network_table(figures),
        *frechet_gap_table(figures),
        "### Fréchet distance by expression",
        "",
        *by_expression_table(figures, "frechet_distance"),
        "",
        "### Recall by expression",
        "",
        *by_expression_table(figures, "recall"),
        "",
        "### Best-of-N error by expression (mm)",
        "",
        *by_expression_table(figures, "best_of_n_error", 3),
        "",
        "### Amplitude ratio by expression",
        "",
        *by_expression_table(figures, "amplitude_ratio"),
        "",
        "### Diversity ratio by expression",
        "",
        *by_expression_table(figures, "diversity_ratio"),
        "",
        "### Roughness ratio by expression (template; dense face below)",
        "",
        *by_expression_table(figures, "roughness_ratio"),
        "",
        *(["Dense face:", ""] + by_expression_table(figures, "roughness_ratio", nested="dense_face") + [""]
          if "name" in figures["dense_face"] else []),
        "### Reading these",
        "",
        *READING,
        "",
        "## Summary (shaped like AnimateMe supp. Table 1)",
        "",
        *summary_table(figures),
        "",
        f"Ground-truth smoothness on the evaluated sequences: {figures['ground_truth_smoothness']:.4f} mm/frame². "
        f"Classifier accuracy on its own training set: {100 * figures['classifier']['train_accuracy']:.2f} %.",
        "",
        "- **Accuracy**: expression classifier of Potamias et al. §5.3 (PCA-64 frame encoder on "
        "training deformations, concatenated frame codes, three FC layers), trained on the training "
        "ground truth only. **P(intended label)**: its mean probability for the label the sequence "
        "was generated for (separates generators when all are classified correctly). **Minus GT's**: "
        "the samples' accuracy minus the ground truth's on the same conditions, with the interval of "
        "1000 bootstrap draws of the test subjects (a difference inside it is sampling error).",
        "- **Specificity**: per-vertex distance of each generated deformation sequence to its closest "
        "training sequence (deformations, so identity does not count), mean over sequences.",
        "- **Per-vertex error**: mean Euclidean vertex distance to the ground truth sharing the condition.",
        "- **Diversity**: mean pairwise per-vertex distance between the best-of-N samples of one "
        "condition (different seeds; 0 for deterministic models).",
        "- **Smoothness**: mean length of the second difference of vertex positions across frames.",
        *(["- **framemean** is a yardstick, not a model: the training set's mean deformation for each "
           "frame's label and progression. AnimateMe conditions every frame on its own e_k alone; this is "
           "the least-squares answer any such subject-independent, per-frame generator converges to, so "
           "its error is about the floor for that conditioning on this corpus."]
          if "framemean" in figures["generators"] else []),
        "",
        "## Per-vertex error by expression (shaped like Potamias et al. Table 2), mm",
        "",
        *expression_error_table(figures),
        "",
        "## Classification (shaped like Potamias et al. Table 3)",
        "",
        *classification_table(figures),
        "",
        "Confusion of the held-out ground truth (rows: true label, columns: the classifier's):",
        "",
        *confusion_table(figures),
        "",
        *generated_confusions(figures),
    ]
    if pictures.get("per_frame"):
        lines += ["## Per-frame error (Potamias et al. Fig. 5)", "",
                  f"![per-frame error]({pictures['per_frame'].name})", ""]
    if pictures.get("heatmap"):
        lines += ["## Error heatmap on the face (Potamias et al. Fig. 3)", "",
                  "Mean per-vertex error over all evaluated sequences and frames, on the template "
                  "neutral, one colour scale for all generators.", "",
                  f"![error heatmap]({pictures['heatmap'].name})", ""]
    if pictures.get("strips"):
        lines += ["## Frame strips", "",
                  "First evaluated test sequence of each expression: ground truth on top, then each "
                  "generator; columns are frames spread over the sequence, the apex included.", ""]
        for strip in pictures["strips"]:
            lines += [f"![{strip.stem}]({strip.name})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
