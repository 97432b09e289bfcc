"""The validation set of a run: its held-out training identities as a corpus `animateme eval` reads.

A run trained with `--val-subjects N` keeps N identities of its training corpus out of training
(`runs/<name>/validation.json`). Settings the run leaves open (the guidance weight baked into the
export, which checkpoint) are chosen on those people, never on the held-out set. This writes them as
the test split of a corpus folder; the training split beside it (what the classifier, the feature
networks and the per-frame mean learn from) is another corpus's training split, linked, so a
5.6 GB training corpus is never copied. Rows are read straight from the uncompressed .npz members
(the whole corpus is never loaded).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

PER_SEQUENCE = ("neutral", "deform", "label", "progression", "subject", "extremeness", "variant", "intensity")


def _member_rows(archive: zipfile.ZipFile, name: str, rows: np.ndarray) -> np.ndarray:
    """rows[i] of the array stored as `name`.npy, read by seeking (a stored member) or whole."""
    with archive.open(f"{name}.npy") as handle:
        version = np.lib.format.read_magic(handle)
        shape, fortran, dtype = np.lib.format._read_array_header(handle, version)
        if fortran:
            raise AnimateMeError(f"{name}: Fortran-ordered arrays are not supported")
        start = handle.tell()
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        out = np.empty((len(rows),) + tuple(shape[1:]), dtype=dtype)
        for i, row in enumerate(rows):
            handle.seek(start + int(row) * row_bytes)
            out[i] = np.frombuffer(handle.read(row_bytes), dtype=dtype).reshape(shape[1:])
    return out


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
    with zipfile.ZipFile(corpus) as archive:
        names = {Path(n).stem for n in archive.namelist()}
        with np.load(corpus, allow_pickle=False) as data:
            subject = data["subject"]
            whole = {key: data[key] for key in names - set(PER_SEQUENCE)}
        rows = np.flatnonzero(np.isin(subject, identities))
        arrays = {key: _member_rows(archive, key, rows) for key in PER_SEQUENCE if key in names}
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "test.npz", **arrays, **whole)
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
               "sequences": int(len(rows))}
    (out / "validation.json").write_text(json.dumps(summary) + "\n")
    return summary
