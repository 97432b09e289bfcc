"""`animateme eval` (measure generators on the test subjects) and `animateme baselines train`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from animateme import paths
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.guidance import GUIDANCE_KINDS


def _add_guidance(parser) -> None:
    """--guidance / --guidance-kind, forwarded to core.sample.sampler.sample (default: the model card's,
    so a report measures what ships)."""
    parser.add_argument("--guidance", type=float, default=None,
                        help="label guidance weight w >= 0 for the diffusion sampler (default: the model "
                             "card's `sampling`; 0: none)")
    parser.add_argument("--guidance-kind", choices=GUIDANCE_KINDS, default=None,
                        help="what guidance pushes away from: the neutral signal, the other labels at the "
                             "same intensity (one call each), or their blend (one call); default the card's")
    parser.add_argument("--guidance-rescale", type=float, default=None,
                        help="bring each guided prediction back towards its unguided size, 0..1 "
                             "(core/sample/sampler.py; default the card's)")


def _guidance_options(args: argparse.Namespace) -> dict:
    named = (("guidance", args.guidance), ("guidance_kind", args.guidance_kind),
             ("guidance_rescale", args.guidance_rescale))
    options = {name: value for name, value in named if value is not None}
    if "guidance" in options:
        options["guidance_by_label"] = {}    # a weight typed on the command line is for every label
    if "guidance_kind" in options:
        options["guidance_kind_by_label"] = {}    # and so is a kind
    return options


def _guidance_flags(args: argparse.Namespace) -> str:
    """The guidance flags as typed, for a report's command line."""
    options = _guidance_options(args)
    text = f" --guidance {options['guidance']:g}" if "guidance" in options else ""
    text += f" --guidance-kind {options['guidance_kind']}" if "guidance_kind" in options else ""
    return text + (f" --guidance-rescale {options['guidance_rescale']:g}" if "guidance_rescale" in options else "")


