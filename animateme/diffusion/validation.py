"""The validation set of a run: its held-out training identities as a corpus `animateme eval` reads.

A run trained with `--val-subjects N` keeps N identities of its training corpus out of training
(`runs/<name>/validation.json`). Settings the run leaves open (the guidance weight baked into the
export, which checkpoint) are chosen on those people, never on the held-out set. This writes them as
the test split of a corpus folder; the training split beside it (what the classifier, the feature
networks and the per-frame mean learn from) is another corpus's training split, linked, so a
5.6 GB training corpus is never copied. Rows are read straight from the uncompressed .npz members
(`splits.people_rows`: the whole corpus is never loaded).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

from ..splits import people_rows


def write_validation_set(corpus: str | Path, identities, out: str | Path, judge: str | Path) -> dict:
    """out/test.npz: every sequence of `identities` in `corpus` (a train.npz); out/train.npz and
    out/template.npz: links to `judge`'s (a corpus folder). Returns a summary."""
    corpus, out, judge = Path(corpus), Path(out), Path(judge)
    identities = np.asarray(sorted(int(i) for i in identities), dtype=np.int64)
    if not len(identities):
        raise AnimateMeError("the run kept no validation identities: train it with --val-subjects N")
    for needed in (corpus, judge / "train.npz"):
        if not needed.is_file():
            raise AnimateMeError(f"{needed} not found")
    arrays = people_rows(corpus, identities)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "test.npz", **arrays)
    for name in ("train.npz", "template.npz"):
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        source = (judge / name).resolve()
        if source.is_file():
            os.symlink(source, link)
        elif name == "template.npz" and (corpus.parent / name).is_file():
            shutil.copyfile(corpus.parent / name, link)
    summary = {"corpus": str(corpus), "judge": str(judge), "identities": identities.tolist(),
               "sequences": int(len(arrays["subject"]))}
    (out / "validation.json").write_text(json.dumps(summary) + "\n")
    return summary
