"""`animateme train`, `animateme export`, `animateme bench`: the denoiser's life cycle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from animateme.paths import corpus_dir, models_dir, reports_dir, template_path
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.guidance import GUIDANCE_KINDS


def _add_run_dir(parser, what: str) -> None:
    parser.add_argument("--run-dir", "--run", dest="run", type=Path, default=Path("runs/animateme"), help=what)


def add_commands(subparsers) -> None:
    train = subparsers.add_parser("train", help="train the diffusion denoiser (resumes the run folder)")
    train.add_argument("--corpus", type=Path, default=None, help="train.npz (default: data/corpus/train.npz)")
    train.add_argument("--template", type=Path, default=None, help="template.npz (default: data/template.npz)")
    _add_run_dir(train, "run folder: checkpoint + log")
    train.add_argument("--steps", type=int, default=20_000, help="total optimiser steps (a resumed run continues to this)")
    train.add_argument("--batch", type=int, default=32, help="frames per step (per process under torchrun)")
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--ema", type=float, default=0.995, help="EMA decay of the exported weights")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy machine)")
    train.add_argument("--minutes", type=float, default=None, help="stop after this much wall time (checkpointed)")
    train.add_argument("--channels", default="32,32,48,48,64,64", help="widths per spiral layer")
    train.add_argument("--spiral-lengths", default="9,9,12,12,12,12", help="spiral prefix length per layer")
    train.add_argument("--use-neutral", action="store_true", help="also feed the subject's neutral geometry")
    train.add_argument("--snr-shift", type=float, default=100.0,
                       help="divide the linear schedule's SNR by this (1: the plain DDPM schedule)")
    train.add_argument("--t-focus", type=int, default=500, help="3 in 4 training steps draw t <= this")
    train.add_argument("--prediction", choices=("v", "x0"), default="v", help="what the head predicts (default v)")
    train.add_argument("--neutral-swap", type=float, default=0.0,
                       help="share of frames shown another training subject's neutral, 0..1 (breaks the "
                            "face-to-variant shortcut; see diffusion/examples.py; default 0)")
    train.add_argument("--upper-face-weight", type=float, default=1.0,
                       help="loss weight of the vertices above the nose's middle (brows, eyes) over the "
                            "rest, > 0; needs the template's landmarks (default 1: every vertex alike)")
    train.add_argument("--branch-at", type=int, default=0,
                       help="train the steps t <= this on the states Algorithm 1 hands the network after "
                            "its frames branch from e_0 (the samplers branch at 400; default 0: off)")
    train.add_argument("--init-from", type=Path, default=None,
                       help="start a new run from this exported model's weights (ONNX + its card), e.g. "
                            "to fine-tune on a larger corpus; ignored when the run folder has a checkpoint")
    train.add_argument("--learnt-guidance", action="store_true",
                       help="label dropout (a null label) and model guidance: the network learns the "
                            "guided prediction for a weight w it is given, so sampling is one call per step "
                            "(diffusion/examples.py); export picks w with --learnt-guidance-weight")
    train.add_argument("--label-dropout", type=float, default=0.1,
                       help="share of frames trained on the null label (with --learnt-guidance; default 0.1)")
    train.add_argument("--guidance-max", type=float, default=3.0,
                       help="guided frames draw w from U[0, this] (with --learnt-guidance; default 3)")
    train.add_argument("--guidance-start", type=int, default=0,
                       help="steps trained at w = 0 before the guided targets start, so the null label "
                            "learns first (with --learnt-guidance; default 0)")
    train.add_argument("--val-subjects", type=int, default=0,
                       help="training identities kept out of training for choosing settings "
                            "(runs/<name>/validation.json; default 0)")
    train.add_argument("--warmup", type=int, default=500, help="linear learning-rate warm-up steps")
    train.add_argument("--no-global-context", action="store_true",
                       help="spiral layers only, without the per-layer mean over all vertices")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=run_train)

    export = subparsers.add_parser("export", help="export a trained run to ONNX + JSON card (+ training curve)")
    _add_run_dir(export, "run folder or checkpoint.pt")
    export.add_argument("--template", type=Path, default=None)
    export.add_argument("--out", type=Path, default=None, help="ONNX path (default: models/animateme.onnx)")
    export.add_argument("--curve", type=Path, default=None,
                        help="training curve PNG (default: reports/training_curve.png for the shipped model, beside --out otherwise)")
    export.add_argument("--guidance", type=float, default=0.0,
                        help="label guidance weight the card asks the sampler to use (default 0: none)")
    export.add_argument("--guidance-kind", choices=GUIDANCE_KINDS, default="neutral",
                        help="the contrast that guidance pushes away from (see core/sample/sampler.py)")
    export.add_argument("--guidance-rescale", type=float, default=0.0,
                    help="bring each guided prediction back towards its unguided size, 0..1 "
                         "(core/sample/sampler.py; default 0: none)")
    export.add_argument("--smoothing", type=float, default=0.0,
                        help="output low-pass strength the card asks for (core/sample/smoothing.py; default 0: none)")
    export.add_argument("--learnt-guidance-weight", type=float, default=None,
                        help="for a model trained with --learnt-guidance: the guidance weight w baked into the "
                             "graph (the sampler then runs unguided, one call per step; default 0)")
    export.add_argument("--guidance-in-graph", action="store_true",
                        help="with --learnt-guidance-weight: compute classifier-free guidance against the null "
                             "label inside the graph (one call per step on a doubled batch) instead of the "
                             "learnt guided prediction")
    export.add_argument("--fast-temperature", type=float, default=None,
                        help="fast mode's sampling temperature the card asks for, in [0, 1] (default: the "
                             "sampler's, 1)")
    export.set_defaults(func=run_export)

    sampling = subparsers.add_parser(
        "set-sampling", help="record in a model's card the label guidance and output smoothing it samples with")
    sampling.add_argument("--model", type=Path, default=None, help="ONNX model (default: models/animateme.onnx)")
    sampling.add_argument("--guidance", type=float, required=True, help="weight w >= 0 (0: none)")
    sampling.add_argument("--guidance-kind", choices=GUIDANCE_KINDS, default="neutral",
                          help="the contrast that guidance pushes away from (see core/sample/sampler.py)")
    sampling.add_argument("--guidance-kind-by-label", default=None, metavar="LABEL=KIND,...",
                          help="labels guided against another contrast than --guidance-kind, e.g. "
                               "disgust=neutral,angry=neutral, or against a mixture of contrasts, "
                               "surprise=blend:0.5+neutral:0.5 (default: none)")
    sampling.add_argument("--guidance-rescale", type=float, default=0.0,
                      help="bring each guided prediction back towards its unguided size, 0..1 "
                           "(core/sample/sampler.py; default 0: none)")
    sampling.add_argument("--smoothing", type=float, default=0.0,
                          help="output low-pass strength (core/sample/smoothing.py; default 0: none)")
    sampling.add_argument("--fast-temperature", type=float, default=None,
                          help="fast mode's sampling temperature in [0, 1] (measure it with `animateme eval "
                               "--variation`; default: the sampler's, 1); paper mode keeps 1")
    sampling.add_argument("--guidance-by-label", default=None, metavar="LABEL=W,...",
                          help="fast mode's guidance weight for the labels named (the others keep the card's "
                               "measured weight), e.g. surprise=0,fear=0 (default: the card's table)")
    sampling.add_argument("--fast-gain-by-label", default=None, metavar="LABEL=G,...",
                          help="fast mode's signal gain per label, 1 for the labels not named, e.g. "
                               "surprise=1.6,fear=1.6; '' for none (default: the card's)")
    sampling.set_defaults(func=run_set_sampling)

    val = subparsers.add_parser(
        "val-set", help="write a run's validation identities (--val-subjects) as a corpus folder for `animateme eval`")
    _add_run_dir(val, "run folder")
    val.add_argument("--out", type=Path, required=True, help="corpus folder to write (test.npz + links)")
    val.add_argument("--judge", type=Path, default=None,
                     help="corpus folder whose training split the classifier, feature networks and per-frame "
                          "mean learn from (linked; default data/corpus)")
    val.set_defaults(func=run_val_set)

    sweep = subparsers.add_parser(
        "sweep-guidance", help="apex amplitude per label on a run's validation set for several learnt-guidance weights")
    _add_run_dir(sweep, "run folder")
    sweep.add_argument("--corpus", type=Path, required=True, help="validation corpus folder (`animateme val-set`)")
    sweep.add_argument("--template", type=Path, default=None)
    sweep.add_argument("--weights", default="0,0.5,1,1.5,2", help="comma-separated w")
    sweep.add_argument("--per-label", type=int, default=12, help="validation sequences per label")
    sweep.add_argument("--seeds", type=int, default=1)
    sweep.add_argument("--in-graph", action="store_true", help="classifier-free guidance in the graph instead")
    sweep.add_argument("--temperature", type=float, default=None, help="fast mode's temperature (default 1)")
    sweep.add_argument("--threads", type=int, default=1)
    sweep.add_argument("--out", type=Path, default=None, help="report path without suffix (default runs/<run>/sweep)")
    sweep.set_defaults(func=run_sweep)

    bench = subparsers.add_parser("bench", help="time 40-frame generation: paper DDPM, fast DDIM, torch eager")
    bench.add_argument("--model", type=Path, default=None, help="ONNX model (default: models/animateme.onnx)")
    bench.add_argument("--template", type=Path, default=None)
    bench.add_argument("--frames", type=int, default=40)
    bench.add_argument("--repeats", type=int, default=3, help="fast-mode repetitions (the best is reported)")
    bench.add_argument("--skip-paper", action="store_true", help="skip the slow paper-mode (DDPM) timing")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    bench.add_argument("--record", action="store_true", help="also write this run's figures into reports/performance.md (the one performance table)")
    bench.set_defaults(func=run_bench)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise AnimateMeError(f"expected comma-separated integers, got {text!r}") from None


def run_train(args: argparse.Namespace) -> int:
    from animateme.diffusion.train import TrainConfig, train

    config = TrainConfig(
        corpus=str(args.corpus or corpus_dir() / "train.npz"), template=str(args.template or template_path()),
        run_dir=str(args.run), steps=args.steps, batch=args.batch, lr=args.lr, ema_decay=args.ema,
        seed=args.seed, device=args.device, max_minutes=args.minutes, channels=_ints(args.channels),
        spiral_lengths=_ints(args.spiral_lengths), use_neutral=args.use_neutral, threads=args.threads,
        snr_shift=args.snr_shift, t_focus=args.t_focus, prediction=args.prediction,
        global_context=not args.no_global_context, neutral_swap=args.neutral_swap,
        upper_face_weight=args.upper_face_weight, branch_at=args.branch_at,
        init_from=str(args.init_from) if args.init_from else None, progress=not args.no_progress,
        learnt_guidance=args.learnt_guidance, label_dropout=args.label_dropout,
        guidance_max=args.guidance_max, guidance_start=args.guidance_start, val_subjects=args.val_subjects, warmup=args.warmup,
    )
    checkpoint = train(config)
    print(f"checkpoint: {checkpoint}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from animateme.diffusion.export import export, plot_training_curve

    out = args.out or models_dir() / "animateme.onnx"
    card = export(args.run, args.template or template_path(), out, args.guidance, args.guidance_kind, args.smoothing,
                  args.guidance_rescale, learnt_guidance=args.learnt_guidance_weight,
                  fast_temperature=args.fast_temperature, guidance_in_graph=args.guidance_in_graph)
    run_dir = args.run if args.run.is_dir() else args.run.parent
    # The committed curve is the shipped model's: a candidate exported elsewhere draws its own beside it.
    default_curve = reports_dir() / "training_curve.png" if args.out is None else out.with_name("training_curve.png")
    curve = plot_training_curve(run_dir, args.curve or default_curve)
    parity = card["parity"]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}; curve {curve}")
    print(f"parity torch vs onnxruntime: epsilon max abs {parity['epsilon_max_abs_diff']:.2e} "
          f"(rel {parity['epsilon_max_rel_diff']:.1e}), x0 max abs {parity['x0_max_abs_diff']:.2e} "
          f"(rel {parity['x0_max_rel_diff']:.1e})")
    return 0


def run_set_sampling(args: argparse.Namespace) -> int:
    from animateme.diffusion.export import update_sampling
    from animateme_blender.core.sample.runtime import read_card
    from animateme_blender.core.sample.guidance import label_guidance_kinds
    from animateme_blender.core.sample.settings import card_settings

    model = args.model or models_dir() / "animateme.onnx"
    card = read_card(model)
    labels = card["labels"]
    kinds = _label_kinds(args.guidance_kind_by_label, labels)
    # Per-label weights were measured for the guidance kinds (`calibrate-guidance`): a new default
    # kind drops them; a new kind for some labels keeps them, and says which to measure again.
    before = card_settings(card)
    same_kind = before["guidance_kind"] == args.guidance_kind
    old_kinds = label_guidance_kinds(labels, before["guidance_kind"], before.get("guidance_kind_by_label"))
    new_kinds = label_guidance_kinds(labels, args.guidance_kind, kinds)
    moved = [label for label, old, new in zip(labels, old_kinds, new_kinds) if old != new]
    changes = {} if same_kind else {"guidance_by_label": None, "paper_guidance_by_label": None}
    if args.guidance_by_label is not None:
        named = _label_numbers(args.guidance_by_label, labels, "--guidance-by-label")
        table = (before.get("guidance_by_label") if same_kind else None) or {}
        if set(labels) - set(table) - set(named):
            raise AnimateMeError("--guidance-by-label: the card has no per-label weights to keep, so name every "
                                 f"label ({', '.join(labels)})")
        changes["guidance_by_label"] = table | named
    if args.fast_gain_by_label is not None:
        changes["fast_gain_by_label"] = _label_numbers(args.fast_gain_by_label, labels, "--fast-gain-by-label") or None
    card = update_sampling(model, guidance=args.guidance, guidance_kind=args.guidance_kind,
                           smoothing=args.smoothing, guidance_rescale=args.guidance_rescale,
                           fast_temperature=args.fast_temperature, guidance_kind_by_label=kinds or None,
                           **changes)
    print(f"{model.with_suffix('.json')}: sampling {card['sampling']}")
    tables = [key for key in ("guidance_by_label", "paper_guidance_by_label") if card["sampling"].get(key)]
    if moved and tables:
        named = ",".join(moved)
        print(f"the per-label weights of {named} were measured for another guidance kind: measure them again, "
              f"`animateme calibrate-guidance --model {model} --labels {named} --write`"
              + (" and the same with `--mode paper`" if "paper_guidance_by_label" in tables else ""))
    return 0


def _label_kinds(text: str | None, labels) -> dict:
    """'disgust=neutral,angry=neutral' -> {label: kind} (the card keeps those that differ from the
    default kind: export.sampling_entry)."""
    from animateme_blender.core.sample.guidance import check_guidance

    def checked(kind: str) -> str:
        check_guidance(0.0, kind)
        return kind
    return _label_pairs(text, labels, "--guidance-kind-by-label", "KIND", checked)


def _label_numbers(text: str, labels, option: str) -> dict:
    """'surprise=0,fear=0.5' -> {label: number} (each checked where it is written: export.sampling_entry)."""
    return _label_pairs(text, labels, option, "NUMBER", float)


def _label_pairs(text: str | None, labels, option: str, value_name: str, read) -> dict:
    """'LABEL=VALUE,...' -> {label: read(VALUE)}; a pair without '=', an unknown label or a value
    `read` cannot parse (ValueError) is refused with the option's name."""
    pairs = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        label, sep, value = (part.strip() for part in item.partition("="))
        wrong = AnimateMeError(f"{option} takes LABEL={value_name} pairs with labels among {', '.join(labels)}, "
                               f"got {item!r}")
        if not sep or label not in labels:
            raise wrong
        try:
            pairs[label] = read(value)
        except ValueError:
            raise wrong from None
    return pairs


