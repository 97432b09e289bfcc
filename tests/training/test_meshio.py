"""OBJ and PLY reading and writing: the forms real exporters write, round trips, and bad files."""

import numpy as np
import pytest

from animateme_blender.core.errors import AnimateMeError
from animateme.meshio import read_mesh, read_obj, read_ply, write_mesh, write_obj, write_ply

SQUARE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)


def test_obj_forms_exporters_write(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text(
        "# exported\nmtllib quad.mtl\no Quad\n"
        "v 0 0 0\nv 1 0 0 # trailing comment\nv 1 1 0 1.0\nv 0 1 0 0.5 0.5 0.5\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvn 0 0 1\ns off\nusemtl skin\ng part\n"
        "f 1/1/1 2/2/1 3/3/1 4/1/1\n"           # a quad with v/vt/vn
        "f -4//1 -2//1 \\\n -1//1\n"             # negative indices, v//vn, a continued line
        "l 1 2\n"
    )
    vertices, faces = read_obj(path)
    assert vertices.shape == (4, 3) and vertices.dtype == np.float64
    assert np.allclose(vertices, SQUARE)
    assert faces.dtype == np.int32
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]


def test_ngon_fan_keeps_winding(tmp_path):
    path = tmp_path / "hexagon.obj"
    angles = np.arange(6) * np.pi / 3
    lines = [f"v {np.cos(a)} {np.sin(a)} 0" for a in angles] + ["f 1 2 3 4 5 6"]
    path.write_text("\n".join(lines))
    vertices, faces = read_mesh(path)
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]
    normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    assert np.all(normals[:, 2] > 0)  # counter-clockwise like the polygon


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50, 3))
    faces = rng.integers(0, 50, size=(80, 3)).astype(np.int32)
    path = tmp_path / "mesh.ply"
    write_ply(path, vertices, faces, binary=binary)
    read_vertices, read_faces = read_ply(path)
    assert np.allclose(read_vertices, vertices, atol=1e-6)  # stored as float32
    assert np.array_equal(read_faces, faces)
    assert path.read_bytes().startswith(b"ply\nformat " + (b"binary_little_endian" if binary else b"ascii"))
    assert not list(tmp_path.glob(".*partial"))


def test_obj_round_trip_and_dispatch(tmp_path):
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    for name in ("a.obj", "a.ply"):
        write_mesh(tmp_path / name, SQUARE * 123.456789, faces)
        vertices, read_faces = read_mesh(tmp_path / name)
        assert np.allclose(vertices, SQUARE * 123.456789, rtol=1e-6)
        assert read_faces.tolist() == faces.tolist()
    write_obj(tmp_path / "b.obj", SQUARE, faces)
    assert (tmp_path / "b.obj").read_text().splitlines()[-1] == "f 1 3 4"


def test_ply_with_extra_properties_quads_and_other_elements(tmp_path):
    # Binary PLY as scanners write it: double coordinates with normals and colours, a quad and a
    # triangle (so the lists are ragged), a per-face property, and an edge element after them.
    header = (b"ply\r\nformat binary_little_endian 1.0\r\ncomment scanner\r\nobj_info test\r\n"
              b"element vertex 4\r\nproperty double x\r\nproperty double y\r\nproperty double z\r\n"
              b"property float nx\r\nproperty float ny\r\nproperty float nz\r\n"
              b"property uchar red\r\nproperty uchar green\r\nproperty uchar blue\r\n"
              b"element face 2\r\nproperty list uchar uint vertex_index\r\nproperty uchar flags\r\n"
              b"element edge 1\r\nproperty int vertex1\r\nproperty int vertex2\r\nend_header\r\n")
    vertex = np.dtype([("p", "<f8", 3), ("n", "<f4", 3), ("c", "u1", 3)])
    table = np.zeros(4, dtype=vertex)
    table["p"] = SQUARE
    body = table.tobytes()
    body += np.array([4], "u1").tobytes() + np.array([0, 1, 2, 3], "<u4").tobytes() + b"\x07"
    body += np.array([3], "u1").tobytes() + np.array([3, 2, 0], "<u4").tobytes() + b"\x00"
    body += np.array([0, 1], "<i4").tobytes()
    path = tmp_path / "scan.ply"
    path.write_bytes(header + body)
    vertices, faces = read_ply(path)
    assert np.allclose(vertices, SQUARE)
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 0]]


