"""The extension as users get it: built by build_addon.py, installed and enabled through Blender's
extension system, then Generate Expression on a test face: keys, fcurves, the progression curve,
undo, regenerate, cancel and every bad input, each leaving the scene untouched."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from addon_fixture import fresh_scene, grid, import_bpy, key_coordinates, mesh_object, session_zip, neutral_face

bpy = import_bpy()

REPO_MODULE = "user_default"
PACKAGE = f"bl_ext.{REPO_MODULE}.animateme"


def install() -> str:
    if PACKAGE not in bpy.context.preferences.addons:
        result = bpy.ops.extensions.package_install_files(filepath=str(session_zip()), repo=REPO_MODULE,
                                                          enable_on_install=True)
        assert result == {"FINISHED"}
    return PACKAGE


@pytest.fixture(scope="module")
def addon():
    install()
    return sys.modules[PACKAGE]


def module(name: str):
    return sys.modules[f"{PACKAGE}.{name}"]


def face_object(name="Face", vertices=2500):
    v, f = neutral_face(vertices)
    return mesh_object(name, v, f)


def scene_state() -> dict:
    """Everything the operator could touch, to compare before and after a refusal or cancel."""
    state = {}
    for obj in bpy.data.objects:
        entry = {"type": obj.type, "modifiers": [m.name for m in obj.modifiers]}
        if obj.type == "MESH":
            co = np.empty(len(obj.data.vertices) * 3, np.float32)
            obj.data.vertices.foreach_get("co", co)
            key = obj.data.shape_keys
            entry["co"] = co.round(7).tobytes()
            entry["keys"] = [(k.name, key_coordinates(k).round(7).tobytes()) for k in key.key_blocks] if key else []
        state[obj.name] = entry
    state["actions"] = sorted(a.name for a in bpy.data.actions)
    state["frames"] = (bpy.context.scene.frame_start, bpy.context.scene.frame_end)
    return state


def fcurve_map(obj):
    from bpy_extras import anim_utils

    anim = obj.data.shape_keys.animation_data
    bag = anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot)
    return {fc.data_path: fc for fc in bag.fcurves}


def test_installed_through_the_extension_system(addon):
    assert PACKAGE in bpy.context.preferences.addons
    installed = Path(addon.__file__).parent
    assert (installed / "blender_manifest.toml").exists() and (installed / "models" / "animateme.onnx").exists()
    assert Path(__file__).resolve().parents[2] not in installed.parents   # not the repository copy
    assert hasattr(bpy.types, "VIEW3D_PT_animateme") and hasattr(bpy.types.Scene, "animateme")
    assert bpy.ops.animateme.generate.get_rna_type().bl_rna.identifier == "ANIMATEME_OT_generate"
    panel = bpy.types.VIEW3D_PT_animateme
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "AnimateMe")
    settings = bpy.context.scene.animateme
    assert settings.frames == 40 and settings.quality == "FAST" and settings.device == "AUTO"


@pytest.mark.slow
def test_generate_keys_curves_undo_and_regenerate(addon):
    fresh_scene()
    obj = face_object()
    settings = bpy.context.scene.animateme
    settings.expression, settings.frames, settings.start_frame, settings.seed = "happy", 40, 1, 3
    settings.use_second = False
    bpy.ops.ed.undo_push(message="before AnimateMe")
    before = scene_state()

    # 'EXEC_DEFAULT', True: run as a click in the UI does, with the operator's undo push.
    assert bpy.ops.animateme.generate("EXEC_DEFAULT", True) == {"FINISHED"}
    obj = bpy.data.objects["Face"]
    key = obj.data.shape_keys
    names = [k.name for k in key.key_blocks]
    assert names == ["Basis"] + [f"AM_happy_f{f:03d}" for f in range(1, 41)]
    curves = fcurve_map(obj)
    assert len(curves) == 41 and '["animateme_progression"]' in curves
    from animateme_blender.core.sample.progression import progression_curve

    values = [p.co[1] for p in curves['["animateme_progression"]'].keyframe_points]
    np.testing.assert_allclose(values, progression_curve(40, 1.0), atol=1e-6)
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, 40)
    assert settings.device_used == "CPU"
    base = key_coordinates(key.key_blocks["Basis"])
    motion = np.stack([key_coordinates(key.key_blocks[n]) - base for n in names[1:]])
    size = np.ptp(base, axis=0).max()
    assert np.isfinite(motion).all() and 0 < np.abs(motion).max() < 0.5 * size

    fits = Path(bpy.utils.extension_path_user(PACKAGE, path="fits"))
    assert list(fits.glob("fit-*.npz"))      # the fit persists in the extension's user folder

    bpy.ops.ed.undo()                        # one undo step removes everything it added
    assert scene_state() == before
    assert bpy.data.objects["Face"].data.shape_keys is None

    settings = bpy.context.scene.animateme        # undo rebuilt the scene: fetch it again
    settings.expression = "sad"
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    settings.expression = "surprise"
    assert bpy.ops.animateme.generate() == {"FINISHED"}    # cached fit; replaces its own keys only
    names = [k.name for k in bpy.data.objects["Face"].data.shape_keys.key_blocks]
    assert len(names) == 41 and all(n.startswith("AM_surprise") for n in names[1:])


def test_interpolation_and_transition_labels(addon):
    fresh_scene()
    face_object()
    settings = bpy.context.scene.animateme
    settings.expression, settings.use_second, settings.second_expression = "happy", True, "sad"
    settings.transition, settings.mix, settings.live_update = False, 0.3, False
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    keys = bpy.data.objects["Face"].data.shape_keys.key_blocks
    assert keys[1].name == "AM_happy-sad30_f001"
    settings.transition = True
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    keys = bpy.data.objects["Face"].data.shape_keys.key_blocks
    assert keys[1].name == "AM_happy-to-sad_f001" and len(keys) == 41
    settings.use_second = False


def test_existing_keys_and_modifiers_survive(addon):
    fresh_scene()
    obj = face_object()
    obj.shape_key_add(name="Basis", from_mix=False)
    mine = obj.shape_key_add(name="MyKey", from_mix=False)
    mine.points.foreach_set("co", (key_coordinates(mine) * 1.01).ravel())
    obj.modifiers.new("Subsurf", "SUBSURF")
    before = scene_state()
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    after = scene_state()["Face"]
    assert after["keys"][:2] == before["Face"]["keys"] and after["co"] == before["Face"]["co"]
    assert after["modifiers"] == ["Subsurf"]
    assert bpy.ops.animateme.clear() == {"FINISHED"}
    assert scene_state() == {**before, "frames": scene_state()["frames"]}


def test_cancel_leaves_the_scene_untouched(addon):
    fresh_scene()
    obj = face_object()
    before = scene_state()
    operators = module("blender.operators")
    settings = bpy.context.scene.animateme
    vertices, faces = operators.mesh_arrays(obj)
    job = operators.GenerationJob(operators.pipeline_for_preferences(), vertices, faces,
                                  settings.to_request(), "cpu")
    job.cancel()          # what Esc does in the modal operator
    job.start().wait(120)
    assert job.done and job.cancelled and job.result is None
    assert scene_state() == before


def _refused(match: str):
    before = scene_state()
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.animateme.generate()
    assert scene_state() == before


def test_bad_selection_is_refused_untouched(addon):
    fresh_scene()
    face = face_object()
    face.select_set(False)
    _refused("nothing is selected")

    empty = bpy.data.objects.new("Empty", None)
    bpy.context.scene.collection.objects.link(empty)
    empty.select_set(True)
    bpy.context.view_layer.objects.active = empty
    _refused("not a mesh")

    face.select_set(True)
    _refused("2 objects are selected")

    empty.select_set(False)
    bpy.context.view_layer.objects.active = face
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        _refused("Object Mode")
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")


def test_linked_and_override_meshes_are_refused(addon, tmp_path):
    fresh_scene()
    face_object("Lib Face", 1200)
    library = tmp_path / "library.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(library), copy=True)
    fresh_scene()
    with bpy.data.libraries.load(str(library), link=True) as (source, target):
        target.objects = ["Lib Face"]
    linked = target.objects[0]
    # A local object whose mesh is linked: the words name the mesh, not the object.
    local = bpy.data.objects.new("Local Face", linked.data)
    bpy.context.scene.collection.objects.link(local)
    local.select_set(True)
    bpy.context.view_layer.objects.active = local
    _refused(r"the mesh of 'Local Face' .* is linked from the library .*\(the object itself is local\)")
    bpy.data.objects.remove(local)
    bpy.context.scene.collection.objects.link(linked)
    linked.select_set(True)
    bpy.context.view_layer.objects.active = linked
    _refused(r"'Lib Face' is linked from the library 'library.blend'")

    override = linked.override_create(remap_local_usages=True)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj == override)
    bpy.context.view_layer.objects.active = override
    _refused("library")


@pytest.mark.slow
def test_non_face_mesh_is_refused(addon):
    fresh_scene()
    mesh_object("Plane", *grid(40))
    _refused("Use Anyway")     # refused, with the panel's options (the problem's words are the core's)


def test_missing_corrupt_model_and_absent_gpu(addon, tmp_path):
    fresh_scene()
    face_object()
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    settings = bpy.context.scene.animateme
    try:
        prefs.model_path = str(tmp_path / "nowhere" / "animateme.onnx")
        _refused("not found")
        installed = Path(sys.modules[PACKAGE].__file__).parent / "models"
        corrupt = tmp_path / "corrupt"
        corrupt.mkdir()
        (corrupt / "animateme.json").write_bytes((installed / "animateme.json").read_bytes())
        (corrupt / "animateme.onnx").write_bytes((installed / "animateme.onnx").read_bytes()[:-100])
        prefs.model_path = str(corrupt / "animateme.onnx")
        _refused("checksum")
        prefs.model_path = str(corrupt)               # the folder, not the file in it
        _refused("is a folder: choose the .onnx file in it")
    finally:
        prefs.model_path = ""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        settings.device = "GPU"
        try:
            _refused("Device GPU asked for.*set Device to Auto or CPU")
        finally:
            settings.device = "AUTO"


def test_interpolation_slider_regenerates_live_from_the_cached_fit(addon):
    import time

    fresh_scene()
    face_object()
    settings = bpy.context.scene.animateme
    settings.expression, settings.use_second, settings.second_expression = "happy", True, "sad"
    settings.transition, settings.live_update, settings.quality = False, True, "PAPER"
    properties = module("blender.properties")
    settings.mix = 0.2                      # before any generation the slider only schedules a check
    time.sleep(properties.LIVE_DELAY_S)
    properties._live_tick()
    assert bpy.data.objects["Face"].data.shape_keys is None

    settings.quality = "FAST"
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    settings.quality = "PAPER"              # live updates always run the fast sampler
    settings.mix = 0.8                      # the update callback arms the debounce timer
    assert bpy.app.timers.is_registered(properties._live_tick)
    time.sleep(properties.LIVE_DELAY_S)
    started = time.perf_counter()
    properties._live_tick()                 # what the timer runs once the slider rests
    elapsed = time.perf_counter() - started
    keys = bpy.data.objects["Face"].data.shape_keys.key_blocks
    assert keys[1].name == "AM_happy-sad80_f001" and len(keys) == 41
    assert elapsed < 10.0                   # cached fit + fast sampler: no refit
    bpy.app.timers.unregister(properties._live_tick) if bpy.app.timers.is_registered(properties._live_tick) else None
    settings.use_second = False
    settings.quality = "FAST"


def test_invoke_without_an_event_loop_runs_synchronously(addon):
    # Background Blender (batch, this bpy module) has no event loop for a modal timer: Blender
    # runs execute() for INVOKE_DEFAULT there, so scripts that "click" still get their keys.
    fresh_scene()
    face_object()
    assert bpy.app.background
    assert bpy.ops.animateme.generate("INVOKE_DEFAULT") == {"FINISHED"}
    assert len(bpy.data.objects["Face"].data.shape_keys.key_blocks) == 41
    assert not module("blender.operators").generation_running()
