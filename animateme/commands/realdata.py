"""`animateme import coma|generic`: turn real 4D expression data into a corpus (see animateme.realdata)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import LABELS


def add_commands(subparsers) -> None:
    group = subparsers.add_parser("import", help="import real 4D expression data (CoMA or generic) as a corpus")
    kinds = group.add_subparsers(dest="kind", required=True)

    coma = kinds.add_parser("coma", help="CoMA layout: ROOT/<subject>/<expression>/<name>.<frame>.ply")
    coma.add_argument("root", type=Path, help="the folder holding one folder per subject")
    coma.add_argument("--mapping", type=Path, required=True,
                      help="CSV of `expression,label` rows (label one of the labels, or `skip`); "
                           "CoMA's expressions are not emotions, so there is no default")
    _common(coma, units="m")
    coma.set_defaults(func=run_coma)

    generic = kinds.add_parser("generic", help="ROOT/<sequence>/<frames>.obj|.ply plus ROOT/labels.csv")
    generic.add_argument("root", type=Path, help="the folder holding one folder per sequence")
    generic.add_argument("--labels-csv", type=Path, default=None,
                         help="sequence,subject,label[,onset,apex,offset,end] (default ROOT/labels.csv)")
    _common(generic, units="mm")
    generic.set_defaults(func=run_generic)


def _common(parser: argparse.ArgumentParser, units: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help="corpus folder to write train/test/template.npz into")
    parser.add_argument("--units", choices=("m", "cm", "mm"), default=units, help=f"units of the meshes (default {units})")
    parser.add_argument("--labels", default=",".join(LABELS), help="comma-separated label set (default the six emotions)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of subjects held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subject split")
    parser.add_argument("--spiral-length", type=int, default=12, help="spiral length L of template.npz")
    parser.add_argument("--reference-vertex", type=int, default=None,
                        help="spiral reference vertex (default the vertex furthest along +Z, the nose tip)")
    parser.add_argument("--extremeness", choices=("max", "zscore"), default="max",
                        help="extremeness factor: AnimateMe's max-normalisation or Potamias et al. eq. 6")


def _labels(args) -> tuple[str, ...]:
    labels = tuple(s.strip().lower() for s in args.labels.split(",") if s.strip())
    if not labels or len(set(labels)) != len(labels):
        raise AnimateMeError(f"--labels must be distinct comma-separated names, got {args.labels!r}")
    return labels


def run_coma(args: argparse.Namespace) -> int:
    from animateme.realdata import load_coma

    with _Bar() as bar:
        data = load_coma(args.root, args.mapping, _labels(args), args.units, progress=bar)
    return _finish(data, args)


def run_generic(args: argparse.Namespace) -> int:
    from animateme.realdata import load_generic

    with _Bar() as bar:
        data = load_generic(args.root, args.labels_csv, _labels(args), args.units, progress=bar)
    return _finish(data, args)


def _finish(data, args) -> int:
    from animateme.realdata import assemble_corpus, summarize, write_corpus

    corpus = assemble_corpus(data, args.test_fraction, args.seed, args.spiral_length,
                             args.reference_vertex, args.extremeness)
    files = write_corpus(args.out, corpus)
    print(json.dumps(summarize(corpus), indent=2))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


class _Bar:
    """A tqdm bar driven by the loaders' progress(fraction, message) callback, opened on first use
    so that an error found before any reading prints nothing but the error."""

    bar = None

    def __enter__(self):
        return self

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, bar_format="import: {percentage:3.0f}%|{bar}| {elapsed} {desc}")
        self.bar.n = int(round(1000 * fraction))
        self.bar.set_description_str(message)  # also redraws the bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
