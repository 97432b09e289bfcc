"""Expressions on faces the face model never made: does the classifier recognise what the shipped
model plays on them, and what does it look like at the apex?

Each face is registered with its landmarks (the same registration and binding as the Blender
extension; a front-only mask is let through on its surface fit, see dense_face.py), every label is
sampled by the shipped diffusion model from the fitted template neutral through the ONNX runtime,
classifiers trained on the corpus's training ground truth (several seeds: one training run is a
judge that moves with the machine, docs/model-history.md) label the template motion, and the
apex frame is carried onto the dense face and drawn: one row per label, one column per face; and
per face, one row per label and one column per seed (does the seed change the performance?),
with a last column that carries a held-out person's take of the label onto the same face, played
about as strongly as the model is asked to: "is fear faint?" can be asked of the model and of the
people it learnt from side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animateme import render
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import expression_signal, progression_curve

from .dense_face import DenseFace, dense_face, load_dense_face, real_face_landmarks
from .variety import apex_amplitude, apex_frames

REAL_FACE_NAMES = ("meshmonk_Template", "threejs_LeePerrySmith")
PICTURE_SIZE = (200, 200)


@dataclass
class FaceRun:
    face: DenseFace
    labels: list[str]
    predicted: list[list[list[str]]]      # per label, per classifier, per seed
    probability: list[list[list[float]]]  # P(intended label): per label, per classifier, per seed
    seed_pictures: list[list[np.ndarray]]  # per label, per seed: each seed's own apex (then people's take)
    apex_mm: list[float] | None = None     # per label: the seeds' mean apex amplitude on the template, mm

    @property
    def apex_pictures(self) -> list[np.ndarray]:
        """Seed 0's apex per label."""
        return [pictures[0] for pictures in self.seed_pictures]


def faces_to_try(template) -> list[DenseFace]:
    """The two real meshes and the procedural head, each with its landmarks (the judge cannot
    tell the procedural head's turn without them: its features are smooth bumps)."""
    from animateme.remesh import synthetic_head, synthetic_head_landmarks

    faces = []
    for name in REAL_FACE_NAMES:
        path, landmarks = real_face_landmarks(name)
        faces.append(load_dense_face(path, landmarks, template, name))
    vertices, triangles = synthetic_head()
    faces.append(dense_face(vertices, triangles, synthetic_head_landmarks(vertices), template, "procedural_head"))
    return faces


def reference_takes(split, labels: tuple[str, ...], percentile: float = 90.0) -> list[int]:
    """Per label, the held-out take whose apex amplitude sits at `percentile` of that label's takes.
    The model plays a label at full intensity, the 90th percentile of its peak strength over the
    training takes (runtime.full_intensity), so the default shows a person playing it about as
    strongly (and, as the corpus's takes blend a label's partners as people do, people's expression,
    not a prototype)."""
    picks = []
    for index, label in enumerate(labels):
        rows = np.flatnonzero(np.asarray(split.label) == index)
        if not len(rows):
            raise AnimateMeError(f"the corpus's test split has no take of {label}")
        order = np.argsort(apex_amplitude(split.deform[rows]), kind="stable")
        picks.append(int(rows[order[int(round(percentile / 100 * (len(order) - 1)))]]))
    return picks


def read_takes(clips: np.ndarray, classifiers, labels: tuple[str, ...]) -> list[list[str]]:
    """(L,K,V,3) one take per label -> per label, what each classifier reads it as."""
    readings = [classifier.probabilities(np.asarray(clips, np.float32)) for classifier in classifiers]
    return [[labels[int(chances[i].argmax())] for chances in readings] for i in range(len(labels))]