def add_commands(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "eval", help="evaluate generators on the held-out test subjects; writes reports/eval.{json,md}")
    evaluate.add_argument("--models", default="gt,lstm,pca",
                          help="comma-separated generators: gt, lstm, pca, framemean, diffusion (default gt,lstm,pca)")
    evaluate.add_argument("--quick", action="store_true", help="a small subset of the test set (tests, smoke runs)")
    evaluate.add_argument("--per-label", type=int, default=None,
                          help="evaluate N test sequences per label, spread over subjects (a faster subset)")
    evaluate.add_argument("--seed", type=int, default=0, help="first sampling seed and the classifier's seed")
    evaluate.add_argument("--best-of", "--seeds", dest="best_of", type=int, default=5,
                          help="samples per condition for best-of-N error and seed diversity (default 5)")
    evaluate.add_argument("--best-of-per-label", "--diversity-conditions", dest="best_of_per_label", type=int,
                          default=6, help="conditions per label sampled --best-of times (default 6)")
    evaluate.add_argument("--feature-networks", type=int, default=3,
                          help="feature networks (seeds) the Fréchet distance, precision and recall are "
                               "averaged over, with their range (default 3)")
    evaluate.add_argument("--no-dense-face", action="store_true",
                          help="skip the roughness on the dense real face (MeshMonk's average face)")
    evaluate.add_argument("--corpus", type=Path, default=None, help="corpus folder (default data/corpus)")
    evaluate.add_argument("--checkpoints", type=Path, default=None,
                          help="baseline checkpoints folder (default data/checkpoints)")
    evaluate.add_argument("--model", type=Path, default=None,
                          help="diffusion model (default models/animateme.onnx)")
    evaluate.add_argument("--steps", type=int, default=None, help="diffusion sampler steps")
    evaluate.add_argument("--mode", choices=("ddim", "ddpm"), default=None, help="diffusion sampler mode")
    evaluate.add_argument("--variation", type=float, default=None,
                          help="diffusion sampling temperature in [0, 1] (default: the mode's)")
    _add_guidance(evaluate)
    evaluate.add_argument("--out", type=Path, default=None, help="report folder (default reports/)")
    evaluate.add_argument("--no-pictures", action="store_true", help="skip the rendered pictures")
    evaluate.add_argument("--threads", type=int, default=1, help="torch threads for the classifier and baselines")
    evaluate.add_argument("--train-missing", action="store_true",
                          help="first train (seed 0, default settings) any requested baseline without a checkpoint")
    evaluate.set_defaults(func=run_eval)

    faces = subparsers.add_parser(
        "eval-faces", help="generate every label on real faces (not the face model's), classify the "
                           "template motion, draw the apex grid; writes reports/eval_real_faces.{json,md,png}")
    faces.add_argument("--corpus", type=Path, default=None, help="corpus whose training split trains the classifier")
    faces.add_argument("--model", type=Path, default=None, help="diffusion model (default models/animateme.onnx)")
    faces.add_argument("--seeds", type=int, default=3, help="samples per face and label (default 3)")
    faces.add_argument("--out", type=Path, default=None, help="report folder (default reports/)")
    faces.add_argument("--threads", type=int, default=1, help="torch threads for the classifier")
    faces.add_argument("--classifiers", type=int, default=3,
                       help="classifiers (seeds 0..N-1) that each read every clip (default 3)")
    faces.add_argument("--variation", type=float, default=None,
                       help="sampling temperature (default: the model's fast-mode default)")
    _add_guidance(faces)
    faces.set_defaults(func=run_eval_faces)

    modes = subparsers.add_parser(
        "eval-modes", help="paper mode (Algorithm 1) against fast mode on held-out conditions: apex amplitude "
                           "per label; writes reports/sampler_modes.{json,md}")
    modes.add_argument("--corpus", type=Path, default=None, help="corpus folder (default data/corpus)")
    modes.add_argument("--model", type=Path, default=None, help="diffusion model (default models/animateme.onnx)")
    modes.add_argument("--per-label", type=int, default=8, help="test sequences per label (default 8)")
    modes.add_argument("--seeds", type=int, default=2, help="samples per sequence and mode (default 2)")
    modes.add_argument("--frames", type=int, default=4, help="frames sampled per sequence, apex included (default 4)")
    modes.add_argument("--out", type=Path, default=None, help="report folder (default reports/)")
    _add_guidance(modes)
    modes.set_defaults(func=run_eval_modes)

    regions = subparsers.add_parser(
        "eval-regions", help="where each label moves at the apex (lips apart, brows, mouth corners), "
                             "the model against the held-out ground truth: reports/eval_regions.*")
    regions.add_argument("--corpus", type=Path, default=None, help="corpus folder (default data/corpus)")
    regions.add_argument("--model", type=Path, default=None, help="diffusion model (default models/animateme.onnx)")
    regions.add_argument("--per-label", type=int, default=16, help="held-out conditions per label (default 16)")
    regions.add_argument("--unguided", action="store_true", help="also the model without label guidance")
    regions.add_argument("--mode", choices=("fast", "paper"), default="fast",
                         help="the sampler: fast (DDIM, the default) or paper (Algorithm 1, 1,000 steps)")
    regions.add_argument("--out", type=Path, default=None, help="report folder (default reports/)")
    _add_guidance(regions)
    regions.set_defaults(func=run_eval_regions)

    calibrate = subparsers.add_parser(
        "calibrate-guidance", help="measure on training subjects (or --split test) the label-guidance weight per "
                                   "label that brings each label's apex to its ground truth's; --write records it "
                                   "in the card")
    calibrate.add_argument("--corpus", type=Path, default=None, help="corpus folder (default data/corpus)")
    calibrate.add_argument("--model", type=Path, default=None, help="diffusion model (default models/animateme.onnx)")
    calibrate.add_argument("--per-label", type=int, default=50,
                           help="training sequences per label (default 50: with 12 the weights move by 0.3)")
    calibrate.add_argument("--seeds", type=int, default=1, help="samples per sequence and weight (default 1)")
    calibrate.add_argument("--weights", default=None,
                           help="guidance weights (default 0,0.25,0.5,0.75,1,1.5) or gains (default 1,1.3,1.6,1.9) "
                                "to measure")
    calibrate.add_argument("--gain", action="store_true",
                           help="measure fast mode's signal gain per label instead, unguided; --write records the "
                                "gains and sets those labels' fast-mode guidance to 0")
    calibrate.add_argument("--mode", choices=("fast", "paper"), default="fast",
                           help="sampler mode to calibrate (default fast; paper mode keeps its own table in "
                                "the card, and costs ~100x more per sample)")
    calibrate.add_argument("--split", choices=("train", "test"), default="train",
                           help="the corpus split to measure on (default train; test: the people of a corpus "
                                "built with `data build --train-from`, unseen by the model and not the held-out set)")
    calibrate.add_argument("--out", type=Path, default=None, help="report folder (default reports/)")
    calibrate.add_argument("--write", action="store_true", help="record the chosen weights in the model's card")
    calibrate.add_argument("--labels", default=None,
                           help="comma-separated labels to measure (default all); with --write their weights "
                                "replace those in the card's table, the others stay")
    calibrate.set_defaults(func=run_calibrate_guidance)

    baselines = subparsers.add_parser("baselines", help="the papers' baselines (LSTM + spiral decoder, PCA)")
    actions = baselines.add_subparsers(dest="action", required=True)
    train = actions.add_parser("train", help="train baselines on the corpus; checkpoints go to data/checkpoints")
    train.add_argument("which", choices=("lstm", "pca", "all"), help="lstm, pca (needs lstm) or all")
    train.add_argument("--corpus", type=Path, default=None, help="corpus folder (default data/corpus)")
    train.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder (default data/checkpoints)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=40, help="LSTM + spiral decoder epochs")
    train.add_argument("--batch", type=int, default=8, help="sequences per batch")
    train.add_argument("--threads", type=int, default=1,
                       help="torch threads (default 1: small layers gain little from more, and on a "
                            "shared machine extra threads mostly spin)")
    train.set_defaults(func=run_train)


