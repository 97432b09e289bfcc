"""`animateme baselines train` and `animateme eval` end to end on a tiny synthetic corpus, and the
one-line errors for bad input."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import json

import numpy as np

from animateme.cli import main
from animateme.diffusion.export import update_sampling
from animateme.evaluation.toy import write_toy_corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy corpus with both baselines trained on it (seconds)."""
    root = tmp_path_factory.mktemp("eval")
    corpus = write_toy_corpus(root, train_subjects=6, test_subjects=2)
    checkpoints = root / "checkpoints"
    assert main(["baselines", "train", "all", "--corpus", str(corpus), "--checkpoints", str(checkpoints),
                 "--epochs", "3", "--batch", "4"]) == 0
    return root, corpus, checkpoints


def assert_crosses_target(chosen, weights, ratios):
    """The chosen weight is where the measured ratio, linear between the two weights measured,
    reaches the target (the first weight when it already does there; 3 decimals kept)."""
    from animateme.evaluation.calibration import TARGET

    if ratios[0] >= TARGET:
        assert chosen == weights[0]
        return
    assert ratios[1] >= TARGET, "the test's weights must reach the target"
    at_chosen = ratios[0] + (ratios[1] - ratios[0]) * (chosen - weights[0]) / (weights[1] - weights[0])
    assert at_chosen == pytest.approx(TARGET, abs=abs(ratios[1] - ratios[0]) * 5e-4 / (weights[1] - weights[0]) + 1e-9)

def test_eval_writes_the_report(trained, capsys):
    root, corpus, checkpoints = trained
    out = root / "report"
    assert main(["eval", "--quick", "--models", "gt,lstm,pca,framemean", "--corpus", str(corpus),
                 "--checkpoints", str(checkpoints), "--out", str(out)]) == 0
    figures = json.loads((out / "eval.json").read_text())
    assert figures["corpus"]["corpus_fingerprint"] and figures["corpus"]["template_fingerprint"].startswith("v144-")
    assert figures["settings"]["seed"] == 0 and figures["settings"]["quick"] is True
    assert figures["corpus"]["evaluated_sequences"] == 12  # two per label
    generators = figures["generators"]
    assert set(generators) == {"gt", "lstm", "pca", "framemean"}
    gt = generators["gt"]
    assert gt["per_vertex_error"] == 0.0 and gt["diversity"] == 0.0
    assert gt["smoothness"] == pytest.approx(figures["ground_truth_smoothness"])
    # the toy labels are easy: a classifier trained on the training ground truth gets the test ground truth
    assert gt["classification"]["accuracy"] == 1.0
    assert 0.5 < gt["classification"]["true_label_probability"] <= 1.0
    for name in ("lstm", "pca", "framemean"):
        scores = generators[name]
        assert scores["per_vertex_error"] > 0 and scores["diversity"] == 0.0
        assert len(scores["per_frame_error"]) == 40
        assert set(scores["per_vertex_error_by_expression"]) == set(figures["corpus"]["label_names"])
        assert 0.0 <= scores["classification"]["accuracy"] <= 1.0
        assert scores["specificity"] > 0
        # What the samples were taken for: one row per true label, as many as its sequences.
        matrix = np.asarray(scores["classification"]["confusion"])
        assert matrix.shape == (6, 6) and list(matrix.sum(axis=1)) == [2] * 6
        assert np.trace(matrix) / 12 == pytest.approx(scores["classification"]["accuracy"])
    # The measures fair to stochastic generators, for every generator and label.
    labels = set(figures["corpus"]["label_names"])
    assert gt["amplitude_ratio"] == pytest.approx(1.0) and gt["diversity_ratio"] == pytest.approx(1.0)
    assert gt["roughness_ratio"] == pytest.approx(1.0) and gt["best_of_n_error"] == 0.0
    for name, scores in generators.items():
        assert scores["frechet_distance"] >= 0 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
        # The set measures are the mean over the feature networks, each network's value kept.
        for key in ("frechet_distance", "precision", "recall"):
            runs = scores[f"{key}_per_network"]
            assert len(runs) == figures["settings"]["feature_networks"] == 3
            assert min(runs) - 1e-9 <= scores[key] <= max(runs) + 1e-9
        assert len(set(scores["frechet_distance_per_network"])) > 1    # networks of different seeds
        for key in ("frechet_distance", "recall", "best_of_n_error", "amplitude_ratio", "diversity_ratio",
                    "roughness_ratio"):
            assert set(scores[f"{key}_by_expression"]) == labels, (name, key)
        # Deterministic: every sample is the first, so best-of-N is the single-sample error.
        assert scores["best_of_n_error"] == pytest.approx(scores["single_sample_error_on_best_of_conditions"])
        assert scores["amplitude_ratio"] > 0 and scores["roughness_ratio"] > 0
    assert figures["dense_face"] and "not_measured" in figures["dense_face"]   # the toy grid is no face
    markdown = (out / "eval.md").read_text()
    assert "Measures fair to stochastic generators" in markdown and "**Fréchet distance**" in markdown
    assert "| GT (test) (train vs test) |" in markdown and "Dense face: **not measured**" in markdown
    assert "### Fréchet distance in each feature network" in markdown and "| Network 3 |" in markdown
    assert "**framemean** is a yardstick" in markdown
    assert "not_measured" in figures["frechet_gaps"] and "Is the model closer" not in markdown  # no model here
    assert "| GT (test) | 100.00 |" in markdown and "Per-vertex error by expression" in markdown
    assert all(f"Confusion of {name}'s samples:" in markdown for name in ("lstm", "pca", "framemean"))
    for picture in figures["pictures"]:
        assert (out / picture).stat().st_size > 1000 and f"]({picture})" in markdown
    assert len(figures["pictures"]) == 2 + 6  # per-frame plot, heatmap, a strip per expression
    assert "wrote" in capsys.readouterr().out