def run_face(face: DenseFace, runtime, classifiers, labels: tuple[str, ...], seeds: int,
             settings, landmarks: np.ndarray | None = None,
             people: np.ndarray | None = None) -> FaceRun:
    """`people`: optionally (L,K,V,3), a person's take per label (`reference_takes`), drawn after the
    seeds on this face."""
    from animateme_blender.core.sample.sampler import sample

    progression = progression_curve(40, 1.0)
    predicted, probability, pictures, apex_mm = [], [], [], []
    # Frame the face (brows to chin on the fitted template): a scan's shoulders would make the
    # face a thumbnail.
    points = face.fitted if landmarks is None or not len(landmarks) else face.fitted[landmarks]
    centre, extent = render.camera_frame(points)
    frame = (centre, extent * 1.35)
    for index, label in enumerate(labels):
        mix = np.zeros(len(labels), np.float32)
        mix[index] = 1.0
        signal = expression_signal(progression, mix * runtime.full_intensity)
        clips = np.stack([sample(runtime, face.neutral, signal, settings, seed=seed)
                          for seed in range(seeds)]).astype(np.float32)
        apex_mm.append(float(apex_amplitude(clips).mean()))
        readings = [classifier.probabilities(clips) for classifier in classifiers]
        predicted.append([[labels[c] for c in chances.argmax(1)] for chances in readings])
        probability.append([[float(p) for p in chances[:, index]] for chances in readings])
        shown = clips if people is None else np.concatenate([clips, people[index][None].astype(np.float32)])
        row = []
        for column, (clip, apex) in enumerate(zip(shown, apex_frames(shown))):
            moved = face.vertices + face.carry(clip[apex][None])[0]
            picture = render.render_mesh(moved, face.faces, size=PICTURE_SIZE, frame=frame)
            caption = ("people" if column == seeds
                       else f"s{column} {seed_verdict([votes[column] for votes in predicted[-1]], label)}")
            row.append(render.label(picture, f"{face.name[:14]} {label} {caption}"))
        pictures.append(row)
    return FaceRun(face, list(labels), predicted, probability, pictures, apex_mm)


def seed_verdict(votes: list[str], label: str) -> str:
    """'ok' when every classifier reads the intended label, else e.g. '2/3 ok, disgust'."""
    right = sum(vote == label for vote in votes)
    if right == len(votes):
        return "ok"
    wrong = [vote for vote in votes if vote != label]
    return f"{right}/{len(votes)} ok, {max(set(wrong), key=wrong.count)}"


def grid(runs: list[FaceRun]) -> np.ndarray:
    """Rows: labels; columns: faces."""
    rows = [render.strip([run.apex_pictures[r] for run in runs]) for r in range(len(runs[0].labels))]
    return np.concatenate(rows, axis=0)


def seeds_grid(run: FaceRun) -> np.ndarray:
    """One face: rows are labels, columns are seeds (each seed's own apex frame)."""
    return np.concatenate([render.strip(pictures) for pictures in run.seed_pictures], axis=0)


def summary(runs: list[FaceRun]) -> dict:
    """Per face and label: the share of (classifier, seed) readings that name the intended label,
    that share per classifier, and the mean probability of the intended label."""
    out = {}
    for run in runs:
        out[run.face.name] = {
            "vertices": int(len(run.face.vertices)), "fit": run.face.fit_score,
            "labels": {label: {"predicted": run.predicted[i],
                               "recognised": float(np.mean([[p == label for p in votes] for votes in run.predicted[i]])),
                               "recognised_by_classifier": [float(np.mean([p == label for p in votes]))
                                                            for votes in run.predicted[i]],
                               "probability_of_intended": float(np.mean(run.probability[i])),
                               "apex_mm": None if run.apex_mm is None else run.apex_mm[i]}
                       for i, label in enumerate(run.labels)}}
    return out


def clips_read_right(figures: dict) -> list[tuple[int, int]]:
    """(clips read as intended, clips) for each classifier, over every face, label and seed of
    `summary`'s figures."""
    counts: list[tuple[int, int]] = []
    for face in figures.values():
        for label, entry in face["labels"].items():
            per = [(sum(p == label for p in votes), len(votes)) for votes in entry["predicted"]]
            counts = per if not counts else [(a + b, n + m) for (a, n), (b, m) in zip(counts, per)]
    return counts
