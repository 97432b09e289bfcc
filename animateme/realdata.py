"""Real 4D expression data -> the corpus contract, for users who have such data.

Two layouts are read, each on its own topology (nothing here assumes the ICT template):

* CoMA (Ranjan et al. 2018): `root/<subject>/<expression>/<name>.<frame>.ply`, in metres.
  CoMA's twelve expressions (bareteeth, cheeks_in, eyebrow, high_smile, lips_back, lips_up,
  mouth_down, mouth_extreme, mouth_middle, mouth_open, mouth_side, mouth_up) are facial exercises,
  not the six basic emotions, so there is no default mapping: the user says which folder stands
  for which label (or `skip`) in a small CSV. A silent guess would train a model on labels that
  mean something else, which is worse than asking.
* Generic: `root/<sequence>/<frames>.obj|.ply` plus `root/labels.csv` with the columns
  `sequence,subject,label` and optionally `onset,apex,offset,end` (0-based frame positions in the
  sorted frame list), in millimetres unless told otherwise.

Each sequence: neutral = its first frame; per-frame progression in [0, 1] from the phase
annotations when given (0 -> onset, linear to 1 at apex, 1 to offset, linear to 0 at end, as in
Potamias et al. §5.1.1), otherwise from the displacement curve (mean vertex displacement from the
first frame over that at the apex); then the papers' preprocessing to 40 frames and the
extremeness factor of its apex displacement within its label (`animateme.preprocess.extremeness`).
Without landmarks on an arbitrary topology, the apex displacement is the mean over all vertices.
Subjects are split train/test disjointly by a seeded permutation; extremeness uses the training
split's statistics alone (the test set never sets the scale; a test take beyond the training's
largest passes 1).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from animateme_blender.core.errors import AnimateMeError
from animateme.meshio import MESH_SUFFIXES, read_mesh
from animateme_blender.core.progress import Progress
from animateme_blender.core.sample.progression import LABELS
from animateme.spirals import compute_spirals
from animateme_blender.core.template import mesh_fingerprint

from .preprocess import FRAMES, extremeness, to_fixed_length

UNIT_TO_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
SKIP = "skip"
TIMING_COLUMNS = ("onset", "apex", "offset", "end")
COMA_EXPRESSIONS = ("bareteeth", "cheeks_in", "eyebrow", "high_smile", "lips_back", "lips_up",
                    "mouth_down", "mouth_extreme", "mouth_middle", "mouth_open", "mouth_side", "mouth_up")



@dataclass
class Sequence:
    """One sequence after preprocessing: K frames in mm and its unscaled progression."""
    name: str
    subject: str
    label: str
    frames: np.ndarray            # (K, V, 3) float32 mm, frame 0 the neutral
    progression: np.ndarray       # (K,) in [0, 1], before the extremeness factor
    apex_displacement: float      # mean vertex displacement neutral -> apex, mm


@dataclass
class RealData:
    """Sequences of one topology, ready to be split and written as a corpus."""
    faces: np.ndarray             # (F, 3) int32
    sequences: list[Sequence] = field(default_factory=list)
    labels: tuple[str, ...] = LABELS
    source: str = ""


# ---- reading sequences ---------------------------------------------------------------------------

def frame_files(folder: Path) -> list[Path]:
    """The mesh frames of one sequence folder in natural order (frame 2 before frame 10)."""
    files = []
    for path in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
        if path.name.startswith("."):
            continue  # .DS_Store and the like
        if path.is_dir() or path.suffix.lower() not in MESH_SUFFIXES:
            raise AnimateMeError(f"{path} is not a mesh frame (.obj or .ply): move it out of the sequence folder {folder}")
        files.append(path)
    return files


def _natural_key(name: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def read_sequence(files: list[Path], scale: float, faces: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, 3) float32 mm frames and the faces they share; `faces`, when given, must match."""
    frames = []
    for path in files:
        vertices, frame_faces = read_mesh(path)
        if faces is None:
            faces = frame_faces
        if frames and len(vertices) != frames[0].shape[0]:
            raise AnimateMeError(f"{path} has {len(vertices)} vertices but {files[0].name} has {frames[0].shape[0]}: "
                                 "every frame of a sequence must be the same registered mesh; remove or re-export it")
        if frame_faces.shape != faces.shape or not np.array_equal(frame_faces, faces):
            raise AnimateMeError(f"{path} has a different topology from the first mesh read: all frames of all "
                                 "sequences must share one registered topology; remove or re-export it")
        if not np.all(np.isfinite(vertices)):
            raise AnimateMeError(f"{path} has NaN or infinite coordinates: remove or re-export it")
        frames.append((vertices * scale).astype(np.float32))
    return np.stack(frames), faces


