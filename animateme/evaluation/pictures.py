"""The report's pictures: per-frame error plot (002 Fig. 5), a frame strip per expression with each
generator beside the ground truth, and per-vertex error heatmaps on the face (002 Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animateme import render

from . import metrics


def captioned(image: np.ndarray, text: str, band: int = 14) -> np.ndarray:
    """The picture with `text` on a light band above it, readable over any colours."""
    top = np.full((band, image.shape[1], 3), render.BACKGROUND, dtype=np.uint8)
    return render.label(np.concatenate([top, image]), text)


def save_small_png(image: np.ndarray, path: Path) -> Path:
    """A 256-colour PNG: these pictures are committed with every report, so keep them small."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def per_frame_plot(figures: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 3.2), dpi=100)
    for name, scores in figures["generators"].items():
        if name == "gt":
            continue
        axes.plot(np.arange(1, len(scores["per_frame_error"]) + 1), scores["per_frame_error"], label=name)
    axes.set_xlabel("frame")
    axes.set_ylabel("mean per-vertex error (mm)")
    axes.set_title("Per-frame error on the test subjects")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path


def example_rows(labels: np.ndarray, count: int) -> list[int]:
    """The first evaluated sequence of each expression (row index into the evaluated set)."""
    return [int(np.flatnonzero(labels == label)[0]) if np.any(labels == label) else -1
            for label in range(count)]


def face_frame(vertices: np.ndarray, landmarks: np.ndarray | None) -> tuple[np.ndarray, float]:
    """A camera on the face itself (the 68 landmarks' box, with a margin) rather than the whole
    head and neck, so that expressions are large enough to judge."""
    if landmarks is None or len(landmarks) == 0:
        return render.camera_frame(vertices)
    points = vertices[np.asarray(landmarks)]
    low, high = points.min(axis=0), points.max(axis=0)
    return (low + high) / 2, 0.75 * float(max(high[0] - low[0], high[1] - low[1]))


def expression_strips(outputs: dict, truth: np.ndarray, neutral: np.ndarray, labels: np.ndarray,
                      label_names: tuple[str, ...], faces: np.ndarray, directory: Path,
                      landmarks: np.ndarray | None = None, frames: int = 5, size: int = 144) -> list[Path]:
    """eval_strip_<expression>.png: rows ground truth then each generator, `frames` frames spread over
    the sequence (always including the apex), front view on the face, one camera per picture."""
    written = []
    rows = example_rows(labels, len(label_names))
    for label, row in enumerate(rows):
        if row < 0:
            continue
        sequences = {"ground truth": truth[row]}
        sequences.update({name: out[row] for name, out in outputs.items() if name != "gt"})
        length = truth.shape[1]
        apex = int(np.argmax(np.linalg.norm(truth[row], axis=-1).mean(axis=-1)))
        picks = sorted(set(np.linspace(0, length - 1, frames).round().astype(int).tolist()) | {apex})
        frame = face_frame(neutral[row], landmarks)
        pictures = []
        for name, sequence in sequences.items():
            for column, k in enumerate(picks):
                image = render.render_mesh(neutral[row] + sequence[k], faces, size=(size, size), frame=frame)
                text = f"{name}, frame {k}" if column == 0 else f"frame {k}"
                pictures.append(captioned(image, text))
        path = directory / f"eval_strip_{label_names[label]}.png"
        save_small_png(render.strip(pictures, columns=len(picks)), path)
        written.append(path)
    return written


def error_heatmaps(outputs: dict, truth: np.ndarray, template_vertices: np.ndarray,
                   faces: np.ndarray, path: Path, size: int = 200) -> Path | None:
    """eval_heatmap.png: each generator's mean per-vertex error over all evaluated sequences and frames,
    drawn on the template neutral, one shared colour scale (its top in mm is written on the
    picture) so generators compare at a glance."""
    maps = {name: metrics.error_map(out, truth) for name, out in outputs.items() if name != "gt"}
    if not maps:
        return None
    top = float(max(np.percentile(values, 99) for values in maps.values()))
    pictures = []
    for name, values in maps.items():
        image = render.render_mesh(template_vertices, faces, colors=render.heat_colors(values, top),
                                   size=(size, size))
        pictures.append(captioned(image, f"{name}: mean {values.mean():.2f} mm"))
    pictures.append(captioned(colour_bar(top, size), "per-vertex error"))
    return save_small_png(render.strip(pictures), path)


def colour_bar(top: float, size: int) -> np.ndarray:
    """A vertical colour bar from 0 (bottom) to `top` mm, as a picture of the same size."""
    image = np.full((size, size, 3), render.BACKGROUND, dtype=np.uint8)
    values = np.linspace(top, 0.0, size - 40)
    colours = (render.heat_colors(values, top) * 255).round().astype(np.uint8)
    image[20:size - 20, size // 2 - 12:size // 2 + 12] = colours[:, None, :]
    image = render.label(image, f"{top:.1f} mm")
    from PIL import Image, ImageDraw
    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).text((4, size - 16), "0 mm", fill=(20, 20, 20))
    return np.asarray(picture)
