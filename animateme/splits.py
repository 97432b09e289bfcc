"""The one reader of a corpus split, `train.npz` or `test.npz` (docs/ARCHITECTURE.md, "Corpus").

Every reader on the training side comes here: `load_split` gives the contract's arrays as a `Split`
(checked), `split_arrays` some or all arrays as stored, and `people_rows` the sequences of some
people only, read by seeking (a 5.6 GB split is never loaded whole). A missing or damaged file, or
a missing key, is one AnimateMeError that names the command that makes the file again.
"""

from __future__ import annotations

import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

# The contract: every split holds these. Writers may add more (extremeness, variant, intensity, names).
SPLIT_KEYS = ("neutral", "deform", "label", "label_names", "progression", "subject", "fingerprint")
# The arrays with one row per sequence; the others (names, the fingerprint) describe the whole split.
PER_SEQUENCE = ("neutral", "deform", "label", "progression", "subject", "extremeness", "variant", "intensity")
BUILD = "`animateme data build`"


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


@contextmanager
def _reading(path: Path, what: str, command: str):
    """One wording for a file that is not there or cannot be read."""
    if not path.is_file():
        raise AnimateMeError(f"{what} {path} not found: build it with {command}")
    try:
        yield
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise AnimateMeError(f"cannot read {what} {path} ({error}): rebuild it with {command}") from None


def _lacking(path: Path, missing, what: str, command: str) -> AnimateMeError:
    return AnimateMeError(f"{what} {path} lacks {', '.join(missing)}: rebuild it with {command}")


def read_npz(path: str | Path, keys=None, optional=(), what: str = "corpus file",
             command: str = BUILD) -> dict[str, np.ndarray | None]:
    """`keys` (every array when None) as stored, and `optional` (None where absent). Only the named
    members are read. The template's arrays for training come through here too (`what`, `command`)."""
    path = Path(path)
    with _reading(path, what, command), np.load(path, allow_pickle=False) as data:
        keys = data.files if keys is None else keys
        missing = [key for key in keys if key not in data.files]
        if missing:
            raise _lacking(path, missing, what, command)
        found = {key: data[key] for key in keys}
        found.update({key: data[key] if key in data.files else None for key in optional})
        return found


def split_arrays(path: str | Path, keys=None) -> dict[str, np.ndarray]:
    """The split's `keys` (every array when None) as stored, without the `Split` casts."""
    return read_npz(path, keys)


def load_split(path: str | Path) -> Split:
    """The contract's arrays of the split at `path`, checked, in the dtypes every consumer uses."""
    data = split_arrays(path, SPLIT_KEYS)
    # copy=False: a float32 deform (0.5-6 GB) is not copied; the arrays are this call's own.
    split = Split(
        neutral=data["neutral"].astype(np.float32, copy=False),
        deform=data["deform"].astype(np.float32, copy=False),
        label=data["label"].astype(np.int64, copy=False),
        label_names=tuple(str(name) for name in data["label_names"]),
        progression=data["progression"].astype(np.float32, copy=False),
        subject=data["subject"].astype(np.int64, copy=False),
        fingerprint=str(data["fingerprint"]),
    )
    if split.deform.ndim != 4 or split.deform.shape[-1] != 3:
        raise AnimateMeError(f"{path}: deform must be (S,K,V,3), got {split.deform.shape}: "
                             f"rebuild it with {BUILD}")
    if len(split) and (split.label.min() < 0 or split.label.max() >= len(split.label_names)):
        raise AnimateMeError(f"{path}: labels outside label_names: rebuild it with {BUILD}")
    return split


def people_rows(path: str | Path, people) -> dict[str, np.ndarray]:
    """Every sequence of `people` (values of `subject`) in the split at `path`: the per-sequence
    arrays cut to those rows, read by seeking in the uncompressed members; the others whole."""
    path = Path(path)
    with _reading(path, "corpus file", BUILD):
        with np.load(path, allow_pickle=False) as data:
            if "subject" not in data.files:
                raise _lacking(path, ["subject"], "corpus file", BUILD)
            rows = np.flatnonzero(np.isin(data["subject"], people))
            whole = {key: data[key] for key in data.files if key not in PER_SEQUENCE}
            stored = [key for key in PER_SEQUENCE if key in data.files]
        with zipfile.ZipFile(path) as archive:
            return {key: _member_rows(archive, key, rows) for key in stored} | whole


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