def displacement_curve(frames: np.ndarray) -> np.ndarray:
    """(N,) mean vertex distance of each frame from the first, mm."""
    return np.linalg.norm(frames - frames[:1], axis=-1).mean(axis=-1)


def phase_progression(count: int, onset: float, apex: float, offset: float, end: float) -> np.ndarray:
    """(count,) 0 until onset, rising to 1 at apex, 1 until offset, falling to 0 at end (frames)."""
    k = np.arange(count, dtype=np.float64)
    rise = (k >= apex).astype(np.float64) if apex <= onset else np.clip((k - onset) / (apex - onset), 0, 1)
    fall = (k >= end).astype(np.float64) if end <= offset else np.clip((k - offset) / (end - offset), 0, 1)
    return np.minimum(rise, 1.0 - fall)


def make_sequence(name: str, subject: str, label: str, frames: np.ndarray, where: Path,
                  timing: tuple[float, float, float, float] | None = None, length: int = FRAMES) -> Sequence:
    if frames.shape[0] < 2:
        raise AnimateMeError(f"{where} holds {frames.shape[0]} frame(s): a sequence needs at least 2 "
                             "(the neutral first); add its frames or remove the folder")
    curve = displacement_curve(frames)
    apex = float(curve.max())
    if apex <= 0.0:
        raise AnimateMeError(f"{where}: no frame moves away from the first, so there is no expression to "
                             "learn; remove the sequence")
    if timing is None:
        raw = curve / apex
    else:
        if not 0 <= timing[0] <= timing[1] <= timing[2] <= timing[3] <= frames.shape[0] - 1:
            raise AnimateMeError(f"{where}: onset, apex, offset, end {timing} must be frame positions with "
                                 f"0 <= onset <= apex <= offset <= end <= {frames.shape[0] - 1}: fix labels.csv")
        raw = phase_progression(frames.shape[0], *timing)
    fixed, progression = to_fixed_length(frames, raw.astype(np.float32), length)
    return Sequence(name, subject, label, fixed.astype(np.float32),
                    np.clip(progression, 0.0, 1.0).astype(np.float32), apex)


def _label(value: str, labels: tuple[str, ...], where: str) -> str:
    name = value.strip().lower()
    if name not in labels:
        raise AnimateMeError(f"{where}: unknown label {value!r}: use one of {', '.join(labels)}")
    return name


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: _natural_key(p.name))


