"""Write a mesh with named morph targets and their animation as one binary glTF 2.0 file (.glb).

Only what a rig needs: one mesh (positions, normals, triangles), its morph targets (position
offsets; names in `mesh.extras.targetNames`, the convention glTF viewers and Blender's importer
read), and one animation of the node's `weights`, linear between frames. Written with numpy alone
(no glTF library needed); read back in the tests with a glTF library and Blender. The headless
rig output (`animateme generate --output rig`) writes it; inside Blender the rig is shape keys and
Actions, and Blender's own exporter writes glTF, so this module is not in the extension's zip.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.geometry import vertex_normals

FLOAT, UINT32 = 5126, 5125                 # glTF component types
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
GLB_MAGIC, GLB_VERSION = 0x46546C67, 2
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942


class _Buffer:
    """The binary chunk and the accessors into it."""

    def __init__(self):
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, kind: str, target: int | None = None, bounds: bool = False) -> int:
        array = np.ascontiguousarray(array)
        component = UINT32 if array.dtype == np.uint32 else FLOAT
        offset = len(self.data)
        self.data += array.tobytes()
        self.data += b"\0" * (-len(self.data) % 4)            # every view starts 4-byte aligned
        view = {"buffer": 0, "byteOffset": offset, "byteLength": array.nbytes}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        accessor = {"bufferView": len(self.views) - 1, "componentType": component,
                    "count": int(len(array)), "type": kind}
        if bounds:   # required for POSITION, morph targets included
            accessor["min"] = np.atleast_1d(array.min(axis=0)).astype(np.float64).tolist()
            accessor["max"] = np.atleast_1d(array.max(axis=0)).astype(np.float64).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def write_glb(path: str | Path, vertices: np.ndarray, faces: np.ndarray, targets: np.ndarray,
              target_names, weights: np.ndarray, fps: float = 24.0, name: str = "face") -> Path:
    """vertices (N,3) and targets (S,N,3) in metres, glTF axes (+Y up); faces (F,3); weights (K,S)
    per frame at `fps`. Returns the path written (atomically)."""
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces)
    targets = np.asarray(targets, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    names = [str(n) for n in target_names]
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise AnimateMeError(f"glTF export needs (N,3) vertices and (F,3) triangles, got {vertices.shape}, {faces.shape}")
    if targets.shape != (len(names),) + vertices.shape or weights.ndim != 2 or weights.shape[1] != len(names):
        raise AnimateMeError(f"glTF export: {len(names)} names, targets {targets.shape} and weights "
                             f"{weights.shape} disagree with {vertices.shape} vertices")
    if not (np.isfinite(vertices).all() and np.isfinite(targets).all() and np.isfinite(weights).all()):
        raise AnimateMeError("glTF export: NaN or infinite values; regenerate the animation")
    if fps <= 0:
        raise AnimateMeError(f"glTF export: fps must be positive, got {fps}")
    buffer = _Buffer()
    position = buffer.add(vertices, "VEC3", ARRAY_BUFFER, bounds=True)
    normals = vertex_normals(vertices.astype(np.float64), faces)
    normals[np.linalg.norm(normals, axis=1) < 0.5] = (0.0, 1.0, 0.0)   # on no triangle: glTF wants unit length
    normal = buffer.add(normals.astype(np.float32), "VEC3", ARRAY_BUFFER)
    indices = buffer.add(faces.astype(np.uint32).ravel(), "SCALAR", ELEMENT_ARRAY_BUFFER)
    morphs = [{"POSITION": buffer.add(target, "VEC3", ARRAY_BUFFER, bounds=True)} for target in targets]
    times = buffer.add(np.arange(len(weights), dtype=np.float32) / np.float32(fps), "SCALAR", bounds=True)
    values = buffer.add(weights.ravel(), "SCALAR")
    document = {
        "asset": {"version": "2.0", "generator": "AnimateMe for Blender"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "weights": [0.0] * len(names), "extras": {"targetNames": names},
                    "primitives": [{"attributes": {"POSITION": position, "NORMAL": normal},
                                    "indices": indices, "mode": 4, "targets": morphs}]}],
        "animations": [{"name": name + "_performance",
                        "samplers": [{"input": times, "output": values, "interpolation": "LINEAR"}],
                        "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}],
        "buffers": [{"byteLength": len(buffer.data)}],
        "bufferViews": buffer.views,
        "accessors": buffer.accessors,
    }
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary = bytes(buffer.data)
    total = 12 + 8 + len(text) + 8 + len(binary)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        handle.write(struct.pack("<III", GLB_MAGIC, GLB_VERSION, total))
        handle.write(struct.pack("<II", len(text), CHUNK_JSON) + text)
        handle.write(struct.pack("<II", len(binary), CHUNK_BIN) + binary)
    partial.replace(path)
    return path


def export_rig(rig, weights: np.ndarray, vertices: np.ndarray, faces: np.ndarray, path,
               metres_per_unit: float, fps: float = 24.0, name: str = "face") -> Path:
    """A rig (core/rig/build.py's `Rig`) and one performance as a .glb: the user's mesh and shapes
    in metres (glTF's unit; the fit knows the mesh's unit), axes as given (glTF expects +Y up, as
    most OBJ exports are)."""
    if not metres_per_unit > 0:
        raise AnimateMeError(f"metres per unit must be positive, got {metres_per_unit}")
    return write_glb(path, np.asarray(vertices, np.float64) * metres_per_unit, faces,
                     rig.shapes.astype(np.float64) * metres_per_unit, rig.names, weights, fps=fps, name=name)
