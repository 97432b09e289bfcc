"""`animateme generate --output rig`: the ARKit rig on the input mesh as a glTF file with its
animation, read back with a glTF library; and the batch job column `output`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pygltflib
import pytest

from addon_fixture import TEMPLATE, import_bpy, neutral_face, session_model
from animateme.cli import main
from animateme_blender.core.rig.arkit import ARKIT_NAMES
from animateme_blender.core.errors import AnimateMeError
from animateme.meshio import write_obj


@pytest.mark.slow
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


@pytest.mark.slow
def test_batch_job_writes_the_rig_and_its_action(tmp_path):
    bpy = import_bpy()
    from addon_fixture import fresh_scene, mesh_object
    from animateme_blender.blender import batch
    from animateme_blender.core.pipeline import Pipeline

    fresh_scene()
    vertices, faces = neutral_face(2000)
    obj = mesh_object("Face", vertices, faces)
    pipeline = Pipeline(session_model() / "animateme.onnx", TEMPLATE)
    job = batch.Job(object="Face", expression="sad", frames=8, output="rig")
    stats = batch.animate(obj, job, pipeline, log=lambda *_: None)
    key = obj.data.shape_keys
    assert [k.name for k in key.key_blocks][1:] == list(ARKIT_NAMES)
    assert stats["rig_keys_written"] and stats["rig_action"] == key.animation_data.action.name
    # The rig's curves rebuild the clip sampled in its span to a fraction of a millimetre (0.055 mm
    # measured on the tiny model; the temporal smoothing of the weights is what is left).
    assert stats["rig_action"].startswith("AM_sad") and 0 <= stats["rig_residual_mm"] < 0.25
    bpy.context.scene.frame_set(1)                    # progression 0: every weight is 0
    assert all(k.value == 0.0 for k in key.key_blocks[1:])
    with pytest.raises(AnimateMeError, match="unknown output 'blendshapes': use frames or rig"):
        batch.animate(obj, batch.Job(object="Face", output="blendshapes"), pipeline, log=lambda *_: None)


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info >= (3, 13), reason="the same numpy measurement on both Pythons: "
                    "the 3.11 run covers it (it alone took ~4 min of the 3.13 run)")
def test_bench_rig_measures_both_outputs_over_seeds(tmp_path, capsys):
    """`animateme bench-rig --seeds 2 --json` on a face of its own topology: the rig's residual per
    label, its roughness against the frames' at each seed (a positive ratio per seed and label),
    and the side-by-side picture."""
    vertices, faces = neutral_face(1500, scale=1.0, z_up=False)
    write_obj(tmp_path / "face.obj", vertices, faces)
    picture = tmp_path / "frames_vs_rig.png"
    code = main(["bench-rig", "--input", str(tmp_path / "face.obj"), "--picture", str(picture),
                 "--model", str(session_model() / "animateme.onnx"), "--seeds", "2", "--json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures["labels"]) == {"happy", "sad", "surprise", "fear", "angry", "disgust"}
    assert all(0 <= f["template_residual_mm"] < 0.3 for f in figures["labels"].values())
    ratios = figures["roughness_ratio_by_seed"]
    assert set(ratios) == set(figures["labels"])
    assert all(len(r) == 2 and all(np.isfinite(x) and x > 0 for x in r) for r in ratios.values())
    assert picture.exists() and picture.stat().st_size > 10_000