def _check_root(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise AnimateMeError(f"{root} is not a folder: give the root of the {what} data")
    return root


def _scale(units: str) -> float:
    if units not in UNIT_TO_MM:
        raise AnimateMeError(f"unknown units {units!r}: use one of {', '.join(UNIT_TO_MM)}")
    return UNIT_TO_MM[units]


# ---- CoMA ------------------------------------------------------------------------------------------

def read_mapping(source: str | os.PathLike | Mapping[str, str], labels: tuple[str, ...] = LABELS) -> dict[str, str | None]:
    """Expression folder -> label (None to skip), from a dict or a CSV of `expression,label` rows
    (an optional header row `expression,label`; `#` comments; label `skip` leaves a folder out)."""
    if isinstance(source, Mapping):
        rows = [(str(k), str(v) if v is not None else SKIP, "the mapping") for k, v in source.items()]
    else:
        path = Path(source)
        if not path.is_file():
            raise AnimateMeError(f"mapping file {path} does not exist: write a CSV of expression,label rows")
        rows = []
        with open(path, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                cells = [c.strip() for c in row]
                if not cells or not any(cells) or cells[0].startswith("#"):
                    continue
                if number == 1 and [c.lower() for c in cells[:2]] == ["expression", "label"]:
                    continue
                if len(cells) != 2 or not cells[0]:
                    raise AnimateMeError(f"{path}:{number}: expected `expression,label`, got {','.join(row)!r}")
                rows.append((cells[0], cells[1], f"{path}:{number}"))
    mapping: dict[str, str | None] = {}
    for expression, label, where in rows:
        if expression in mapping:
            raise AnimateMeError(f"{where}: expression {expression!r} is mapped twice: keep one row")
        mapping[expression] = None if label.strip().lower() in (SKIP, "") else _label(label, labels, where)
    if not any(mapping.values()):
        raise AnimateMeError("the expression mapping labels nothing: map at least one expression folder to a label")
    return mapping


def load_coma(root: str | os.PathLike, mapping, labels: tuple[str, ...] = LABELS, units: str = "m",
              length: int = FRAMES, progress: Progress | None = None) -> RealData:
    """Every mapped `subject/expression` sequence under a CoMA-layout root."""
    root = _check_root(root, "CoMA")
    mapping = read_mapping(mapping, labels)
    scale = _scale(units)
    jobs = []
    for subject in _subfolders(root):
        for folder in _subfolders(subject):
            if folder.name not in mapping:
                raise AnimateMeError(f"{folder}: expression {folder.name!r} is not in the mapping: add a row "
                                     f"`{folder.name},<label>` (or `{folder.name},skip`)")
            if mapping[folder.name] is not None:
                jobs.append((f"{subject.name}/{folder.name}", subject.name, mapping[folder.name], folder, None))
    if not jobs:
        raise AnimateMeError(f"{root}: no mapped subject/expression folders found: point at the folder that "
                             "holds one folder per subject")
    return _load(jobs, labels, scale, length, progress, source="coma")


# ---- generic ---------------------------------------------------------------------------------------

def load_generic(root: str | os.PathLike, labels_csv: str | os.PathLike | None = None,
                 labels: tuple[str, ...] = LABELS, units: str = "mm", length: int = FRAMES,
                 progress: Progress | None = None) -> RealData:
    """Every sequence folder under `root`, labelled by `labels.csv` (root/labels.csv by default)."""
    root = _check_root(root, "sequence")
    path = Path(labels_csv) if labels_csv else root / "labels.csv"
    scale = _scale(units)
    if not path.is_file():
        raise AnimateMeError(f"labels file {path} does not exist: write one with columns sequence,subject,label")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in ("sequence", "subject", "label") if c not in columns]
        if missing:
            raise AnimateMeError(f"{path} lacks column(s) {', '.join(missing)}: its header must be "
                                 "sequence,subject,label[,onset,apex,offset,end]")
        reader.fieldnames = columns
        rows = [(number, row) for number, row in enumerate(reader, start=2) if any((v or "").strip() for v in row.values())]
    folders = {p.name: p for p in _subfolders(root)}
    jobs, seen = [], set()
    for number, row in rows:
        where = f"{path}:{number}"
        name, subject = (row.get("sequence") or "").strip(), (row.get("subject") or "").strip()
        if not name or not subject:
            raise AnimateMeError(f"{where}: sequence and subject must not be empty")
        if name in seen:
            raise AnimateMeError(f"{where}: sequence {name!r} is listed twice: keep one row")
        seen.add(name)
        if name not in folders:
            raise AnimateMeError(f"{where}: sequence folder {root / name} does not exist: fix the name or add the folder")
        jobs.append((name, subject, _label(row.get("label") or "", labels, where), folders[name], _timing(row, where)))
    unlisted = sorted(set(folders) - seen)
    if unlisted:
        raise AnimateMeError(f"{root / unlisted[0]} has no row in {path}: add `{unlisted[0]},<subject>,<label>` "
                             "or move the folder out")
    if not jobs:
        raise AnimateMeError(f"{path} lists no sequences: add one row per sequence folder")
    return _load(jobs, labels, scale, length, progress, source="generic")


def _timing(row: dict, where: str) -> tuple[float, float, float, float] | None:
    cells = [(row.get(c) or "").strip() for c in TIMING_COLUMNS]
    if not any(cells):
        return None
    try:
        return tuple(float(c) for c in cells)  # type: ignore[return-value]
    except ValueError:
        raise AnimateMeError(f"{where}: onset, apex, offset and end must all be frame numbers, got {cells}") from None


def _load(jobs, labels, scale, length, progress, source) -> RealData:
    data = RealData(faces=None, labels=tuple(labels), source=source)  # type: ignore[arg-type]
    for i, (name, subject, label, folder, timing) in enumerate(jobs):
        if progress:
            progress(i / len(jobs), f"reading {name}")
        frames, data.faces = read_sequence(frame_files(folder), scale, data.faces)
        data.sequences.append(make_sequence(name, subject, label, frames, folder, timing, length))
    if progress:
        progress(1.0, f"read {len(jobs)} sequences")
    data.faces = np.asarray(data.faces, dtype=np.int32)
    return data


# ---- the corpus ------------------------------------------------------------------------------------

def split_subjects(subjects, test_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint (train, test) subject lists from a seeded permutation; at least one in each."""
    names = sorted(set(subjects))
    if len(names) < 2:
        raise AnimateMeError(f"found {len(names)} subject(s): a subject-independent split needs at least 2")
    if not 0.0 < test_fraction < 1.0:
        raise AnimateMeError(f"test fraction must lie strictly between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(names))
    count = min(max(1, int(round(test_fraction * len(names)))), len(names) - 1)
    test = sorted(names[i] for i in order[:count])
    return [n for n in names if n not in test], test


def assemble_corpus(data: RealData, test_fraction: float = 0.2, seed: int = 0, spiral_length: int = 12,
                    reference_vertex: int | None = None, extremeness_method: str = "max") -> dict[str, dict]:
    """{"train": arrays, "test": arrays, "template": arrays} in the corpus contract."""
    train_names, test_names = split_subjects([s.subject for s in data.sequences], test_fraction, seed)
    subject_names = sorted(train_names + test_names)
    split = {"train": [s for s in data.sequences if s.subject in train_names],
             "test": [s for s in data.sequences if s.subject in test_names]}
    label_of = {name: i for i, name in enumerate(data.labels)}

    # The template: the training subjects' mean neutral on the data's own topology.
    vertices = np.mean([s.frames[0] for s in split["train"]], axis=0).astype(np.float32)
    count = len(vertices)
    if reference_vertex is None:
        reference_vertex = int(np.argmax(vertices[:, 2]))  # the nose tip when +Z faces forward
    spirals = compute_spirals(data.faces, count, spiral_length, reference_vertex, vertices)
    fingerprint = mesh_fingerprint(vertices, data.faces)
    template = {
        "vertices": vertices, "faces": data.faces.astype(np.int32), "spirals": spirals,
        # The data are their own full resolution: identity maps, no face-model modes or landmarks.
        "source_index": np.arange(count, dtype=np.int32), "full_index": np.arange(count, dtype=np.int32),
        "upsample_index": np.repeat(np.arange(count, dtype=np.int32)[:, None], 3, axis=1),
        "upsample_weight": np.tile(np.array([1, 0, 0], np.float32), (count, 1)),
        "landmarks": np.zeros(0, np.int32),
        "identity_modes": np.zeros((0, count, 3), np.float32),
        "expression_modes": np.zeros((0, count, 3), np.float32),
        "expression_names": np.zeros(0, dtype="<U1"),
        "fingerprint": np.asarray(fingerprint), "reference_vertex": np.asarray(reference_vertex),
    }

    train_reach = np.array([s.apex_displacement for s in split["train"]])
    train_labels = np.array([label_of[s.label] for s in split["train"]])
    corpus = {"template": template}
    for name, sequences in split.items():
        reach = np.array([s.apex_displacement for s in sequences])
        label = np.array([label_of[s.label] for s in sequences], dtype=np.int64)
        scale = extremeness(reach, label, extremeness_method, train_reach, train_labels)  # training's scale
        frames = np.stack([s.frames for s in sequences])
        corpus[name] = {
            "neutral": frames[:, 0].copy(),
            "deform": (frames - frames[:, :1]).astype(np.float32),
            "label": label,
            "label_names": np.asarray(data.labels),
            "progression": (np.stack([s.progression for s in sequences]) * scale[:, None]).astype(np.float32),
            "subject": np.array([subject_names.index(s.subject) for s in sequences], dtype=np.int64),
            "extremeness": scale.astype(np.float32),
            "fingerprint": np.asarray(fingerprint),
            "subject_names": np.asarray(subject_names),
            "sequence_names": np.asarray([s.name for s in sequences]),
        }
    return corpus


def write_corpus(out_dir: str | os.PathLike, corpus: dict[str, dict]) -> list[Path]:
    """Write train.npz, test.npz and template.npz. Each is written under a temporary name first
    and all are renamed only once all are written, so a failure leaves no file that looks complete."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AnimateMeError(f"cannot create {out_dir} ({error.strerror}): choose a folder you can write") from None
    written, final = [], []
    try:
        for name in ("template", "test", "train"):
            partial = out_dir / f".{name}.npz.partial"
            with open(partial, "wb") as handle:
                np.savez(handle, **corpus[name])
            written.append(partial)
        for partial in written:
            target = out_dir / partial.name[1:-len(".partial")]
            partial.replace(target)
            final.append(target)
    except OSError as error:
        for partial in written:
            partial.unlink(missing_ok=True)
        raise AnimateMeError(f"cannot write the corpus to {out_dir} ({error.strerror}): check free space and permissions") from None
    return final


def summarize(corpus: dict[str, dict]) -> dict:
    """Counts and per-label mean displacement (mm) of each split, for printing."""
    summary = {"vertices": int(corpus["template"]["vertices"].shape[0]),
               "fingerprint": str(corpus["template"]["fingerprint"])}
    for name in ("train", "test"):
        arrays = corpus[name]
        magnitude = np.linalg.norm(arrays["deform"], axis=-1).mean(axis=(1, 2))  # (S,)
        labels = [str(n) for n in arrays["label_names"]]
        summary[name] = {
            "sequences": int(len(arrays["label"])),
            "subjects": int(len(np.unique(arrays["subject"]))),
            "mean_displacement_mm": {labels[c]: round(float(magnitude[arrays["label"] == c].mean()), 3)
                                     for c in np.unique(arrays["label"])},
        }
    return summary
