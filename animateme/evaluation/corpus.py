"""Loading the corpus (`animateme data build`): train/test splits beside template.npz.

Each split is read by `animateme.splits` (the contract's keys, its errors); the corpus fingerprint
(a hash of the split files) goes into every report so each figure can be traced to the data it was
measured on.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

from ..splits import Split, load_split, split_arrays


@dataclass
class Corpus:
    directory: Path
    train: Split
    test: Split
    template_path: Path
    fingerprint: str         # template fingerprint shared by both splits
    corpus_fingerprint: str  # sha256[:16] of the split files: which data a report was made on

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.train.label_names


def load_corpus(directory: str | Path) -> Corpus:
    """The corpus at `directory`, checked for presence and for one shared template."""
    directory = Path(directory)
    paths = {name: directory / f"{name}.npz" for name in ("train", "test")}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise AnimateMeError(
            f"no corpus at {directory} (missing {', '.join(missing)}): "
            "run `animateme data build` (or `animateme data build --quick`) first"
        )
    template_path = beside_template(directory)
    if not template_path.is_file():
        raise AnimateMeError(
            f"no template.npz beside the corpus at {directory}: run `animateme data build` first"
        )
    train, test = load_split(paths["train"]), load_split(paths["test"])
    if train.fingerprint != test.fingerprint or train.label_names != test.label_names:
        raise AnimateMeError(
            f"train and test splits in {directory} were built on different templates or labels: "
            "rebuild the corpus with `animateme data build`"
        )
    return Corpus(directory, train, test, template_path, train.fingerprint, corpus_fingerprint(directory))


def beside_template(directory: Path) -> Path:
    """The template a corpus folder was built on: its own template.npz, else its parent's."""
    own = Path(directory) / "template.npz"
    return own if own.is_file() else Path(directory).parent / "template.npz"


def corpus_fingerprint(directory: str | Path) -> str:
    """sha256[:16] of train.npz then test.npz: names the data a report or a model was made from."""
    digest = hashlib.sha256()
    for name in ("train", "test"):
        with open(Path(directory) / f"{name}.npz", "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def write_validation_corpus(source: str | Path, out: str | Path, subjects: int, seed: int = 0) -> dict:
    """A corpus made of `source`'s training split alone: `subjects` training subjects drawn as its
    test split, the others as its training split. Sampler settings (guidance kinds, weights) are
    chosen on it, so the held-out test subjects judge a model without having picked it. (The model
    trained on every training subject, so its figures here are kinder than on held-out people: it
    compares settings of one model, not models.)"""
    source, out = Path(source), Path(out)
    arrays = split_arrays(source / "train.npz")
    people = np.unique(arrays["subject"])
    if not 1 <= subjects < len(people):
        raise AnimateMeError(f"--subjects must lie in 1..{len(people) - 1} (the training split has "
                             f"{len(people)} subjects), got {subjects}")
    held = np.random.default_rng(seed).choice(people, subjects, replace=False)
    test = np.isin(arrays["subject"], held)
    rows = len(test)
    # Per-sequence arrays are cut; the names and the fingerprint are copied whole.
    per_row = {key for key, value in arrays.items()
               if value.ndim and len(value) == rows and key not in ("label_names", "variant_names")}
    out.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", ~test), ("test", test)):
        np.savez(out / f"{name}.npz", **{key: value[keep] if key in per_row else value
                                         for key, value in arrays.items()})
    template = beside_template(source)
    if template.is_file() and template.resolve() != (out / "template.npz").resolve():
        shutil.copyfile(template, out / "template.npz")
    return {"train_sequences": int((~test).sum()), "test_sequences": int(test.sum()),
            "test_subjects": sorted(int(p) for p in held), "source": str(source)}
