"""The synthetic 4D expression corpus, from the face model.

Subjects are random identities of the face model. Each subject's expression shapes are the generic
ones carried onto that subject's face by deformation transfer (Sumner & Popovic 2004): every skin
triangle's deformation gradient under the generic shape is applied to the subject's own triangle,
and the subject's vertices are solved in least squares. A wide nose smiles like a wide nose.

Each subject performs in its own way (`emotion_programs`): its own documented variant of each
emotion's FACS program (`data/emotions.json`), intensity range, timing, habits; sequences play it at
60 fps through neutral -> onset -> apex -> offset, sometimes blended with a confusable emotion or
faint, then go through the papers' preprocessing to K = 40 frames.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix, identity
from scipy.sparse.linalg import splu
from tqdm import tqdm

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.template import Template

from .emotion_programs import (PROGRAMS_PATH, Programs, SubjectStyle, draw_subject,  # noqa: F401 (re-exported)
                               load_programs, synthesize_sequence)
from .facemodel import SKIN_VERTICES, FaceModel
from .preprocess import FRAMES, extremeness, to_fixed_length
from .splits import load_split, split_arrays
from .template_build import CM_TO_MM

# Landmarks that measure how far an expression went: jaw, brows, nose and mouth, not the eyes
# (a blink would count as expression).
EXTREMENESS_LANDMARKS = np.r_[0:36, 48:68]


# ---- deformation transfer ------------------------------------------------------------------------

class DeformationTransfer:
    """Carries the generic expression shapes onto any subject of the same topology.

    Edge form of deformation transfer: for every triangle j with generic deformation gradient Q_j
    (from its two edges and scaled normal), the subject's deformed edges should be Q_j E_j. The
    system matrix depends on the topology only, so it is factorised once for all subjects.
    Every shape moves the whole skin a little (the jaw shapes shift it by ~0.5 mm), so nothing can
    be pinned; instead a weak pull towards the generic offsets (ANCHOR) fixes the translation that
    the edges leave free. On the generic face the transfer is then exact.
    """

    ANCHOR = 1e-3

    def __init__(self, neutral_mm: np.ndarray, triangles: np.ndarray, expressions_mm: np.ndarray):
        self.triangles = triangles
        self.generic = expressions_mm.astype(np.float64)
        n, f = len(neutral_mm), len(triangles)
        rows = np.repeat(np.arange(2 * f), 2)
        cols = np.stack([triangles[:, 1], triangles[:, 0], triangles[:, 2], triangles[:, 0]], axis=1).reshape(-1)
        vals = np.tile([1.0, -1.0], 2 * f)
        self.edges_op = coo_matrix((vals, (rows, cols)), shape=(2 * f, n)).tocsr()
        self.edges_t = self.edges_op.T.tocsr()
        self.solver = splu((self.edges_t @ self.edges_op + self.ANCHOR * identity(n)).tocsc())
        rest = _frames(neutral_mm, triangles)
        deformed = _frames(neutral_mm[None] + expressions_mm, triangles)
        self.gradients = deformed @ np.linalg.inv(rest)          # (E, F, 3, 3)

    def transfer(self, subject_mm: np.ndarray, shapes: np.ndarray | None = None) -> np.ndarray:
        """(E, N, 3) expression offsets for the subject, mm; only `shapes` are solved (others 0)."""
        shapes = np.arange(len(self.gradients)) if shapes is None else np.asarray(shapes)
        rest = _frames(subject_mm, self.triangles)[..., :2]        # (F, 3, 2) subject edges
        target = (self.gradients[shapes] @ rest) - rest           # (S, F, 3, 2) edge offsets
        # Stack as (2F, 3) per shape in the row order of edges_op: edge 1 then edge 2 per triangle.
        rhs_edges = np.transpose(target, (0, 1, 3, 2)).reshape(target.shape[0], -1, 3)
        rhs = np.stack([self.edges_t @ e for e in rhs_edges]) + self.ANCHOR * self.generic[shapes]
        count, n = rhs.shape[:2]
        solved = self.solver.solve(np.moveaxis(rhs, 0, 1).reshape(n, -1))
        out = np.zeros((len(self.gradients), n, 3), dtype=np.float32)
        out[shapes] = np.moveaxis(solved.reshape(n, count, 3), 1, 0)
        return out


def _frames(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(..., F, 3, 3) columns: two edges and the normal scaled by 1/sqrt(|cross|) (Sumner's 4th vertex)."""
    a, b, c = (vertices[..., triangles[:, k], :].astype(np.float64) for k in range(3))
    e1, e2 = b - a, c - a
    normal = np.cross(e1, e2)
    normal /= np.sqrt(np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12))
    return np.stack([e1, e2, normal], axis=-1)


