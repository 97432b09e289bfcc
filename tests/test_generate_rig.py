"""`animateme generate --output rig`: the ARKit rig on the input mesh as a glTF file with its
animation, read back with a glTF library; and the batch job column `output`."""

from __future__ import annotations

import json

import numpy as np
import pygltflib

from addon_fixture import TEMPLATE, import_bpy, neutral_face, session_model
from animateme.cli import main
from animateme_blender.core.arkit import ARKIT_NAMES
from animateme_blender.core.meshio import write_obj


def test_generate_writes_the_rig_as_gltf_in_metres(tmp_path, capsys):
    vertices, faces = neutral_face(2000, scale=1.0, z_up=False)         # millimetres, Y up
    write_obj(tmp_path / "face.obj", vertices, faces)
    code = main(["generate", "--input", str(tmp_path / "face.obj"), "--frames", "8", "--no-preview",
                 "--model", str(session_model() / "animateme.onnx"), "--template", str(TEMPLATE),
                 "--output", "rig", "--fps", "30", "--out", str(tmp_path / "out")])
    assert code == 0
    assert "52 ARKit morph targets" in capsys.readouterr().out
    path = tmp_path / "out" / "face_happy_s0_arkit.glb"
    gltf = pygltflib.GLTF2().load(str(path))
    assert gltf.meshes[0].extras["targetNames"] == list(ARKIT_NAMES)
    position = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    extent = np.subtract(position.max, position.min)
    assert 0.05 < extent.max() < 0.5                  # a head in metres, from a millimetre OBJ
    times = gltf.accessors[gltf.animations[0].samplers[0].input]
    assert times.count == 8 and abs(times.max[0] - 7 / 30) < 1e-6
    with np.load(path.with_suffix(".npz")) as data:
        assert data["weights"].shape == (8, 52) and data["weights"].min() >= 0 and data["weights"].max() <= 1
        assert (data["weights"][data["progression"] <= 0] == 0).all()


def test_job_files_take_the_output_column(tmp_path):
    import_bpy()
    from animateme_blender.blender import batch

    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": [{"input": "a.obj", "output": "rig"},
                                                             {"input": "b.obj"}]}))
    rig, frames = batch.jobs_from_args(batch.build_parser().parse_args(["--job", str(tmp_path / "jobs.json"),
                                                                        "--out", "o"]))
    assert rig.output == "rig" and frames.output == "frames"