def _load(corpus_dir: Path | None):
    from animateme.evaluation.corpus import load_corpus
    from animateme_blender.core.template import Template

    corpus = load_corpus(corpus_dir or paths.corpus_dir())
    template = Template.load(corpus.template_path)
    template.check_fingerprint(corpus.fingerprint, f"the corpus at {corpus.directory}")
    return corpus, template


def _load_model(model: Path | None, template):
    """(path, ONNX runtime) of --model (default the shipped one), refused with what to do if missing."""
    from animateme_blender.core.sample.runtime import load_runtime

    model_path = Path(model or paths.models_dir() / "animateme.onnx")
    if not model_path.is_file():
        raise AnimateMeError(f"no trained model at {model_path}: run `animateme train` and `animateme export` first")
    return model_path, load_runtime(model_path, template)


def run_eval(args: argparse.Namespace) -> int:
    from animateme.evaluation import pictures, report
    from animateme.evaluation.generators import EvalContext, parse_names
    from animateme.evaluation.runner import EvalSettings, evaluate

    import torch

    names = parse_names(args.models)  # an unknown name fails before any loading
    if args.per_label is not None and args.per_label < 1:
        raise AnimateMeError(f"--per-label must be at least 1, got {args.per_label}")
    if args.best_of < 1 or args.best_of_per_label < 1 or args.feature_networks < 1:
        raise AnimateMeError("--best-of, --best-of-per-label and --feature-networks must be at least 1")
    torch.set_num_threads(args.threads)
    corpus, template = _load(args.corpus)
    if args.train_missing:
        train_missing(names, corpus, template, args.checkpoints)
    options = {key: value for key, value in (("steps", args.steps), ("mode", args.mode),
                                             ("temperature", args.variation)) if value is not None}
    options.update(_guidance_options(args))
    context = EvalContext(corpus, template, args.checkpoints, args.model, options)
    settings = EvalSettings(seed=args.seed, best_of=args.best_of, quick=args.quick, per_label=args.per_label,
                            best_of_per_label=args.best_of_per_label, dense_face=not args.no_dense_face,
                            feature_networks=args.feature_networks)
    result = evaluate(context, names, settings)
    out = args.out or paths.reports_dir()
    figures = result.figures
    command = "animateme " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "animateme eval"
    figures["command"] = command
    made = {}
    if not args.no_pictures:
        test = corpus.test
        truth = test.deform[result.indices]
        made["per_frame"] = pictures.per_frame_plot(figures, out / "eval_per_frame_error.png")
        made["heatmap"] = pictures.error_heatmaps(result.outputs, truth, template.vertices,
                                                  template.faces, out / "eval_heatmap.png")
        made["strips"] = pictures.expression_strips(
            result.outputs, truth, test.neutral[result.indices], test.label[result.indices],
            corpus.label_names, template.faces, out, landmarks=template.landmarks)
    figures["pictures"] = [str(p.name) for key, p in made.items() if key != "strips" and p] + \
        [p.name for p in made.get("strips", [])]
    report.write_json(figures, out / "eval.json")
    report.write_markdown(figures, made, out / "eval.md", command)
    for name, scores in figures["generators"].items():
        print(f"{name:>10}: accuracy {100 * scores['classification']['accuracy']:6.2f} %  "
              f"Fréchet {scores['frechet_distance']:.2f}  P/R {scores['precision']:.2f}/{scores['recall']:.2f}  "
              f"error {scores['per_vertex_error']:.3f} (best of {figures['settings']['best_of']} "
              f"{scores['best_of_n_error']:.3f}) mm  amplitude {scores['amplitude_ratio']:.2f}  "
              f"roughness {scores['roughness_ratio']:.2f}  diversity ratio {scores['diversity_ratio']:.2f}")
    print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")
    return 0