def run_val_set(args: argparse.Namespace) -> int:
    from animateme.diffusion.train import VALIDATION
    from animateme.diffusion.validation import write_validation_set

    path = args.run / VALIDATION
    if not path.is_file():
        raise AnimateMeError(f"{path} not found: train the run first (with --val-subjects N)")
    split = json.loads(path.read_text())
    summary = write_validation_set(split["corpus"], split["identities"], args.out, args.judge or corpus_dir())
    print(f"{args.out}: {summary['sequences']} sequences of {len(summary['identities'])} validation identities")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    import sys

    import torch

    from animateme.diffusion import sweep

    torch.set_num_threads(max(1, args.threads))
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    result = sweep.sweep(args.run, args.corpus, args.template or template_path(), weights, args.per_label,
                         args.seeds, args.in_graph, args.temperature)
    out = args.out or args.run / ("sweep-cfg" if args.in_graph else "sweep")
    sweep.write(result, out, "animateme " + " ".join(sys.argv[1:]))
    print(sweep.markdown(result, "animateme " + " ".join(sys.argv[1:])))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from animateme.diffusion.bench import bench, format_report

    report = bench(model_path=args.model or models_dir() / "animateme.onnx",
                   template_path=args.template or template_path(),
                   frames=args.frames, repeats=args.repeats, paper=not args.skip_paper)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    if args.record:
        from animateme.diffusion.bench import performance_rows
        from animateme.performance import record

        print(f"wrote {record('sampler', *performance_rows(report))}")
    return 0
