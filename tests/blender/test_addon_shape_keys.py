"""The shape-key writer: keys relative to Basis, cross-fading keyframes, the progression curve,
replace-only-our-own, the user's keys and modifiers untouched, and the 100k-vertex write time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from addon_fixture import fresh_scene, grid, import_bpy, key_coordinates, mesh_object

bpy = import_bpy()
from animateme_blender.blender import shape_keys  # noqa: E402  (after bpy, with its user folders set)


def channel_fcurves(obj):
    from bpy_extras import anim_utils

    anim = obj.data.shape_keys.animation_data
    return {fc.data_path: fc for fc in anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot).fcurves}


def frames_of(n_frames: int, n_vertices: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.002, (n_frames, n_vertices, 3)).astype(np.float32)


def test_keys_keyframes_and_progression():
    fresh_scene()
    vertices, faces = grid(12)
    obj = mesh_object("Face", vertices, faces)
    deform = frames_of(6, len(vertices))
    progression = np.array([0.0, 0.4, 1.0, 1.0, 0.5, 0.0], np.float32)
    names = shape_keys.write_animation(obj, deform, progression, "happy", start_frame=10)

    key = obj.data.shape_keys
    assert [k.name for k in key.key_blocks] == ["Basis"] + [f"AM_happy_f{f:03d}" for f in range(10, 16)]
    assert names == [k.name for k in key.key_blocks][1:]
    base = key_coordinates(key.key_blocks["Basis"])
    np.testing.assert_allclose(base, vertices, atol=1e-6)
    for k, name in enumerate(names):
        block = key.key_blocks[name]
        assert block.relative_key == key.key_blocks["Basis"]
        np.testing.assert_allclose(key_coordinates(block) - base, deform[k], atol=1e-6)

    curves = channel_fcurves(obj)
    first = curves['key_blocks["AM_happy_f010"].value']
    assert [tuple(p.co) for p in first.keyframe_points] == [(9.0, 0.0), (10.0, 1.0), (11.0, 0.0)]
    assert {p.interpolation for p in first.keyframe_points} == {"LINEAR"}
    progress_curve = curves['["animateme_progression"]']
    assert [p.co[0] for p in progress_curve.keyframe_points] == list(range(10, 16))
    np.testing.assert_allclose([p.co[1] for p in progress_curve.keyframe_points], progression, atol=1e-6)

    scene = bpy.context.scene
    scene.frame_set(12)
    assert key.key_blocks["AM_happy_f012"].value == pytest.approx(1.0)
    assert sum(k.value for k in key.key_blocks[1:]) == pytest.approx(1.0)  # exactly one key at a frame
    assert key["animateme_progression"] == pytest.approx(1.0)
    # Half-way between two frames the neighbours cross-fade: playback at sub-frames stays smooth.
    scene.frame_set(12, subframe=0.5)
    assert key.key_blocks["AM_happy_f012"].value == pytest.approx(0.5, abs=1e-4)
    assert key.key_blocks["AM_happy_f013"].value == pytest.approx(0.5, abs=1e-4)


def test_user_keys_modifiers_and_mesh_are_never_changed():
    fresh_scene()
    vertices, faces = grid(10)
    obj = mesh_object("Face", vertices, faces)
    obj.shape_key_add(name="Basis", from_mix=False)
    blink = obj.shape_key_add(name="Blink", from_mix=False)
    blink_co = key_coordinates(blink) + np.float32(0.01)
    blink.points.foreach_set("co", blink_co.ravel())
    blink.value = 0.3
    blink.keyframe_insert("value", frame=5)
    obj.modifiers.new("Smooth", "SMOOTH")
    mesh_before = key_coordinates(obj.data.shape_keys.reference_key).copy()

    shape_keys.write_animation(obj, frames_of(4, len(vertices)), np.linspace(0, 1, 4), "sad", 1)
    shape_keys.write_animation(obj, frames_of(5, len(vertices), 1), np.linspace(0, 1, 5), "angry", 1)
    key = obj.data.shape_keys
    names = [k.name for k in key.key_blocks]
    assert names[:2] == ["Basis", "Blink"] and not any("sad" in n for n in names)   # replaced, not added
    assert sum(n.startswith("AM_angry") for n in names) == 5
    np.testing.assert_array_equal(key_coordinates(key.key_blocks["Blink"]), blink_co)
    assert 'key_blocks["Blink"].value' in channel_fcurves(obj)
    assert [m.name for m in obj.modifiers] == ["Smooth"]

    assert shape_keys.clear_animation(obj) == 5
    key = obj.data.shape_keys
    assert [k.name for k in key.key_blocks] == ["Basis", "Blink"]     # the user's Basis stays
    assert set(channel_fcurves(obj)) == {'key_blocks["Blink"].value'}
    assert "animateme_progression" not in key
    np.testing.assert_array_equal(key_coordinates(key.reference_key), mesh_before)


def test_clearing_removes_the_basis_it_created():
    fresh_scene()
    vertices, faces = grid(6)
    obj = mesh_object("Face", vertices, faces)
    shape_keys.write_animation(obj, frames_of(3, len(vertices)), np.ones(3), "fear", 1)
    assert shape_keys.generated_keys(obj) == ["AM_fear_f001", "AM_fear_f002", "AM_fear_f003"]
    shape_keys.clear_animation(obj)
    assert obj.data.shape_keys is None and len(bpy.data.actions) == 0    # its own action went too
    co = np.empty(len(vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(co.reshape(-1, 3), vertices, atol=1e-6)


def test_forty_keys_on_100k_vertices_within_two_seconds():
    fresh_scene()
    vertices, faces = grid(317)                        # 100,489 vertices
    obj = mesh_object("Big", vertices, faces)
    deform = frames_of(40, len(vertices))
    started = time.perf_counter()
    shape_keys.write_animation(obj, deform, np.linspace(0, 1, 40), "happy", 1)
    elapsed = time.perf_counter() - started
    print(f"shape-key write: 40 keys x {len(vertices)} vertices in {elapsed:.3f} s")
    assert len(obj.data.shape_keys.key_blocks) == 41
    assert elapsed <= 2.0