# ---- the corpus ------------------------------------------------------------------------------------

@dataclass
class CorpusConfig:
    train_subjects: int = 150
    test_subjects: int = 30
    sequences_per_label: int = 1
    test_sequences_per_label: int = 2   # >= 2: the evaluation compares spread within subject and label
    frames: int = FRAMES
    seed: int = 0
    extremeness_method: str = "max"
    programs_path: Path = PROGRAMS_PATH
    # Per-label largest apex reach (mm) that e = 1 stands for, from another corpus's training split
    # (`reference_reach`); None: this corpus's own. The largest of ~100 takes is a noisy statistic
    # (sad's moved by 35 % between two seeds), so a model trained on one corpus and evaluated on
    # another must share it, or it under- or over-plays each label by that much.
    reach_reference: tuple[float, ...] | None = None

    @classmethod
    def quick(cls) -> "CorpusConfig":
        return cls(train_subjects=12, test_subjects=4)


def build_corpus(model: FaceModel, template: Template, out_dir: Path, config: CorpusConfig,
                 show_progress: bool = True) -> dict:
    """Write train.npz, test.npz and template.npz to out_dir; return a summary."""
    started = time.time()
    rng = np.random.default_rng(config.seed)
    programs = load_programs(model.expression_names, config.programs_path)
    skin = np.asarray(SKIN_VERTICES)
    triangles = model.skin_triangles()
    expressions_mm = model.expression_modes[:, skin] * CM_TO_MM
    transfer = DeformationTransfer(model.neutral[skin] * CM_TO_MM, triangles, expressions_mm)

    total = config.train_subjects + config.test_subjects
    identity_weights = rng.standard_normal((total, model.identity_modes.shape[0])).astype(np.float32)
    order = rng.permutation(total)  # subject-independent split: test identities never trained on
    split = {"train": np.sort(order[:config.train_subjects]), "test": np.sort(order[config.train_subjects:])}
    used = programs.used_shapes()
    landmarks = extremeness_landmarks(template)

    records = {name: [] for name in split}
    bar = tqdm(total=total, desc="corpus: subjects", unit="subject", disable=not show_progress)
    for name, subjects in split.items():
        for subject in subjects:
            face_cm = model.neutral[skin] + np.tensordot(identity_weights[subject], model.identity_modes[:, skin], axes=1)
            basis = transfer.transfer(face_cm * CM_TO_MM, used)[:, template.source_index]  # (E, V, 3)
            neutral = (face_cm[template.source_index] * CM_TO_MM).astype(np.float32)
            style = draw_subject(rng, programs)
            repeats = config.sequences_per_label if name == "train" else config.test_sequences_per_label
            for label in range(len(programs.labels)):
                for _ in range(repeats):
                    raw, phase, intensity = synthesize_sequence(rng, programs, label, basis, style)
                    deform, phase = to_fixed_length(raw, phase, config.frames)
                    reach = apex_reach(deform[None], landmarks)[0]
                    records[name].append((neutral, deform, label, phase, subject, reach,
                                          style.variant[label], intensity))
            bar.update(1)
    bar.close()

    # Extremeness: apex landmark displacement normalised within each category by the training
    # split's statistics alone, so e means the same reach in both splits (a test take beyond the
    # training's largest passes 1, rather than shrink every held-out take of its label).
    train_reach = np.array([r[5] for r in records["train"]])
    train_labels = np.array([r[2] for r in records["train"]])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"labels": list(programs.labels), "frames": config.frames, "vertices": template.num_vertices,
               "fingerprint": template.fingerprint, "seed": config.seed}
    for name, rows in records.items():
        labels = np.array([r[2] for r in rows])
        reach = np.array([r[5] for r in rows])
        if config.reach_reference is None:
            scale = extremeness(reach, labels, config.extremeness_method, train_reach, train_labels)
        else:  # may pass 1 where a take reaches further than the reference's largest
            scale = np.maximum(reach / np.asarray(config.reach_reference)[labels], 1e-3)
        arrays = {
            "neutral": np.stack([r[0] for r in rows]),
            "deform": np.stack([r[1] for r in rows]),
            "label": labels.astype(np.int64),
            "label_names": np.asarray(programs.labels),
            "progression": (np.stack([r[3] for r in rows]) * scale[:, None]).astype(np.float32),
            "subject": np.array([r[4] for r in rows], dtype=np.int64),
            "extremeness": scale.astype(np.float32),
            "variant": np.array([r[6] for r in rows], dtype=np.int64),      # index into variant_names[label]
            "intensity": np.array([r[7] for r in rows], dtype=np.float32),  # drawn apex intensity
            "fingerprint": np.asarray(template.fingerprint),
            "variant_names": np.asarray(["|".join(n) for n in programs.variant_names]),
        }
        _save_atomic(out_dir / f"{name}.npz", arrays)
        summary[name] = _split_summary(arrays, programs.labels, out_dir / f"{name}.npz")
    template.save(out_dir / "template.npz")
    summary["seconds"] = round(time.time() - started, 1)
    return summary