def run_eval_faces(args: argparse.Namespace) -> int:
    import json

    import torch

    from animateme import render
    from animateme.evaluation import real_faces
    from animateme.evaluation.classifier import train_classifier
    from animateme.evaluation.runner import display_path
    from animateme.evaluation.variety import apex_amplitude
    from animateme_blender.core.sample.settings import SamplingSettings

    if args.seeds < 1 or args.classifiers < 1:
        raise AnimateMeError(f"--seeds and --classifiers must be at least 1, got {args.seeds} and {args.classifiers}")
    torch.set_num_threads(args.threads)
    corpus, template = _load(args.corpus)
    model_path, runtime = _load_model(args.model, template)
    labels = corpus.label_names
    if tuple(runtime.labels) != tuple(labels):
        raise AnimateMeError(f"the model's labels {runtime.labels} are not the corpus's {labels}: use a matching corpus")
    classifiers = [train_classifier(corpus.train.deform, corpus.train.label, len(labels), seed=seed)
                   for seed in range(args.classifiers)]
    options = {} if args.variation is None else {"temperature": args.variation}
    options.update(_guidance_options(args))
    takes = real_faces.reference_takes(corpus.test, labels)
    people = corpus.test.deform[takes]
    people_read = real_faces.read_takes(people, classifiers, labels)
    settings = SamplingSettings.for_runtime(runtime, **options)
    runs = [real_faces.run_face(face, runtime, classifiers, labels, args.seeds, settings, template.landmarks,
                                people=people)
            for face in real_faces.faces_to_try(template)]
    out = args.out or paths.reports_dir()
    picture = render.save_png(real_faces.grid(runs), out / "eval_real_faces.png")
    # The procedural head is ours (committed); the real meshes' renders are not (see .gitignore).
    seed_pictures = [render.save_png(real_faces.seeds_grid(run), out / f"eval_seeds_{run.face.name}.png")
                     for run in runs]
    figures = {"model": str(model_path.name), "corpus_fingerprint": corpus.corpus_fingerprint,
               "seeds": args.seeds, "classifiers": args.classifiers, "faces": real_faces.summary(runs),
               "people": {label: {"test_take": take, "read_as": read, "apex_mm": float(mm)}
                          for label, take, read, mm in zip(labels, takes, people_read,
                                                           apex_amplitude(people))}}
    read_right = real_faces.clips_read_right(figures["faces"])
    (out / "eval_real_faces.json").write_text(json.dumps(figures, indent=1) + "\n")
    lines = ["# Expressions on real faces", "",
             f"`animateme eval-faces --seeds {args.seeds} --classifiers {args.classifiers}"
             f"{'' if args.variation is None else f' --variation {args.variation:g}'}"
             f"{_guidance_flags(args)}`: the model "
             f"({display_path(model_path)}, fast mode) plays "
             f"each label on faces the face model never made; {args.classifiers} classifiers trained on the corpus's "
             "training ground truth with different seeds each label the template motion. Cells: share of the "
             "(classifier, seed) readings that name the intended label, and the mean probability of it.", "",
             "Clips read as intended, per classifier: "
             + ", ".join(f"{right} of {total}" for right, total in read_right) + ".", "",
             "| Label | " + " | ".join(figures["faces"]) + " |", "|---" * (1 + len(figures["faces"])) + "|"]
    for label in labels:
        cells = [f"{face['labels'][label]['recognised']:.2f} ({face['labels'][label]['probability_of_intended']:.2f})"
                 for face in figures["faces"].values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Beside the seeds, each face also carries one held-out person's take of each label (the "
              "test take at the 90th percentile of its label's apex amplitude, as the model plays a label at the "
              "90th percentile of its strength; the classifiers read the template motion, so their verdict is the "
              "same on every face): "
              + ", ".join(f"{label} (take {entry['test_take']}) read as "
                          + ("intended by all" if all(r == label for r in entry["read_as"])
                             else "/".join(entry["read_as"]))
                          for label, entry in figures["people"].items()) + "."]
    lines += ["", "How far each label moves (the mean vertex displacement at the apex on the template, mm): the "
              "model's seeds on each face, and the person's take:", "",
              "| Label | " + " | ".join(figures["faces"]) + " | person's take |", "|---" * (2 + len(figures["faces"])) + "|"]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{face['labels'][label]['apex_mm']:.2f}"
                                                  for face in figures["faces"].values())
                     + f" | {figures['people'][label]['apex_mm']:.2f} |")
    lines += ["", "Registration of each face: " + "; ".join(f"{n}: {f['fit']}" for n, f in figures["faces"].items()),
              "", f"The apex grid is written beside this file as `{picture.name}`, and one picture per face "
              "with the seeds side by side and the person's take last (" + ", ".join(f"`{p.name}`" for p in seed_pictures) + "); only "
              "the procedural head's is committed: the others render the shared real meshes.", ""]
    (out / "eval_real_faces.md").write_text("\n".join(lines))
    for name, face in figures["faces"].items():
        print(f"{name}: " + ", ".join(f"{label} {face['labels'][label]['recognised']:.2f}" for label in labels))
    print(f"wrote {picture}, {out / 'eval_real_faces.json'} and {out / 'eval_real_faces.md'}")
    return 0


