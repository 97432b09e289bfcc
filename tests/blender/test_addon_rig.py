"""The ARKit rig in Blender (blender/rig_keys.py): 52 keys written once per face, a new Action per
performance, the user's own keys left alone, and the glTF file played back by Blender's importer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from addon_fixture import fresh_scene, grid, import_bpy, key_coordinates, mesh_object

bpy = import_bpy()
from animateme_blender.blender import rig_keys  # noqa: E402  (after bpy, with its user folders set)
from animateme_blender.core.rig.arkit import ARKIT_NAMES  # noqa: E402
from animateme.gltf import write_glb  # noqa: E402


def action_fcurves(action, key):
    from bpy_extras import anim_utils

    slot = key.animation_data.action_slot if key.animation_data.action == action else action.slots[0]
    return {fc.data_path: fc for fc in anim_utils.action_get_channelbag_for_slot(action, slot).fcurves}


def rig_fixture(n_vertices: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = rng.normal(0, 0.002, (52, n_vertices, 3)).astype(np.float32)
    weights = rng.uniform(0, 1, (8, 52)).astype(np.float32)
    return shapes, weights


def test_rig_keys_once_then_one_action_per_performance():
    fresh_scene()
    vertices, faces = grid(10)
    obj = mesh_object("Head", vertices, faces)
    obj.shape_key_add(name="Basis", from_mix=False)
    mine = obj.shape_key_add(name="MyBlink", from_mix=False)
    mine.value = 0.3
    shapes, weights = rig_fixture(len(vertices))
    assert rig_keys.foreign_keys(obj, ARKIT_NAMES) == []
    assert rig_keys.write_rig(obj, shapes, ARKIT_NAMES, fit_key="fit-1")
    key = obj.data.shape_keys
    assert [k.name for k in key.key_blocks] == ["Basis", "MyBlink"] + list(ARKIT_NAMES)
    base = key_coordinates(key.key_blocks["Basis"])
    jaw = ARKIT_NAMES.index("jawOpen")
    np.testing.assert_allclose(key_coordinates(key.key_blocks["jawOpen"]) - base, shapes[jaw], atol=1e-6)

    first = rig_keys.write_performance(obj, weights, ARKIT_NAMES, np.linspace(0, 1, 8), "happy", start_frame=5)
    assert not rig_keys.write_rig(obj, shapes, ARKIT_NAMES, fit_key="fit-1")   # reused, not rewritten
    second = rig_keys.write_performance(obj, weights[::-1], ARKIT_NAMES, np.linspace(1, 0, 8), "sad", start_frame=5)
    assert first != second and bpy.data.actions[first].use_fake_user          # the first clip stays
    assert key.animation_data.action.name == second
    assert len(key.key_blocks) == 2 + 52                                       # no new shapes
    curves = action_fcurves(bpy.data.actions[first], key)
    jaw_curve = curves['key_blocks["jawOpen"].value']
    np.testing.assert_allclose([p.co[1] for p in jaw_curve.keyframe_points], weights[:, jaw], atol=1e-6)
    bpy.context.scene.frame_set(5 + 3)
    assert key.key_blocks["jawOpen"].value == pytest.approx(weights[::-1][3, jaw], abs=1e-5)
    assert key.key_blocks["MyBlink"].value == pytest.approx(0.3)

    assert rig_keys.clear_rig(obj) == 52
    assert [k.name for k in key.key_blocks] == ["Basis", "MyBlink"]
    assert first not in bpy.data.actions and second not in bpy.data.actions


def test_a_users_key_with_an_arkit_name_is_reported_not_overwritten():
    fresh_scene()
    vertices, faces = grid(6)
    obj = mesh_object("Head", vertices, faces)
    obj.shape_key_add(name="Basis", from_mix=False)
    obj.shape_key_add(name="jawOpen", from_mix=False)
    assert rig_keys.foreign_keys(obj, ARKIT_NAMES) == ["jawOpen"]


def test_gltf_rig_plays_in_blenders_importer(tmp_path):
    fresh_scene()
    vertices, faces = grid(8)
    shapes, weights = rig_fixture(len(vertices), seed=1)
    path = write_glb(tmp_path / "rig.glb", vertices, faces, shapes, ARKIT_NAMES, weights, fps=24)
    bpy.context.scene.render.fps = 24
    bpy.ops.import_scene.gltf(filepath=str(path))
    imported = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    assert len(imported) == 1
    key = imported[0].data.shape_keys
    assert [k.name for k in key.key_blocks][1:] == list(ARKIT_NAMES)
    smile = ARKIT_NAMES.index("mouthSmileLeft")
    # Blender's importer puts glTF time 0 on frame 1 (its own convention) or frame 0: find it.
    action = key.animation_data.action
    curves = action_fcurves(action, key)
    curve = curves['key_blocks["mouthSmileLeft"].value']
    start = curve.keyframe_points[0].co[0]
    for k in range(len(weights)):
        assert curve.evaluate(start + k) == pytest.approx(weights[k, smile], abs=1e-4)


# ------------------------------------------------------------- the installed extension, end to end
def test_generate_as_arkit_rig_through_the_installed_extension():
    from addon_fixture import install_extension, neutral_face

    install_extension()
    fresh_scene()
    vertices, faces = neutral_face(2000)
    obj = mesh_object("Face", vertices, faces)
    settings = bpy.context.scene.animateme
    settings.output, settings.frames, settings.start_frame = "RIG", 12, 1
    settings.expression = "surprise"
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 5, 250     # the artist's range
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, 12)
    key = obj.data.shape_keys
    assert [k.name for k in key.key_blocks] == ["Basis"] + list(ARKIT_NAMES)
    first = key.animation_data.action.name
    assert first.startswith("AM_surprise")
    scene = bpy.context.scene
    scene.frame_set(1)                            # progression 0: the user's neutral, exactly
    assert all(k.value == 0.0 for k in key.key_blocks[1:])
    peak = 0.0
    for frame in range(1, 13):
        scene.frame_set(frame)
        peak = max(peak, max(k.value for k in key.key_blocks[1:]))
    assert 0.1 < peak <= 1.0

    # Blender's own glTF exporter carries the rig: 52 named morph targets and their animation
    import pygltflib

    exported = Path(tempfile.mkdtemp()) / "rig.glb"
    bpy.ops.export_scene.gltf(filepath=str(exported), use_selection=True, export_morph=True,
                              export_animations=True)
    gltf = pygltflib.GLTF2().load(str(exported))
    assert gltf.meshes[0].extras["targetNames"] == list(ARKIT_NAMES)
    assert any(c.target.path == "weights" for a in gltf.animations for c in a.channels)

    settings.expression = "happy"                 # a second clip: the same 52 keys, a new Action
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    assert len(key.key_blocks) == 53 and key.animation_data.action.name.startswith("AM_happy")
    assert first in bpy.data.actions

    assert bpy.ops.animateme.clear() == {"FINISHED"}
    assert obj.data.shape_keys is None and first not in bpy.data.actions
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (5, 250)   # given back
    settings.output = "FRAMES"


def test_rig_refused_before_any_work_when_the_user_has_a_key_of_that_name():
    from addon_fixture import install_extension, neutral_face

    install_extension()
    fresh_scene()
    vertices, faces = neutral_face(2000)
    obj = mesh_object("Face", vertices, faces)
    obj.shape_key_add(name="Basis", from_mix=False)
    obj.shape_key_add(name="jawOpen", from_mix=False)
    settings = bpy.context.scene.animateme
    settings.output = "RIG"
    try:
        with pytest.raises(RuntimeError, match="shape keys named jawOpen .* choose Output ▸ Frames"):
            bpy.ops.animateme.generate()
    finally:
        settings.output = "FRAMES"
    assert [k.name for k in obj.data.shape_keys.key_blocks] == ["Basis", "jawOpen"]
