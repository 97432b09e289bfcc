"""A tiny template and corpus for the diffusion tests (not the face model): a 8x8 grid of vertices,
six labels, each a smooth bump in its own place and direction, scaled by the progression."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = ("happy", "sad", "surprise", "fear", "angry", "disgust")
GRID = 8
FRAMES = 10


def grid_mesh(n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.linspace(-40, 40, n), np.linspace(-40, 40, n))
    vertices = np.stack([u.ravel(), v.ravel(), np.zeros(n * n)], axis=1).astype(np.float32)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [(a, b, d), (a, d, c)]
    return vertices, np.asarray(faces, dtype=np.int32)


def knn_spirals(vertices: np.ndarray, length: int) -> np.ndarray:
    """Nearest-first neighbour orderings: a stand-in for true spirals, enough for the tests."""
    distance = np.linalg.norm(vertices[:, None] - vertices[None], axis=-1)
    return np.argsort(distance, axis=1, kind="stable")[:, :length].astype(np.int32)


def label_patterns(vertices: np.ndarray) -> np.ndarray:
    """(C,V,3) mm: label c moves a bump around its own centre along its own direction."""
    angles = np.linspace(0, 2 * np.pi, len(LABELS), endpoint=False)
    patterns = []
    for c, angle in enumerate(angles):
        centre = 25 * np.array([np.cos(angle), np.sin(angle), 0.0])
        weight = np.exp(-np.sum((vertices - centre) ** 2, axis=1) / (2 * 15.0 ** 2))
        direction = np.array([np.cos(angle), np.sin(angle), 1.0 if c % 2 else -1.0])
        patterns.append(6.0 * weight[:, None] * direction[None])
    return np.asarray(patterns, dtype=np.float32)


def write_fixture(folder: Path, subjects: int = 6, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    vertices, faces = grid_mesh()
    fingerprint = f"v{len(vertices)}-fixture0000000000"
    template = folder / "template.npz"
    np.savez(template, vertices=vertices, faces=faces, spirals=knn_spirals(vertices, 12),
             fingerprint=np.array(fingerprint))
    patterns = label_patterns(vertices)
    ramp = np.minimum(1.0, np.linspace(0, 2, FRAMES)).astype(np.float32)
    neutral, deform, label, progression, subject = [], [], [], [], []
    for s in range(subjects):
        face = vertices + rng.normal(0, 2.0, size=vertices.shape).astype(np.float32)
        for c in range(len(LABELS)):
            extremeness = rng.uniform(0.6, 1.0)
            p = extremeness * ramp
            neutral.append(face)
            deform.append(p[:, None, None] * patterns[c][None] * rng.uniform(0.9, 1.1))
            label.append(c)
            progression.append(p)
            subject.append(s)
    corpus = folder / "train.npz"
    np.savez(corpus, neutral=np.asarray(neutral), deform=np.asarray(deform, dtype=np.float32),
             label=np.asarray(label), label_names=np.asarray(LABELS), progression=np.asarray(progression),
             subject=np.asarray(subject), fingerprint=np.array(fingerprint))
    return {"template": template, "corpus": corpus, "fingerprint": fingerprint, "patterns": patterns}


def tiny_train_config(folder: Path, paths: dict, steps: int = 400, **overrides):
    from animateme.diffusion.train import TrainConfig

    settings = dict(corpus=str(paths["corpus"]), template=str(paths["template"]), run_dir=str(folder / "run"),
                    steps=steps, batch=32, lr=3e-3, warmup=20, ema_decay=0.99, seed=0, device="cpu",
                    channels=(16, 16, 16), spiral_lengths=(6, 9, 9), log_every=10, progress=False,
                    # x0 head: a 400-step v model is still noisy at the clean end (the v head and
                    # global context have their own tests in test_diffusion_train.py)
                    prediction="x0", global_context=False)
    settings.update(overrides)
    return TrainConfig(**settings)


def trained_fixture(folder: Path, steps: int = 300, **overrides) -> dict:
    """Fixture corpus + a tiny trained run + its ONNX export (about ten seconds on one core)."""
    import torch

    from animateme.diffusion.export import export
    from animateme.diffusion.train import train

    torch.set_num_threads(1)
    paths = write_fixture(folder)
    paths["checkpoint"] = train(tiny_train_config(folder, paths, steps=steps, threads=1, **overrides))
    paths["onnx"] = folder / "model.onnx"
    paths["card"] = export(paths["checkpoint"], paths["template"], paths["onnx"])
    return paths