def run_eval_modes(args: argparse.Namespace) -> int:
    import json

    from animateme.evaluation import modes
    from animateme.evaluation.report import guidance_words
    from animateme_blender.core.sample.settings import card_sampling, fast_defaults

    if min(args.per_label, args.seeds, args.frames) < 1:
        raise AnimateMeError("--per-label, --seeds and --frames must be at least 1")
    corpus, template = _load(args.corpus)
    model_path, runtime = _load_model(args.model, template)
    options = card_sampling(runtime) | _guidance_options(args)
    figures = modes.compare_modes(corpus, runtime, args.per_label, args.seeds, args.frames, options=options)
    command = "animateme " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    figures.update(model=model_path.name, command=command, sampling=options)
    out = args.out or paths.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "sampler_modes.json").write_text(json.dumps(figures, indent=1) + "\n")
    guided = guidance_words(options)
    fast_temperature = options.get("fast_temperature", fast_defaults(runtime.schedule)["temperature"])
    (out / "sampler_modes.md").write_text(modes.markdown(figures, corpus.label_names, str(model_path), command)
                                          + f"\nBoth modes sampled with {guided}, output smoothing "
                                            f"{options['smoothing']:g}; fast mode at temperature "
                                            f"{fast_temperature:g}, paper mode at 1.\n")
    for mode, scores in figures["modes"].items():
        print(f"{mode:>5}: amplitude ratio {scores['amplitude_ratio']:.2f} ("
              + ", ".join(f"{k} {v:.2f}" for k, v in scores["amplitude_ratio_by_expression"].items())
              + f"), error {scores['error_mm']:.3f} mm, {scores['seconds_per_sample']:.1f} s/sample")
    print(f"fast / paper amplitude {figures['fast_over_paper']['amplitude']:.3f}; "
          f"wrote {out / 'sampler_modes.md'}")
    return 0


