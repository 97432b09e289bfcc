"""Write an ARKit rig on a mesh (52 shape keys with Apple's names) and each generated performance
as its own Action of keyframed shape-key values.

The rig's keys are written once per fitted face and reused by every later expression: a new
clip is a new Action (`AM_<label>`, kept with a fake user so the earlier ones stay in the file for
the Action editor and the NLA), not new shapes. Everything written is recorded on the shape-key
datablock, so clearing removes exactly that: the user's own keys, actions and mesh stay as they were.
"""

from __future__ import annotations

import json

import bpy
import numpy as np

from ..core.errors import AnimateMeError
from .shape_keys import PROGRESSION_PROPERTY, _add_curve, _channelbag, _points, base_coordinates, read_record

RIG_RECORD = "animateme_rig"
ACTION_PREFIX = "AM_"
GROUP = "AnimateMe rig"


def read_rig_record(obj: bpy.types.Object) -> dict:
    return read_record(obj, RIG_RECORD)


def rig_is_current(obj: bpy.types.Object, fit_key: str, names) -> bool:
    """The object already carries this face's rig: every name present, made for this fit."""
    record = read_rig_record(obj)
    key = obj.data.shape_keys
    return bool(record) and record.get("fit") == fit_key and key is not None \
        and all(name in key.key_blocks for name in names)


def foreign_keys(obj: bpy.types.Object, names) -> list[str]:
    """The user's own shape keys that carry one of the rig's names (the rig would clash with them)."""
    key = obj.data.shape_keys
    if key is None:
        return []
    ours = set(read_rig_record(obj).get("names", []))
    return [name for name in names if name in key.key_blocks and name not in ours]


def write_rig(obj: bpy.types.Object, shapes: np.ndarray, names, fit_key: str) -> bool:
    """The 52 shapes (S,N,3), object-local, as shape keys relative to Basis. Returns False when
    the object already had this rig (nothing written). The caller checks `foreign_keys` first."""
    names = list(names)
    if rig_is_current(obj, fit_key, names):
        return False
    mesh = obj.data
    shapes = np.asarray(shapes, dtype=np.float32)
    if shapes.shape != (len(names), len(mesh.vertices), 3):
        raise ValueError(f"rig shapes {shapes.shape} do not fit {len(names)} names and {len(mesh.vertices)} vertices")
    record = read_rig_record(obj)
    created_basis = record.get("created_basis", False)
    if mesh.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
        created_basis = True
    key = mesh.shape_keys
    base = base_coordinates(obj)
    for name, shape in zip(names, shapes):
        block = key.key_blocks.get(name) or obj.shape_key_add(name=name, from_mix=False)
        _points(block).foreach_set("co", (base + shape).ravel())
        block.relative_key = key.reference_key
        block.slider_min, block.slider_max = 0.0, 1.0
        block.value = 0.0
    mesh.update()
    key[RIG_RECORD] = json.dumps({"names": names, "fit": fit_key, "created_basis": bool(created_basis),
                                  "actions": record.get("actions", [])})
    return True


def write_performance(obj: bpy.types.Object, weights: np.ndarray, names, progression: np.ndarray,
                      label: str, start_frame: int) -> str:
    """(K,S) weights as keyframes of the rig's keys in a new Action; returns the Action's name.
    The Action becomes the shape keys' active one; earlier ones are kept (fake user)."""
    key = obj.data.shape_keys
    names = list(names)
    weights = np.asarray(weights, dtype=np.float32)
    if key is None or any(name not in key.key_blocks for name in names):
        raise ValueError("write the rig before its performance")
    anim = key.animation_data or key.animation_data_create()
    action = bpy.data.actions.new(f"{ACTION_PREFIX}{label}")
    action.use_fake_user = True        # the next clip takes the slot; this one stays in the file
    anim.action = action
    channelbag = _channelbag(key)
    frames = start_frame + np.arange(len(weights))
    for column, name in enumerate(names):
        _add_curve(channelbag, f'key_blocks["{name}"].value',
                   list(zip(frames.tolist(), weights[:, column].tolist())), group=GROUP)
    key[PROGRESSION_PROPERTY] = float(progression[0])
    _add_curve(channelbag, f'["{PROGRESSION_PROPERTY}"]',
               list(zip(frames.tolist(), np.asarray(progression, float).tolist())), group=GROUP)
    record = read_rig_record(obj)
    record["actions"] = record.get("actions", []) + [action.name]
    key[RIG_RECORD] = json.dumps(record)
    return action.name


def clear_rig(obj: bpy.types.Object) -> int:
    """Remove the rig's keys and the Actions AnimateMe made for it; returns how many keys went."""
    key = obj.data.shape_keys
    record = read_rig_record(obj)
    if key is None or not record:
        return 0
    anim = key.animation_data
    for name in record.get("actions", []):
        action = bpy.data.actions.get(name)
        if action is None:
            continue
        if anim is not None and anim.action == action:
            anim.action = None
        action.use_fake_user = False
        if action.users == 0:
            bpy.data.actions.remove(action)
    names = [name for name in record.get("names", []) if name in key.key_blocks]
    for name in names:
        obj.shape_key_remove(key.key_blocks[name])
    for prop in (RIG_RECORD, PROGRESSION_PROPERTY):
        if prop in key:
            del key[prop]
    if record.get("created_basis") and len(key.key_blocks) == 1:
        obj.shape_key_clear()
    return len(names)


def apply_rig(obj: bpy.types.Object, rig, performance, fit_key: str, progression: np.ndarray, label: str,
              start_frame: int, frame_range: tuple | None = None) -> tuple[bool, str]:
    """Main thread: the rig's keys (made once per fit) and this clip's Action, object-local Z-up.
    Returns (whether the keys were written anew, the Action's name). The caller checked
    `foreign_keys` before the slow work, so nothing of the user's is overwritten.
    frame_range: ((start, end) before, (start, end) set) when the caller sets the scene's range,
    recorded so Clear gives the artist's range back (the first clip's "before" is kept)."""
    from ..core.frames import face_model_to_blender

    clash = foreign_keys(obj, rig.names)
    if clash:
        raise AnimateMeError(clash_message(obj, clash))
    wrote = write_rig(obj, face_model_to_blender(rig.shapes), rig.names, fit_key)
    action = write_performance(obj, performance.weights, rig.names, progression, label, start_frame)
    if frame_range is not None:
        record = read_rig_record(obj)
        before = record.get("frame_range", [frame_range[0]])[0]
        record["frame_range"] = [list(map(int, before)), list(map(int, frame_range[1]))]
        obj.data.shape_keys[RIG_RECORD] = json.dumps(record)
    return wrote, action


def clash_message(obj: bpy.types.Object, clash: list[str]) -> str:
    shown = ", ".join(clash[:4]) + (f" and {len(clash) - 4} more" if len(clash) > 4 else "")
    return (f"'{obj.name}' already has shape keys named {shown} that AnimateMe did not make: rename them, "
            "or choose Output ▸ Frames")