def test_the_lstm_checkpoint_is_reproducible_from_its_seed(trained, tmp_path):
    import torch

    _, corpus, checkpoints = trained
    assert main(["baselines", "train", "lstm", "--corpus", str(corpus), "--checkpoints", str(tmp_path),
                 "--epochs", "3", "--batch", "4"]) == 0
    first = torch.load(checkpoints / "lstm.pt", weights_only=False)["state_dict"]
    second = torch.load(tmp_path / "lstm.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(value, second[key]) for key, value in first.items())


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("animateme: error: ")
    return lines[0]


def test_a_per_label_subset_spreads_over_the_test_set(trained, capsys):
    root, corpus, _ = trained
    out = root / "subset"
    assert main(["eval", "--models", "gt,framemean", "--per-label", "1", "--no-pictures", "--corpus", str(corpus),
                 "--out", str(out)]) == 0
    figures = json.loads((out / "eval.json").read_text())
    # One subject per label, with both of its takes (the toy test split has two per subject and
    # label): the spread within a (subject, label) group stays measurable.
    assert figures["corpus"]["evaluated_sequences"] == 12 and figures["settings"]["per_label"] == 1
    assert figures["corpus"]["subject_label_groups_with_two_or_more"] == 6
    assert "subset: 1 per label" in (out / "eval.md").read_text()
    capsys.readouterr()
    assert main(["eval", "--per-label", "0", "--corpus", str(corpus), "--out", str(out)]) == 2
    assert "--per-label must be at least 1" in error_line(capsys)


def test_missing_corpus(tmp_path, capsys):
    assert main(["eval", "--corpus", str(tmp_path / "nowhere")]) == 2
    assert "no corpus at" in (line := error_line(capsys)) and "animateme data build" in line


def test_unknown_generator(trained, capsys):
    _, corpus, _ = trained
    assert main(["eval", "--models", "gt,gan", "--corpus", str(corpus)]) == 2
    line = error_line(capsys)
    assert "unknown generator gan" in line and "gt, lstm, pca, framemean, diffusion" in line


def test_missing_checkpoint_and_missing_diffusion_model(trained, tmp_path, capsys):
    _, corpus, _ = trained
    assert main(["eval", "--models", "lstm", "--corpus", str(corpus), "--checkpoints", str(tmp_path)]) == 2
    assert "run `animateme baselines train lstm` first" in error_line(capsys)
    assert main(["eval", "--models", "diffusion", "--corpus", str(corpus),
                 "--model", str(tmp_path / "animateme.onnx")]) == 2
    assert "no trained model at" in (line := error_line(capsys))
    assert "run `animateme train` and `animateme export` first" in line


def test_checkpoint_from_another_template(trained, tmp_path, capsys):
    _, _, checkpoints = trained
    other = write_toy_corpus(tmp_path, train_subjects=2, test_subjects=1, side=10)  # 100 vertices
    assert main(["eval", "--quick", "--models", "pca", "--corpus", str(other),
                 "--checkpoints", str(checkpoints)]) == 2
    line = error_line(capsys)
    assert "trained on template v144-" in line and "but the corpus uses v100-" in line
    assert "run `animateme baselines train pca` again" in line


@pytest.mark.slow
def test_diffusion_is_evaluated_through_the_shipped_runtime(trained, tmp_path, capsys):
    """A tiny diffusion model trained and exported on the toy corpus, evaluated as users run it
    (ONNX + numpy sampler): it is stochastic, so its diversity is positive."""
    import torch
    from diffusion_fixture import tiny_train_config

    from animateme.diffusion.export import export
    from animateme.diffusion.train import train

    _, corpus, _ = trained
    torch.set_num_threads(1)
    paths = {"corpus": corpus / "train.npz", "template": corpus / "template.npz"}
    checkpoint = train(tiny_train_config(tmp_path, paths, steps=40, threads=1))
    model = tmp_path / "animateme.onnx"
    export(checkpoint, paths["template"], model)
    out = tmp_path / "report"
    # Four per label: both test subjects, so the Fréchet gaps have subjects to draw.
    assert main(["eval", "--per-label", "4", "--models", "gt,framemean,diffusion", "--corpus", str(corpus), "--model", str(model),
                 "--steps", "4", "--seeds", "2", "--diversity-conditions", "2", "--no-pictures",
                 "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["training"]["corpus_fingerprint"] == report["corpus"]["corpus_fingerprint"]   # same data
    scores = report["generators"]["diffusion"]
    assert scores["deterministic"] is False and scores["diversity"] > 0
    assert np.isfinite(scores["per_vertex_error"]) and scores["per_vertex_error"] > 0
    # The model's Fréchet distance minus the baseline's, per network, with its bootstrap interval.
    gap = report["frechet_gaps"]["baselines"]["framemean"]
    assert report["frechet_gaps"]["candidate"] == "diffusion" and gap["subjects"] == 2
    differences = np.subtract(scores["frechet_distance_per_network"],
                              report["generators"]["framemean"]["frechet_distance_per_network"])
    assert np.allclose(gap["per_network"], differences, rtol=1e-9, atol=1e-9)
    assert all(low <= high for low, high in gap["interval_per_network"] + [gap["interval_mean"]])
    assert "| framemean | " in (out / "eval.md").read_text().split("Is the model closer")[1]
    truth_accuracy = report["generators"]["gt"]["classification"]["accuracy"]
    assert "accuracy_gap" not in report["generators"]["gt"]["classification"]
    for name in ("framemean", "diffusion"):        # accuracy minus the ground truth's, with its interval
        accuracy = report["generators"][name]["classification"]
        assert accuracy["accuracy_gap"]["points"] == pytest.approx(100 * (accuracy["accuracy"] - truth_accuracy))
        low, high = accuracy["accuracy_gap"]["interval"]
        assert low <= accuracy["accuracy_gap"]["points"] <= high    # the bootstrap interval holds the estimate
    # Paper mode (all 1,000 steps) against fast mode, per label, on a few frames of each sequence.
    assert main(["eval-modes", "--corpus", str(corpus), "--model", str(model), "--per-label", "1",
                 "--seeds", "1", "--frames", "2", "--out", str(out)]) == 0
    modes = json.loads((out / "sampler_modes.json").read_text())
    assert modes["samples"] == 6 and set(modes["modes"]) == {"paper", "fast"}
    for scores in modes["modes"].values():
        assert set(scores["amplitude_ratio_by_expression"]) == set(modes["labels"])
        assert scores["amplitude_ratio"] > 0 and scores["error_mm"] > 0
    ratio = modes["fast_over_paper"]["amplitude"]
    assert ratio == pytest.approx(modes["modes"]["fast"]["amplitude_ratio"] / modes["modes"]["paper"]["amplitude_ratio"])
    text = (out / "sampler_modes.md").read_text()
    assert "| Paper mode amplitude ratio |" in text and f"the model `{model}`" in text  # not "shipped"
    # A guidance weight per label, measured on training sequences and recorded in the card.
    assert main(["calibrate-guidance", "--corpus", str(corpus), "--model", str(model), "--per-label", "2",
                 "--weights", "0,20", "--out", str(out), "--write"]) == 0
    calibrated = json.loads((out / "guidance_calibration.json").read_text())
    by_label = json.loads(model.with_suffix(".json").read_text())["sampling"]["guidance_by_label"]
    assert by_label == calibrated["chosen"] and set(by_label) == set(modes["labels"])
    for name, ratios in calibrated["ratio"].items():
        assert (ratios[0] >= 1) == (by_label[name] == 0)
        assert_crosses_target(by_label[name], [0.0, 20.0], ratios)
    # Paper mode gets its own table beside fast mode's, which stays as it was.
    assert main(["calibrate-guidance", "--mode", "paper", "--corpus", str(corpus), "--model", str(model),
                 "--per-label", "1", "--weights", "0,20", "--out", str(out), "--write"]) == 0
    paper = json.loads((out / "guidance_calibration_paper.json").read_text())
    sampling = json.loads(model.with_suffix(".json").read_text())["sampling"]
    assert paper["mode"] == "paper" and sampling["paper_guidance_by_label"] == paper["chosen"]
    assert sampling["guidance_by_label"] == by_label
    assert "(paper mode)" in (out / "guidance_calibration_paper.md").read_text()
    # One label re-measured (its guidance kind changed, say) replaces its weight only.
    first = modes["labels"][0]
    assert main(["calibrate-guidance", "--corpus", str(corpus), "--model", str(model), "--per-label", "1",
                 "--weights", "0,20", "--labels", first, "--out", str(out / "one"), "--write"]) == 0
    one = json.loads((out / "one" / "guidance_calibration.json").read_text())
    table = json.loads(model.with_suffix(".json").read_text())["sampling"]["guidance_by_label"]
    assert list(one["ratio"]) == [first] and table == by_label | one["chosen"]
    assert main(["calibrate-guidance", "--corpus", str(corpus), "--model", str(model), "--labels", "smirk"]) == 2
    # Measured on the test split's people (a corpus of unseen people), said so, the card untouched.
    assert main(["calibrate-guidance", "--corpus", str(corpus), "--model", str(model), "--per-label", "1",
                 "--weights", "0,20", "--labels", first, "--split", "test", "--out", str(out / "unseen")]) == 0
    unseen = json.loads((out / "unseen" / "guidance_calibration.json").read_text())
    assert unseen["split"] == "test" and "test-split sequences" in (out / "unseen" / "guidance_calibration.md").read_text()
    assert json.loads(model.with_suffix(".json").read_text())["sampling"]["guidance_by_label"] == table
    # Fast mode's signal gain for one label, measured unguided: recorded with that label's guidance at 0.
    assert main(["calibrate-guidance", "--gain", "--corpus", str(corpus), "--model", str(model), "--per-label", "1",
                 "--weights", "0.5,4", "--labels", first, "--out", str(out / "gain"), "--write"]) == 0
    gain = json.loads((out / "gain" / "gain_calibration.json").read_text())
    assert gain["knob"] == "gain" and gain["weights"] == [0.5, 4.0] and list(gain["ratio"]) == [first]
    assert "signal gain" in (out / "gain" / "gain_calibration.md").read_text()
    written = json.loads(model.with_suffix(".json").read_text())["sampling"]
    assert written["guidance_by_label"] == table | {first: 0.0}
    assert written.get("fast_gain_by_label", {}).get(first, 1.0) == gain["chosen"][first]
    assert_crosses_target(gain["chosen"][first], [0.5, 4.0], gain["ratio"][first])
    assert main(["calibrate-guidance", "--gain", "--mode", "paper", "--corpus", str(corpus), "--model", str(model)]) == 2
    update_sampling(model, guidance_by_label=by_label, fast_gain_by_label=None)   # back to the full measurement
    # set-sampling records fast mode's temperature and keeps the tables measured for its guidance kind.
    assert main(["set-sampling", "--model", str(model), "--guidance", str(sampling["guidance"]),
                 "--guidance-kind", sampling["guidance_kind"], "--fast-temperature", "0.8"]) == 0
    kept = json.loads(model.with_suffix(".json").read_text())["sampling"]
    assert kept["fast_temperature"] == 0.8 and kept["guidance_by_label"] == by_label
    assert kept["paper_guidance_by_label"] == paper["chosen"]
    # One label's fast-mode weight set by hand (the others keep theirs), and fast mode's signal gains:
    # recorded, a gain of 1 left out, '' drops them; bad pairs refused before the card is touched.
    first, second = modes["labels"][:2]
    assert main(["set-sampling", "--model", str(model), "--guidance", str(sampling["guidance"]),
                 "--guidance-kind", sampling["guidance_kind"], "--guidance-by-label", f"{first}=0",
                 "--fast-gain-by-label", f"{first}=1.6,{second}=1"]) == 0
    gained = json.loads(model.with_suffix(".json").read_text())["sampling"]
    assert gained["guidance_by_label"] == by_label | {first: 0.0} and gained["fast_gain_by_label"] == {first: 1.6}
    for bad in (f"{first}=5", f"{first}=x", "smirk=1.2"):
        assert main(["set-sampling", "--model", str(model), "--guidance", str(sampling["guidance"]),
                     "--guidance-kind", sampling["guidance_kind"], "--fast-gain-by-label", bad]) == 2
    assert json.loads(model.with_suffix(".json").read_text())["sampling"] == gained
    assert main(["set-sampling", "--model", str(model), "--guidance", str(sampling["guidance"]),
                 "--guidance-kind", sampling["guidance_kind"], "--guidance-by-label", f"{first}={by_label[first]}",
                 "--fast-gain-by-label", ""]) == 0
    assert "fast_gain_by_label" not in json.loads(model.with_suffix(".json").read_text())["sampling"]
    # A kind of its own for one label: recorded, the tables stay, and that label's weights are named
    # for measuring again; a new kind for every label drops the tables.
    label, other = modes["labels"][-1], "others" if sampling["guidance_kind"] != "others" else "blend"
    capsys.readouterr()
    assert main(["set-sampling", "--model", str(model), "--guidance", str(sampling["guidance"]),
                 "--guidance-kind", sampling["guidance_kind"], "--guidance-kind-by-label",
                 f"{label}={other}"]) == 0
    kinds = json.loads(model.with_suffix(".json").read_text())["sampling"]
    assert kinds["guidance_kind_by_label"] == {label: other} and kinds["guidance_by_label"] == by_label
    assert f"--labels {label} --write" in capsys.readouterr().out
    assert main(["set-sampling", "--model", str(model), "--guidance", "0.5", "--guidance-kind", other]) == 0
    assert "guidance_by_label" not in json.loads(model.with_suffix(".json").read_text())["sampling"]
    assert main(["set-sampling", "--model", str(model), "--guidance", "0.5",
                 "--guidance-kind-by-label", "smirk=neutral"]) == 2


def test_train_missing_trains_the_baselines_eval_needs(trained, tmp_path):
    _, corpus, _ = trained
    checkpoints = tmp_path / "checkpoints"
    assert main(["eval", "--quick", "--models", "pca", "--train-missing", "--no-pictures", "--corpus", str(corpus),
                 "--checkpoints", str(checkpoints), "--out", str(tmp_path / "report")]) == 0
    assert (checkpoints / "lstm.pt").is_file() and (checkpoints / "pca.pt").is_file()
    assert "pca" in json.loads((tmp_path / "report" / "eval.json").read_text())["generators"]


def test_validation_corpus_is_made_of_training_subjects(trained, tmp_path, capsys):
    from animateme.evaluation.corpus import load_corpus

    _, corpus, _ = trained
    out = tmp_path / "val"
    assert main(["data", "validation", "--corpus", str(corpus), "--subjects", "2", "--out", str(out)]) == 0
    source, val = load_corpus(corpus), load_corpus(out)
    judged, kept = set(val.test.subject), set(val.train.subject)
    assert len(judged) == 2 and not judged & kept and judged | kept == set(source.train.subject)
    assert not judged & set(source.test.subject)           # the held-out people stay out of it
    assert len(val.train) + len(val.test) == len(source.train) and val.fingerprint == source.fingerprint
    rows = np.flatnonzero(np.isin(source.train.subject, list(judged)))
    assert np.array_equal(val.test.deform, source.train.deform[rows])
    assert np.array_equal(val.test.label, source.train.label[rows]) and val.label_names == source.label_names
    capsys.readouterr()
    assert main(["data", "validation", "--corpus", str(corpus), "--subjects", "6", "--out", str(out)]) == 2
    assert "--subjects must lie in 1..5" in capsys.readouterr().err
