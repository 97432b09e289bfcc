"""`animateme data template | build | preview`: the template face and the synthetic corpus."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from animateme import paths
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.template import Template

PREVIEW_FRAMES = (0, 6, 12, 18, 24, 30, 39)
PREVIEW_VIEW = 25.0  # degrees off the front: shows depth (lips, brows) a straight view flattens


def add_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="build the template face and the synthetic 4D corpus")
    commands = data.add_subparsers(dest="data_command", required=True)

    template = commands.add_parser("template", help="decimate the face model's skin to the template")
    template.add_argument("--face-model", help="ict_facekit.npz or a FaceXModel/ folder (default: $ANIMATEME_FACE_MODEL or ../shared/data/ict-facekit)")
    template.add_argument("--vertices", type=int, default=None, help="template size (default 1000)")
    template.add_argument("--out", type=Path, default=None, help="default: data/template.npz")
    template.set_defaults(func=run_template)

    build = commands.add_parser("build", help="synthesise the 4D expression corpus")
    build.add_argument("--face-model", help="as for `data template`")
    build.add_argument("--quick", action="store_true", help="a small corpus for tests (12 + 4 subjects)")
    build.add_argument("--out", type=Path, default=None, help="default: data/corpus (data/corpus-quick with --quick)")
    build.add_argument("--train-subjects", type=int)
    build.add_argument("--test-subjects", type=int)
    build.add_argument("--sequences-per-label", type=int)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--reach-like", type=Path, default=None,
                       help="a corpus folder whose training split sets what e = 1 means per label (its "
                            "largest apex reach), so a model trained here reads that corpus's curves alike")
    build.add_argument("--train-from", type=Path, default=None,
                       help="keep this corpus's training split (copied) and its meaning of e = 1, and draw "
                            "only new test subjects (--test-subjects, another --seed): more held-out people "
                            "for the models trained on it")
    build.add_argument("--extremeness", choices=("max", "zscore"), default="max",
                       help="max: AnimateMe §1.1 (default); zscore: Potamias et al. eq. 6")
    build.set_defaults(func=run_build)

    validation = commands.add_parser(
        "validation", help="a corpus of training subjects only (some as its test split); the model learnt "
                           "their takes, so it reads kinder there than on new people: to choose sampler "
                           "settings prefer `data build --train-from` with a seed of its own (unseen people)")
    validation.add_argument("--corpus", type=Path, default=None, help="source corpus (default: data/corpus)")
    validation.add_argument("--subjects", type=int, default=30, help="training subjects to judge on (default 30)")
    validation.add_argument("--seed", type=int, default=123, help="which subjects are drawn")
    validation.add_argument("--out", type=Path, default=None, help="default: data/corpus-val")
    validation.set_defaults(func=run_validation)

    preview = commands.add_parser("preview", help="render corpus sequences to a PNG strip and a GIF")
    preview.add_argument("--corpus", type=Path, default=None, help="default: data/corpus")
    preview.add_argument("--split", choices=("train", "test"), default="test")
    preview.add_argument("--out", type=Path, default=None, help="default: reports/corpus")
    preview.add_argument("--size", type=int, default=160, help="pixels per face")
    preview.set_defaults(func=run_preview)


def run_template(args) -> int:
    from animateme.facemodel import load_face_model
    from animateme.template_build import DEFAULT_VERTICES, build_template

    out = args.out or paths.template_path()
    started = time.time()
    template = build_template(load_face_model(args.face_model), args.vertices or DEFAULT_VERTICES)
    template.save(out)
    print(f"template: {template.num_vertices} vertices, {len(template.faces)} triangles, spirals of "
          f"{template.spirals.shape[1]}, fingerprint {template.fingerprint} -> {out} ({time.time() - started:.1f} s)")
    return 0


def run_build(args) -> int:
    from animateme.corpus import (CorpusConfig, build_corpus, build_more_test_subjects, load_programs,
                                  reference_reach)
    from animateme.facemodel import load_face_model

    config = CorpusConfig.quick() if args.quick else CorpusConfig()
    for field in ("train_subjects", "test_subjects", "sequences_per_label"):
        if getattr(args, field) is not None:
            if getattr(args, field) < 1:
                raise AnimateMeError(f"--{field.replace('_', '-')} must be at least 1")
            setattr(config, field, getattr(args, field))
    config.seed, config.extremeness_method = args.seed, args.extremeness
    out = args.out or (paths.data_dir() / "corpus-quick" if args.quick else paths.corpus_dir())
    template = Template.load(paths.template_path())
    model = load_face_model(args.face_model)
    if args.reach_like is not None:
        if args.extremeness != "max":
            raise AnimateMeError("--reach-like scales by the reference's largest reach: use it with --extremeness max")
        labels = load_programs(model.expression_names, config.programs_path).labels
        config.reach_reference = reference_reach(args.reach_like, template, tuple(labels))
    if args.train_from is not None:
        if args.reach_like is not None or args.extremeness != "max":
            raise AnimateMeError("--train-from takes the reference's meaning of e = 1: leave out --reach-like "
                                 "and --extremeness")
        summary = build_more_test_subjects(model, template, out, config, args.train_from)
    else:
        summary = build_corpus(model, template, out, config)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, out)
    return 0


def run_validation(args) -> int:
    from animateme.evaluation.corpus import write_validation_corpus

    out = args.out or paths.data_dir() / "corpus-val"
    made = write_validation_corpus(args.corpus or paths.corpus_dir(), out, args.subjects, args.seed)
    print(f"validation corpus -> {out}: {made['train_sequences']} training sequences, {made['test_sequences']} "
          f"to judge on ({len(made['test_subjects'])} training subjects); judge settings there with "
          f"`animateme eval --corpus {out} --models gt,framemean,diffusion --model <candidate>`")
    return 0


def print_summary(summary: dict, out: Path) -> None:
    print(f"corpus -> {out} in {summary['seconds']} s: {summary['vertices']} vertices x {summary['frames']} frames, "
          f"template {summary['fingerprint']}")
    for split in ("train", "test"):
        s = summary[split]
        print(f"  {split}: {s['sequences']} sequences of {s['subjects']} subjects, {s['megabytes']} MB")
    print("  mean / mean-peak displacement per label (test, mm):")
    for label in summary["labels"]:
        print(f"    {label:9s} {summary['test']['mean_displacement_mm'][label]:6.2f} / "
              f"{summary['test']['mean_peak_displacement_mm'][label]:6.2f}")


def run_preview(args) -> int:
    from animateme import render
    from animateme.splits import split_arrays

    corpus = args.corpus or paths.corpus_dir()
    split = split_arrays(corpus / f"{args.split}.npz",
                         ("label_names", "label", "extremeness", "neutral", "deform", "progression"))
    template = Template.load(corpus / "template.npz")
    out = args.out or paths.reports_dir() / "corpus"
    names = [str(n) for n in split["label_names"]]
    size = (args.size, args.size)
    rows, clips = [], []
    for c, name in enumerate(tqdm(names, desc="preview: labels", unit="label")):
        # The most extreme sequence of each label reads best; frame the face, not the neck.
        candidates = np.flatnonzero(split["label"] == c)
        index = int(candidates[np.argmax(split["extremeness"][candidates])])
        neutral, deform = split["neutral"][index], split["deform"][index]
        frame = face_frame(neutral, template)
        pictures = [render.render_mesh(neutral + deform[k], template.faces, size=size, frame=frame, view=PREVIEW_VIEW)
                    for k in range(len(deform))]
        picked = [render.label(pictures[k], f"{name} k={k} p={split['progression'][index, k]:.2f}")
                  for k in PREVIEW_FRAMES if k < len(pictures)]
        rows.append(render.strip(picked))
        clips.append(pictures)
    sheet = np.concatenate(rows, axis=0)
    png = render.save_png(sheet, out / f"{args.split}_sequences.png")
    grid = [render.strip([clip[k] for clip in clips], columns=3) for k in range(len(clips[0]))]
    # The GIF is megabytes: it goes with the other derived data, not into reports/.
    gif = render.save_gif(grid, paths.data_dir() / "preview" / f"{args.split}_sequences.gif", fps=12)
    print(f"preview -> {png} and {gif}")
    return 0


def face_frame(neutral: np.ndarray, template: Template) -> tuple[np.ndarray, float]:
    """Camera centre and half-extent around the landmarks (brows to chin), with a margin."""
    from animateme import render

    points = neutral[template.landmarks] if len(template.landmarks) else neutral
    centre, extent = render.camera_frame(points)
    return centre, extent * 1.25