def run_eval_regions(args: argparse.Namespace) -> int:
    import json

    from animateme.evaluation import regions
    from animateme.evaluation.generators import EvalContext, diffusion, ground_truth

    if args.per_label < 1:
        raise AnimateMeError("--per-label must be at least 1")
    corpus, template = _load(args.corpus)
    model_path, _ = _load_model(args.model, template)
    mode = {"mode": "ddpm" if args.mode == "paper" else "ddim"}
    context = lambda options: EvalContext(corpus, template, model_path=model_path, diffusion_options=options)  # noqa: E731
    generators = {"gt": ground_truth(context({})), "model": diffusion(context(_guidance_options(args) | mode))}
    if args.unguided:
        generators["unguided"] = diffusion(context({"guidance": 0.0, "guidance_by_label": {},
                                                    "paper_guidance_by_label": {}, "fast_gain_by_label": {}} | mode))
    results = regions.compare(generators, corpus.test, corpus.label_names, template.landmarks, args.per_label,
                              progress=lambda what: print(what, file=sys.stderr, flush=True),
                              apex_only=("model", "unguided"))
    command = "animateme " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = args.out or paths.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_regions.json").write_text(json.dumps({"command": command, "model": model_path.name,
                                                       "labels": results}, indent=1) + "\n")
    text = regions.markdown(results, command)
    (out / "eval_regions.md").write_text(text)
    print(text)
    return 0


def train_missing(names: list[str], corpus, template, checkpoints: Path | None) -> None:
    """Baselines asked for but never trained: train them now, as `baselines train` would."""
    from animateme.baselines import training

    for kind in [name for name in training.BASELINES if name in names or (name == "lstm" and "pca" in names)]:
        path = training.checkpoint_path(kind, checkpoints)
        if path.is_file():
            continue
        if kind == "lstm":
            checkpoint = training.train_lstm(corpus, template)
        else:
            checkpoint = training.train_pca(corpus, training.load_checkpoint("lstm", template.fingerprint, checkpoints))
        training.save_checkpoint(checkpoint, path)
        print(f"wrote {path}")


def run_train(args: argparse.Namespace) -> int:
    import torch

    from animateme.baselines import training

    corpus, template = _load(args.corpus)
    torch.set_num_threads(args.threads)
    if args.which in ("lstm", "all"):
        checkpoint = training.train_lstm(corpus, template, seed=args.seed, epochs=args.epochs, batch=args.batch)
        path = training.checkpoint_path("lstm", args.checkpoints)
        training.save_checkpoint(checkpoint, path)
        print(f"wrote {path}")
    if args.which in ("pca", "all"):
        lstm = training.load_checkpoint("lstm", template.fingerprint, args.checkpoints)
        checkpoint = training.train_pca(corpus, lstm, seed=args.seed)
        path = training.checkpoint_path("pca", args.checkpoints)
        training.save_checkpoint(checkpoint, path)
        print(f"wrote {path}")
    return 0


