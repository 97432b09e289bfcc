"""A small numpy rasteriser for pictures people judge: previews, eval strips, error heatmaps.

Orthographic, z-buffered, Gouraud-shaded triangles. Inputs are in the face model's frame (+Y up,
face looking down +Z), so the default camera looks at the face from the front. Fast enough for a
few thousand triangles at a few hundred pixels; nothing here needs Blender or a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VIEWS = {"front": 0.0, "three_quarter": 35.0, "side": 90.0}
BACKGROUND = (245, 245, 245)
SKIN = (0.80, 0.72, 0.66)


def render_mesh(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
                view: str | float = "front", size: tuple[int, int] = (256, 256),
                frame: tuple[np.ndarray, float] | None = None) -> np.ndarray:
    """(H,W,3) uint8 picture of the mesh. `colors` is (N,3) in [0,1] per vertex (default skin);
    `frame` = (centre, half-extent) fixes the camera so that a sequence does not wobble."""
    angle = np.deg2rad(VIEWS[view] if isinstance(view, str) else float(view))
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    points = np.asarray(vertices, dtype=np.float64) @ rotation.T
    centre, extent = frame if frame is not None else camera_frame(vertices)
    centre = np.asarray(centre) @ rotation.T
    width, height = size
    scale = 0.5 * min(width, height) / (extent * 1.05)
    px = (points[:, 0] - centre[0]) * scale + width / 2
    py = height / 2 - (points[:, 1] - centre[1]) * scale
    depth = points[:, 2]
    normals = vertex_normals(points, faces)
    shade = 0.25 + 0.75 * np.abs(normals[:, 2])  # light from the camera; two-sided
    base = np.broadcast_to(np.asarray(SKIN), points.shape) if colors is None else np.asarray(colors)
    vertex_rgb = np.clip(base * shade[:, None], 0, 1)

    image = np.empty((height, width, 3))
    image[:] = np.asarray(BACKGROUND) / 255
    zbuffer = np.full((height, width), -np.inf)
    faces = np.asarray(faces)
    # Dense meshes are mostly triangles a few pixels wide: those are rasterised all at once in a
    # small window each; the few large ones one by one in their own (a 50k-triangle frame: seconds).
    span = np.maximum(np.ptp(px[faces], axis=1), np.ptp(py[faces], axis=1))
    small = span < SMALL_TRIANGLE_PIXELS
    for index in np.flatnonzero(~small):
        tri = faces[index:index + 1]
        window = min(int(np.ceil(span[index])) + 1, max(width, height))
        _draw_triangles(image, zbuffer, px[tri], py[tri], depth[tri], vertex_rgb[tri], window)
    tris = faces[small]
    _draw_triangles(image, zbuffer, px[tris], py[tris], depth[tris], vertex_rgb[tris], SMALL_TRIANGLE_PIXELS)
    return (image * 255).round().astype(np.uint8)


SMALL_TRIANGLE_PIXELS = 6


def _draw_triangles(image, zbuffer, xs, ys, zs, rgb, window: int) -> None:
    """(T,3) screen coordinates of triangles that fit a (window+1)^2-pixel box from the top-left of
    their bounds: every pixel of every box is tested at once, then the z-buffer keeps the nearest
    fragment."""
    if len(xs) == 0:
        return
    height, width = zbuffer.shape
    offsets = np.arange(window + 1)
    x0 = np.clip(np.floor(xs.min(axis=1)), 0, width - 1).astype(int)
    y0 = np.clip(np.floor(ys.min(axis=1)), 0, height - 1).astype(int)
    px = np.broadcast_to(x0[:, None, None] + offsets[None, None, :], (len(xs), window + 1, window + 1))
    py = np.broadcast_to(y0[:, None, None] + offsets[None, :, None], px.shape)
    gx, gy = px + 0.5, py + 0.5
    area = (xs[:, 1] - xs[:, 0]) * (ys[:, 2] - ys[:, 0]) - (xs[:, 2] - xs[:, 0]) * (ys[:, 1] - ys[:, 0])
    keep = np.abs(area) >= 1e-12
    area = np.where(keep, area, 1.0)[:, None, None]
    x, y = xs[:, :, None, None], ys[:, :, None, None]                   # (T,3,1,1)
    w1 = ((gx - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (gy - y[:, 0])) / area
    w2 = ((x[:, 1] - x[:, 0]) * (gy - y[:, 0]) - (gx - x[:, 0]) * (y[:, 1] - y[:, 0])) / area
    w0 = 1.0 - w1 - w2
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & keep[:, None, None] & (px < width) & (py < height)
    t, r, c = np.nonzero(inside)
    if len(t) == 0:
        return
    a, b, g = w0[t, r, c], w1[t, r, c], w2[t, r, c]
    z = a * zs[t, 0] + b * zs[t, 1] + g * zs[t, 2]
    pixel = py[t, r, c] * width + px[t, r, c]
    flat_z = zbuffer.reshape(-1)
    np.maximum.at(flat_z, pixel, z)
    nearest = z >= flat_z[pixel]                                      # the fragment that won its pixel
    colour = a[:, None] * rgb[t, 0] + b[:, None] * rgb[t, 1] + g[:, None] * rgb[t, 2]
    image.reshape(-1, 3)[pixel[nearest]] = colour[nearest]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    face_normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    normals = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def camera_frame(*vertex_sets: np.ndarray) -> tuple[np.ndarray, float]:
    """One camera for several meshes (all frames of a sequence): centre and half-extent."""
    points = np.concatenate([np.asarray(v).reshape(-1, 3) for v in vertex_sets])
    low, high = points.min(0), points.max(0)
    return (low + high) / 2, float(max(high[0] - low[0], high[1] - low[1]) / 2)


def heat_colors(values: np.ndarray, vmax: float | None = None, cmap: str = "inferno") -> np.ndarray:
    """(N,) values -> (N,3) colours; 0 maps to the colormap's start, vmax to its end."""
    from matplotlib import colormaps

    vmax = float(np.max(values)) if vmax is None else vmax
    return colormaps[cmap](np.clip(np.asarray(values) / max(vmax, 1e-12), 0, 1))[:, :3]


def label(image: np.ndarray, text: str) -> np.ndarray:
    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).text((4, 2), text, fill=(20, 20, 20))
    return np.asarray(picture)


def strip(images: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally sized images into rows of `columns` (default: one row)."""
    columns = columns or len(images)
    height, width, _ = images[0].shape
    rows = -(-len(images) // columns)
    sheet = np.full((rows * height, columns * width, 3), BACKGROUND, dtype=np.uint8)
    for i, picture in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * height:(r + 1) * height, c * width:(c + 1) * width] = picture
    return sheet


def save_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, optimize=True)
    return path


def save_gif(images: list[np.ndarray], path: str | Path, fps: int = 20) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.fromarray(i) for i in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return path