def test_big_endian_and_ascii_quads(tmp_path):
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
              "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    body = SQUARE.astype(">f4").tobytes() + b"\x04" + np.array([0, 1, 2, 3], ">i4").tobytes()
    (tmp_path / "big.ply").write_bytes(header.encode() + body)
    vertices, faces = read_ply(tmp_path / "big.ply")
    assert np.allclose(vertices, SQUARE) and faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    ascii_text = ("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
                  "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                  "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    (tmp_path / "ascii.ply").write_text(ascii_text)
    vertices, faces = read_ply(tmp_path / "ascii.ply")
    assert np.allclose(vertices, SQUARE) and faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    ragged = ascii_text.replace("element face 1", "element face 2") + "3 3 2 0\n"
    (tmp_path / "ragged.ply").write_text(ragged)
    assert read_ply(tmp_path / "ragged.ply")[1].tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 0]]


BAD_FILES = {
    "missing.obj": (None, "does not exist"),
    "empty.obj": ("", "is empty"),
    "text.obj": ("hello, this is a readme\n", "not a mesh"),
    "points.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "point cloud"),
    "badvertex.obj": ("v 0 zero 0\n", r"badvertex.obj:1: malformed vertex"),
    "shortvertex.obj": ("v 0 0\n", "needs x y z"),
    "badface.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", r":4: malformed face"),
    "range.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "refers to vertex 4"),
    "zero.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "refers to vertex 0"),
    "negative.obj": ("v 0 0 0\nf -1 -2 -3\n", "refers to vertex -2"),
    "twovertices.obj": ("v 0 0 0\nv 1 0 0\nf 1 2\n", "at least 3"),
    "notply.ply": ("solid stl\n", "not a PLY"),
    "noend.ply": ("ply\nformat ascii 1.0\nelement vertex 1\n", "end_header"),
    "badheader.ply": ("ply\nformat ascii 1.0\nelement vertex 1\nproperty quaternion x\nend_header\n", "header line 4"),
    "truncated.ply": ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                      "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                      "0 0 0\n1 0 0\n", "truncated"),
    "range.ply": ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                  "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                  "0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n", "refers to vertex 5"),
    "noxyz.ply": ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float u\nend_header\n0.5\n", "lack x, y or z"),
    "mesh.stl": ("solid\n", "unsupported mesh format"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, name):
    content, message = BAD_FILES[name]
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(AnimateMeError, match=message) as caught:
        read_mesh(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_truncated_binary_ply_and_folder(tmp_path):
    path = tmp_path / "cut.ply"
    write_ply(path, SQUARE, np.array([[0, 1, 2]]))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(AnimateMeError, match="truncated"):
        read_mesh(path)
    with pytest.raises(AnimateMeError, match="folder"):
        read_ply(tmp_path)


def test_writing_bad_arrays_fails_cleanly(tmp_path):
    with pytest.raises(AnimateMeError, match="outside"):
        write_obj(tmp_path / "x.obj", SQUARE, np.array([[0, 1, 4]]))
    with pytest.raises(AnimateMeError, match="NaN"):
        write_ply(tmp_path / "x.ply", SQUARE * np.nan, np.array([[0, 1, 2]]))
    with pytest.raises(AnimateMeError, match="does not exist"):
        write_obj(tmp_path / "nowhere" / "x.obj", SQUARE, np.array([[0, 1, 2]]))
    assert not list(tmp_path.iterdir())
