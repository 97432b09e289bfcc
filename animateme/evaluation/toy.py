"""A tiny synthetic corpus in the corpus contract, for tests and smoke runs of `animateme eval`.

A curved grid stands in for the face; each expression is a smooth displacement field of its own
(a bump at its own place, moving its own way) that follows the sequence's progression curve, with
a per-subject amplitude and a little noise. Nothing here comes from the face model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animateme_blender.core.sample.progression import LABELS, Timing, progression_curve
from animateme.spirals import compute_spirals
from animateme_blender.core.template import Template, mesh_fingerprint


def grid_mesh(side: int = 12, extent: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """A side x side grid in x/y (mm), bulging towards +Z like a face, triangles wound to face +Z."""
    u = np.linspace(-1.0, 1.0, side)
    x, y = np.meshgrid(u, u)
    vertices = np.stack([x * extent, y * extent, -25.0 * (x ** 2 + y ** 2)], axis=-1).reshape(-1, 3)
    faces = []
    for row in range(side - 1):
        for col in range(side - 1):
            a, b = row * side + col, row * side + col + 1
            c, d = a + side, b + side
            faces += [(a, b, d), (a, d, c)]
    return vertices.astype(np.float32), np.asarray(faces, dtype=np.int32)


def toy_template(side: int = 12) -> Template:
    vertices, faces = grid_mesh(side)
    count = len(vertices)
    spirals = compute_spirals(faces, count, 12, count // 2 + side // 2, vertices=vertices)
    nearest = np.arange(count, dtype=np.int32)
    return Template(
        vertices=vertices, faces=faces, spirals=spirals.astype(np.int32), source_index=nearest,
        full_index=nearest, upsample_index=np.repeat(nearest[:, None], 3, axis=1),
        upsample_weight=np.tile(np.float32([1, 0, 0]), (count, 1)),
        landmarks=np.linspace(0, count - 1, 68).astype(np.int32),
        identity_modes=np.zeros((1, count, 3), np.float32), expression_modes=np.zeros((1, count, 3), np.float32),
        expression_names=np.array(["none"]), fingerprint=mesh_fingerprint(vertices, faces))


def expression_fields(vertices: np.ndarray, labels: int, seed: int = 7) -> np.ndarray:
    """(C,V,3) apex displacement of each expression, a few mm, smooth over the mesh."""
    rng = np.random.default_rng(seed)
    span = np.ptp(vertices[:, :2], axis=0).max() / 2
    fields = []
    for _ in range(labels):
        centre = rng.uniform(-0.6, 0.6, 2) * span
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        weight = np.exp(-np.sum((vertices[:, :2] - centre) ** 2, axis=1) / (2 * (0.35 * span) ** 2))
        fields.append(6.0 * weight[:, None] * direction[None, :])
    return np.asarray(fields, np.float32)


def toy_split(template: Template, subjects: list[int], frames: int = 40, noise: float = 0.05,
              seed: int = 0, takes: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    fields = expression_fields(template.vertices, len(LABELS))
    neutral, deform, label, progression, subject, extremeness = [], [], [], [], [], []
    for person in subjects:
        person_rng = np.random.default_rng(1000 + person)
        face = template.vertices * person_rng.uniform(0.9, 1.1) + person_rng.normal(0, 0.5, template.vertices.shape)
        amplitude = person_rng.uniform(0.8, 1.2)
        for index in np.repeat(np.arange(len(LABELS)), takes):
            intensity = float(rng.uniform(0.5, 1.0))
            onset = rng.uniform(0.05, 0.2)
            apex = onset + rng.uniform(0.15, 0.3)
            offset = apex + rng.uniform(0.1, 0.3)
            curve = progression_curve(frames, intensity, Timing(onset, apex, offset, min(offset + 0.2, 1.0)))
            motion = amplitude * curve[:, None, None] * fields[index][None]
            neutral.append(face)
            deform.append(motion + rng.normal(0, noise, motion.shape))
            label.append(index)
            progression.append(curve)
            subject.append(person)
            extremeness.append(intensity)
    return {
        "neutral": np.asarray(neutral, np.float32), "deform": np.asarray(deform, np.float32),
        "label": np.asarray(label, np.int64), "label_names": np.array(LABELS),
        "progression": np.asarray(progression, np.float32), "subject": np.asarray(subject, np.int64),
        "extremeness": np.asarray(extremeness, np.float32), "fingerprint": np.array(template.fingerprint),
    }


def write_toy_corpus(directory: str | Path, train_subjects: int = 8, test_subjects: int = 3,
                     side: int = 12, frames: int = 40) -> Path:
    """data-like folder: template.npz and corpus/{train,test,template}.npz; returns corpus/."""
    directory = Path(directory)
    template = toy_template(side)
    template.save(directory / "template.npz")
    corpus = directory / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    template.save(corpus / "template.npz")
    np.savez(corpus / "train.npz", **toy_split(template, list(range(train_subjects)), frames, seed=1))
    np.savez(corpus / "test.npz",
             **toy_split(template, list(range(100, 100 + test_subjects)), frames, seed=2, takes=2))
    return corpus