def _calibrated_labels(text: str | None, names) -> list[str]:
    if not text:
        return list(names)
    labels = [label.strip() for label in text.split(",") if label.strip()]
    unknown = [label for label in labels if label not in names]
    if unknown or not labels:
        raise AnimateMeError(f"--labels takes labels among {', '.join(names)}, got {text!r}")
    return labels


def run_calibrate_guidance(args: argparse.Namespace) -> int:
    import json

    from animateme.diffusion.export import update_sampling
    from animateme.evaluation import calibration
    from animateme_blender.core.sample.settings import card_sampling

    knob = "gain" if args.gain else "guidance"
    default = calibration.GAINS if args.gain else calibration.WEIGHTS
    try:
        weights = sorted(float(w) for w in args.weights.split(",")) if args.weights else list(default)
    except ValueError:
        raise AnimateMeError(f"--weights takes comma-separated numbers, got {args.weights!r}") from None
    if args.gain and args.mode == "paper":
        raise AnimateMeError("--gain is fast mode's: paper mode samples the signal as given")
    if min(args.per_label, args.seeds) < 1 or len(weights) < 2:
        raise AnimateMeError("--per-label and --seeds must be at least 1, and --weights needs two weights or more")
    corpus, template = _load(args.corpus)
    model_path, runtime = _load_model(args.model, template)
    card = card_sampling(runtime)
    if args.write and args.mode == "paper" and not card.get("guidance_by_label"):
        raise AnimateMeError("calibrate fast mode first (`calibrate-guidance --write`): the card's paper-mode "
                             "table goes beside its fast-mode one")
    options = {"guidance_kind": card["guidance_kind"], "guidance_rescale": card["guidance_rescale"],
               "smoothing": card["smoothing"], "guidance_kind_by_label": card.get("guidance_kind_by_label", {})}
    labels = _calibrated_labels(args.labels, corpus.label_names)
    table_key = "paper_guidance_by_label" if args.mode == "paper" else "guidance_by_label"
    if args.write and not args.gain and len(labels) < len(corpus.label_names) and not card.get(table_key):
        raise AnimateMeError(f"--labels with --write updates the card's {args.mode}-mode table, and it has none: "
                             "calibrate every label first")
    figures = calibration.measure(getattr(corpus, args.split), runtime, corpus.label_names, weights,
                                  args.per_label, args.seeds, options, mode=args.mode, only=labels, knob=knob)
    figures["split"] = args.split
    chosen = calibration.reached_weights(figures)
    command = "animateme " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = args.out or paths.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = ("gain" if args.gain else "guidance") + "_calibration" + ("_paper" if args.mode == "paper" else "")
    (out / f"{stem}.json").write_text(
        json.dumps(figures | {"chosen": chosen, "model": model_path.name, "options": options}, indent=1) + "\n")
    text = calibration.markdown(figures, chosen, command)
    (out / f"{stem}.md").write_text(text)
    print(text)
    calibration.choose(figures)     # raises after the table above is written when a label falls short
    if args.write and args.gain:
        weights_now = card.get("guidance_by_label") or {name: card["guidance"] for name in corpus.label_names}
        update_sampling(model_path, fast_gain_by_label=(card.get("fast_gain_by_label") or {}) | chosen,
                        guidance_by_label=weights_now | {name: 0.0 for name in chosen})
        print(f"recorded in {model_path.with_suffix('.json')}: {', '.join(chosen)} sampled unguided at those gains")
    elif args.write:
        table = (card.get(table_key) or {}) | chosen          # the labels not measured keep their weight
        changes = ({"paper_guidance_by_label": table} if args.mode == "paper" else
                   {"guidance": round(sum(table.values()) / len(table), 3), "guidance_by_label": table})
        update_sampling(model_path, **changes)
        print(f"recorded in {model_path.with_suffix('.json')}")
    return 0