def build_more_test_subjects(model: FaceModel, template: Template, out_dir: Path, config: CorpusConfig,
                             train_from: Path, show_progress: bool = True) -> dict:
    """A corpus whose training split is `train_from`'s, copied, and whose test subjects are new
    people: more held-out subjects for the models trained on that corpus, so a ranking the 20 of
    the yardstick cannot settle can be read on more. e = 1 keeps the reference's meaning (its
    largest reach per label). Identities come from the seed, so `config.seed` must not be the
    reference's."""
    train_from = Path(train_from)
    summary_path = train_from / "summary.json"
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("seed") == config.seed:
        raise AnimateMeError(f"{train_from} was built with seed {config.seed}: give another --seed, or the "
                             "new test subjects would be its own people again")
    labels = load_programs(model.expression_names, config.programs_path).labels
    config = replace(config, train_subjects=1, reach_reference=reference_reach(train_from, template, labels))
    summary = build_corpus(model, template, out_dir, config, show_progress)
    train = Path(out_dir) / "train.npz"
    shutil.copyfile(train_from / "train.npz", train)       # the one throwaway training subject goes
    summary["train"] = _split_summary(split_arrays(train, ("deform", "label", "subject")),
                                      labels, train) | {"copied_from": str(train_from)}
    return summary


def extremeness_landmarks(template: Template) -> np.ndarray:
    """Template vertices whose displacement measures how far an expression went."""
    return template.landmarks[EXTREMENESS_LANDMARKS] if len(template.landmarks) else np.arange(template.num_vertices)


def apex_reach(deform: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(S, K, V, 3) deformations -> (S,) mean landmark displacement at each sequence's furthest frame, mm."""
    return np.linalg.norm(deform[:, :, landmarks], axis=-1).mean(-1).max(-1)


def reference_reach(corpus_dir: Path, template: Template, label_names: tuple[str, ...]) -> tuple[float, ...]:
    """Each label's largest apex reach (mm, the extremeness landmarks) in a corpus's training split."""
    split = load_split(Path(corpus_dir) / "train.npz")
    if split.fingerprint != template.fingerprint:
        raise AnimateMeError(f"{corpus_dir} was built on template {split.fingerprint}, not {template.fingerprint}")
    names = list(split.label_names)
    if names != list(label_names):
        raise AnimateMeError(f"{corpus_dir} has labels {names}, not {list(label_names)}")
    reach = apex_reach(split.deform, extremeness_landmarks(template))
    return tuple(float(reach[split.label == c].max()) for c in range(len(names)))


def _save_atomic(path: Path, arrays: dict) -> None:
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)  # uncompressed: deformations barely compress and load faster so
    partial.replace(path)


def _split_summary(arrays: dict, labels: tuple[str, ...], path: Path) -> dict:
    magnitude = np.linalg.norm(arrays["deform"], axis=-1)          # (S, K, V)
    per_label = {labels[c]: round(float(magnitude[arrays["label"] == c].mean()), 3) for c in range(len(labels))}
    peak = {labels[c]: round(float(magnitude[arrays["label"] == c].max(axis=(1, 2)).mean()), 2) for c in range(len(labels))}
    return {"sequences": int(len(arrays["label"])), "subjects": int(len(np.unique(arrays["subject"]))),
            "megabytes": round(path.stat().st_size / 2**20, 1),
            "mean_displacement_mm": per_label, "mean_peak_displacement_mm": peak}
