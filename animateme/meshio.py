"""Read and write triangle meshes as OBJ and PLY, with numpy alone.

Readers return `(vertices (N,3) float64, faces (F,3) int32)`: polygons are fan-triangulated
(a, b, c, d -> abc, acd), which keeps their winding. Texture coordinates, normals, colours, groups
and materials are skipped: the project needs positions and topology only. Every problem with a
file is an AnimateMeError of one line naming the file and saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from animateme_blender.core.errors import AnimateMeError

MESH_SUFFIXES = (".obj", ".ply")


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an .obj or .ply file, chosen by its extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".obj":
        return read_obj(path)
    if suffix == ".ply":
        return read_ply(path)
    raise AnimateMeError(f"{path}: unsupported mesh format {suffix or '(no extension)'!r}: use .obj or .ply")


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    suffix = Path(path).suffix.lower()
    if suffix == ".obj":
        return write_obj(path, vertices, faces)
    if suffix == ".ply":
        return write_ply(path, vertices, faces)
    raise AnimateMeError(f"{path}: unsupported mesh format {suffix or '(no extension)'!r}: use .obj or .ply")


# ---------------------------------------------------------------------------------------- OBJ

def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    text = _read_bytes(path).decode("utf-8", errors="replace")
    vertices: list[list[float]] = []
    polygons: list[tuple[int, list[int]]] = []  # (line number, 0-based indices)
    for number, line in _obj_lines(text):
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key == "v":
            try:
                vertices.append([float(w) for w in words[1:4]])
            except ValueError:
                raise AnimateMeError(f"{path}:{number}: malformed vertex line {line.strip()[:60]!r}: "
                                     "fix or re-export the file") from None
            if len(vertices[-1]) != 3:
                raise AnimateMeError(f"{path}:{number}: vertex line needs x y z, got {line.strip()[:60]!r}: "
                                     "fix or re-export the file")
        elif key == "f":
            if len(words) < 4:
                raise AnimateMeError(f"{path}:{number}: a face needs at least 3 vertices, got "
                                     f"{line.strip()[:60]!r}: fix or re-export the file")
            indices = []
            for word in words[1:]:
                try:
                    index = int(word.split("/", 1)[0])
                except ValueError:
                    raise AnimateMeError(f"{path}:{number}: malformed face line {line.strip()[:60]!r}: "
                                         "fix or re-export the file") from None
                # OBJ counts from 1; negative indices count back from the latest vertex.
                resolved = index - 1 if index > 0 else len(vertices) + index
                if index == 0 or not 0 <= resolved < len(vertices):
                    raise AnimateMeError(f"{path}:{number}: face refers to vertex {index}, but only "
                                         f"{len(vertices)} vertices come before it: the file is "
                                         "damaged; re-export it")
                indices.append(resolved)
            polygons.append((number, indices))
    if not vertices:
        raise AnimateMeError(f"{path}: no vertices found, so this is not a mesh: export the mesh as OBJ "
                             "with its vertices and faces")
    faces = _triangulate(path, [p for _, p in polygons])
    return np.asarray(vertices, dtype=np.float64), faces


def _obj_lines(text: str):
    """(line number, line) with comments removed and backslash continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        if line.rstrip().endswith("\\"):
            if not pending:
                start = number
            pending += line.rstrip()[:-1] + " "
            continue
        if pending:
            yield start, pending + line
            pending = ""
        else:
            yield number, line
    if pending:
        yield start, pending


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    vertices, faces = _check_arrays(path, vertices, faces)
    lines = ["# written by AnimateMe"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
    _write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    data = _read_bytes(path)
    if not data.startswith(b"ply"):
        raise AnimateMeError(f"{path}: not a PLY file (it does not start with 'ply'): "
                             "export the mesh as PLY or OBJ")
    end = data.find(b"end_header")
    if end < 0:
        raise AnimateMeError(f"{path}: PLY header has no 'end_header': the file is damaged; re-export it")
    newline = data.find(b"\n", end)
    body_start = len(data) if newline < 0 else newline + 1
    fmt, elements = _parse_ply_header(path, data[:end].decode("ascii", errors="replace"))
    if fmt == "ascii":
        values = _read_ply_ascii(path, data[body_start:].decode("ascii", errors="replace"), elements)
    else:
        values = _read_ply_binary(path, data, body_start, elements, "<" if fmt.endswith("little_endian") else ">")
    if "vertex" not in values or len(values["vertex"]) == 0:
        raise AnimateMeError(f"{path}: PLY file has no vertices, so it is not a mesh: export the mesh "
                             "with its vertices and faces")
    vertex = values["vertex"]
    try:
        vertices = np.stack([vertex[axis] for axis in ("x", "y", "z")], axis=1).astype(np.float64)
    except (KeyError, ValueError, TypeError):
        raise AnimateMeError(f"{path}: PLY vertices lack x, y or z properties: re-export the mesh") from None
    polygons = values.get("face", [])
    flat = polygons.ravel() if isinstance(polygons, np.ndarray) else np.concatenate([np.zeros(0, np.int64), *polygons])
    outside = flat[(flat < 0) | (flat >= len(vertices))]
    if outside.size:
        raise AnimateMeError(f"{path}: a face refers to vertex {outside[0]}, but the file has only "
                             f"{len(vertices)} vertices: the file is damaged; re-export it")
    return vertices, _triangulate(path, polygons)


def _parse_ply_header(path, header: str):
    lines = header.splitlines()
    fmt, elements = None, []  # elements: [name, count, [(property, type) or (property, count_type, item_type)]]
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
                if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
                    raise ValueError
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
            elif words[0] == "property":
                if words[1] == "list":
                    elements[-1][2].append((words[4], _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
                else:
                    elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError
        except (IndexError, ValueError, KeyError):
            raise AnimateMeError(f"{path}: PLY header line {number} {line.strip()[:60]!r} is not understood: "
                                 "re-export the mesh as PLY or OBJ") from None
    if fmt is None:
        raise AnimateMeError(f"{path}: PLY header has no format line: the file is damaged; re-export it")
    return fmt, elements


def _read_ply_ascii(path, body: str, elements) -> dict:
    lines = iter(body.splitlines())
    values = {}
    for name, count, properties in elements:
        rows = []
        for row in range(count):
            line = next(lines, None)
            while line is not None and not line.strip():
                line = next(lines, None)
            if line is None:
                raise AnimateMeError(f"{path}: PLY file ends after {row} of {count} {name} lines: "
                                     "the file is truncated; re-export it")
            rows.append(line.split())
        values[name] = _ascii_element(path, name, rows, properties)
    return values


def _ascii_element(path, name, rows, properties):
    try:
        if all(len(p) == 2 for p in properties):  # plain numbers: one array per property
            table = np.asarray(rows, dtype=np.float64)
            if table.ndim != 2 or table.shape[1] != len(properties):
                raise ValueError
            return {p[0]: table[:, i] for i, p in enumerate(properties)}
        if len(properties) == 1 and rows and len({len(words) for words in rows}) == 1:
            table = np.asarray(rows, dtype=np.int64)  # all polygons the same size: one array
            if np.all(table[:, 0] == table.shape[1] - 1):
                return table[:, 1:] if properties[0][0] in ("vertex_indices", "vertex_index") else []
        lists = []
        for words in rows:  # an element with a list (faces): read its vertex list
            position, found = 0, None
            for prop in properties:
                if len(prop) == 3:
                    count = int(words[position])
                    items = np.asarray(words[position + 1:position + 1 + count], dtype=np.int64)
                    if len(items) != count:
                        raise ValueError
                    if prop[0] in ("vertex_indices", "vertex_index") and found is None:
                        found = items
                    position += 1 + count
                else:
                    position += 1
            lists.append(found if found is not None else np.zeros(0, np.int64))
        return lists
    except (ValueError, IndexError):
        raise AnimateMeError(f"{path}: malformed {name} data in this ASCII PLY: the file is damaged; "
                             "re-export it") from None


def _read_ply_binary(path, data: bytes, offset: int, elements, order: str) -> dict:
    values = {}
    for name, count, properties in elements:
        if all(len(p) == 2 for p in properties):
            dtype = np.dtype([(p[0], order + p[1]) for p in properties])
            values[name], offset = _take(path, data, offset, dtype, count, name)
        elif len(properties) == 1:
            values[name], offset = _read_binary_lists(path, data, offset, count, properties[0], order, name)
        else:  # rare mixes of scalars and lists: walk row by row
            values[name], offset = _read_mixed_rows(path, data, offset, count, properties, order, name)
    return values


def _read_binary_lists(path, data, offset, count, prop, order, name):
    _, count_type, item_type = prop
    count_dtype, item_dtype = np.dtype(order + count_type), np.dtype(order + item_type)
    if count == 0:
        return [], offset
    # Fast path: every list the same length (all triangles, say) is one fixed-size record.
    first, _ = _take(path, data, offset, count_dtype, 1, name)
    size = int(first[0])
    record = np.dtype([("n", count_dtype), ("items", item_dtype, (size,))])
    if offset + record.itemsize * count <= len(data):
        table = np.frombuffer(data, dtype=record, count=count, offset=offset)
        if np.all(table["n"] == size):  # an (F, size) array, triangulated without a Python loop
            return table["items"].astype(np.int64), offset + record.itemsize * count
    return _read_mixed_rows(path, data, offset, count, [prop], order, name)


def _read_mixed_rows(path, data, offset, count, properties, order, name):
    lists = []
    for _ in range(count):
        found = None
        for prop in properties:
            if len(prop) == 3:
                n, offset = _take(path, data, offset, np.dtype(order + prop[1]), 1, name)
                items, offset = _take(path, data, offset, np.dtype(order + prop[2]), int(n[0]), name)
                if prop[0] in ("vertex_indices", "vertex_index") and found is None:
                    found = items.astype(np.int64)
            else:
                _, offset = _take(path, data, offset, np.dtype(order + prop[1]), 1, name)
        lists.append(found if found is not None else np.zeros(0, np.int64))
    return lists, offset


def _take(path, data, offset, dtype, count, name):
    if count < 0 or offset + dtype.itemsize * count > len(data):
        raise AnimateMeError(f"{path}: PLY file ends inside its {name} data: the file is truncated; re-export it")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset), offset + dtype.itemsize * count


def write_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, binary: bool = True) -> None:
    vertices, faces = _check_arrays(path, vertices, faces)
    fmt = "binary_little_endian" if binary else "ascii"
    header = (f"ply\nformat {fmt} 1.0\ncomment written by AnimateMe\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    if binary:
        record = np.dtype([("n", "u1"), ("items", "<i4", (3,))])
        table = np.empty(len(faces), dtype=record)
        table["n"], table["items"] = 3, faces
        body = vertices.astype("<f4").tobytes() + table.tobytes()
    else:
        lines = [f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices.tolist()]
        lines += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
        body = ("\n".join(lines) + "\n").encode("ascii")
    _write_atomically(path, header.encode("ascii") + body)


# ------------------------------------------------------------------------------------- shared

def _read_bytes(path) -> bytes:
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a mesh file" if path.is_dir() else "does not exist"
        raise AnimateMeError(f"{path} {what}: check the path")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AnimateMeError(f"{path}: cannot be read ({error.strerror}): check its permissions") from None
    if not data.strip():
        raise AnimateMeError(f"{path} is empty: export the mesh again")
    return data


def _triangulate(path, polygons) -> np.ndarray:
    """Fan-triangulate polygons: a list of index sequences, or an (F, k) array of k-gons."""
    if isinstance(polygons, np.ndarray):
        k = polygons.shape[1] if polygons.ndim == 2 else 0
        fans = [polygons[:, [0, i, i + 1]] for i in range(1, k - 1)]
        # Keep each polygon's triangles together, in fan order, like the list path does.
        triangles = np.stack(fans, axis=1).reshape(-1, 3) if fans else np.zeros((0, 3), np.int64)
    else:
        triangles = [[p[0], p[i], p[i + 1]] for p in polygons for i in range(1, len(p) - 1)]
    if not len(triangles):
        raise AnimateMeError(f"{path}: no faces found, so this is a point cloud rather than a mesh: "
                             "export the mesh with its faces")
    return np.asarray(triangles, dtype=np.int32)


def _check_arrays(path, vertices, faces):
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not len(vertices):
        raise AnimateMeError(f"cannot write {path}: vertices must be a non-empty (N, 3) array, got {vertices.shape}")
    if not np.all(np.isfinite(vertices)):
        raise AnimateMeError(f"cannot write {path}: vertices hold NaN or infinite values")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise AnimateMeError(f"cannot write {path}: faces must be an (F, 3) integer array, got {faces.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise AnimateMeError(f"cannot write {path}: faces refer to vertices outside 0..{len(vertices) - 1}")
    return vertices, faces.astype(np.int64)


def _write_atomically(path, payload: bytes) -> None:
    """Write beside the target and rename, so a crash never leaves a half-written mesh."""
    path = Path(path)
    if not path.parent.is_dir():
        raise AnimateMeError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(payload)
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise AnimateMeError(f"cannot write {path} ({error.strerror}): check the folder's permissions") from None

