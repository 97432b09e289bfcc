"""Loading the corpus (`animateme data build`): train/test splits beside template.npz.

Only the keys of the corpus contract are read; the corpus fingerprint (a hash of the split files)
goes into every report so each figure can be traced to the data it was measured on.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

SPLIT_KEYS = ("neutral", "deform", "label", "label_names", "progression", "subject")


@dataclass
class Split:
    """One split of the corpus: S sequences of K frames over V template vertices, mm."""

    neutral: np.ndarray      # (S,V,3)
    deform: np.ndarray       # (S,K,V,3) displacement from the subject's neutral
    label: np.ndarray        # (S,) int
    label_names: tuple[str, ...]
    progression: np.ndarray  # (S,K) in [0,1]
    subject: np.ndarray      # (S,)
    fingerprint: str         # the template fingerprint the split was built on

    def __len__(self) -> int:
        return len(self.label)

    @property
    def frames(self) -> int:
        return self.deform.shape[1]

    def mix(self, index: int) -> np.ndarray:
        """(C,) one-hot label mix of sequence `index`."""
        mix = np.zeros(len(self.label_names), dtype=np.float32)
        mix[int(self.label[index])] = 1.0
        return mix

    def signal(self) -> np.ndarray:
        """(S,K,C) expression signal e_k = p_k * onehot(label) of every sequence."""
        onehot = np.eye(len(self.label_names), dtype=np.float32)[self.label]
        return self.progression[:, :, None].astype(np.float32) * onehot[:, None, :]

    def subset(self, indices: np.ndarray) -> "Split":
        indices = np.asarray(indices)
        return Split(self.neutral[indices], self.deform[indices], self.label[indices],
                     self.label_names, self.progression[indices], self.subject[indices],
                     self.fingerprint)


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


def load_split(path: Path) -> Split:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in SPLIT_KEYS if key not in data]
        if missing:
            raise AnimateMeError(
                f"corpus file {path} lacks {', '.join(missing)}: rebuild it with `animateme data build`"
            )
        fingerprint = str(data["fingerprint"]) if "fingerprint" in data else ""
        return Split(
            neutral=data["neutral"].astype(np.float32),
            deform=data["deform"].astype(np.float32),
            label=data["label"].astype(np.int64),
            label_names=tuple(str(name) for name in data["label_names"]),
            progression=data["progression"].astype(np.float32),
            subject=data["subject"].astype(np.int64),
            fingerprint=fingerprint,
        )


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
    path = source / "train.npz"
    if not path.is_file():
        raise AnimateMeError(f"no training split at {path}: run `animateme data build` first")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
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
