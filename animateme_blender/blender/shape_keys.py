"""Write generated frames onto a mesh as shape keys, with cross-fading keyframes.

Frame k becomes a shape key relative to the reference key (Basis) whose value is 1 at scene frame
`start + k` and 0 one frame either side, linearly interpolated, so playback blends neighbouring
frames smoothly. A custom property `animateme_progression` on the shape-key datablock carries the
progression curve p_k as keyframes, so onset/apex/offset shows in the Graph Editor.

Everything written is recorded in a bookkeeping property on the shape-key datablock; clearing
(or regenerating) removes exactly that and nothing the user made: their keys, their fcurves and
the base mesh stay as they were.
"""

from __future__ import annotations

import json

import bpy
import numpy as np

KEY_PREFIX = "AM"
PROGRESSION_PROPERTY = "animateme_progression"
RECORD_PROPERTY = "animateme"
ACTION_NAME = "AnimateMe"


def key_name(label: str, frame: int) -> str:
    return f"{KEY_PREFIX}_{label}_f{frame:03d}"


def base_coordinates(obj: bpy.types.Object) -> np.ndarray:
    """(N,3) float32 rest positions the keys are relative to: the reference key, else the mesh."""
    mesh = obj.data
    coords = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    key = mesh.shape_keys
    if key is not None and key.reference_key is not None:
        _points(key.reference_key).foreach_get("co", coords)
    else:
        mesh.vertices.foreach_get("co", coords)
    return coords.reshape(-1, 3)


def triangles(obj: bpy.types.Object) -> np.ndarray:
    """(F,3) int32 triangulation of the mesh (loop triangles: only a runtime cache is touched)."""
    mesh = obj.data
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


def generated_keys(obj: bpy.types.Object) -> list[str]:
    """Names of the shape keys AnimateMe wrote on this object (and still there)."""
    record = read_record(obj)
    key = obj.data.shape_keys
    if not record or key is None:
        return []
    return [name for name in record.get("keys", []) if name in key.key_blocks]


def read_record(obj: bpy.types.Object, prop: str = RECORD_PROPERTY) -> dict:
    """The JSON bookkeeping AnimateMe keeps on the shape-key datablock under `prop` ({} if none)."""
    key = obj.data.shape_keys
    if key is None or prop not in key:
        return {}
    try:
        return json.loads(key[prop])
    except (TypeError, ValueError):
        return {}


def write_animation(obj: bpy.types.Object, displacements: np.ndarray, progression: np.ndarray,
                    label: str, start_frame: int, settings: dict | None = None,
                    frame_range: tuple | None = None) -> list[str]:
    """Replace this object's AnimateMe keys with one key per frame; returns the key names.

    displacements: (K,N,3) in the object's local space, added to the reference key.
    progression: (K,) the progression curve, keyframed on `animateme_progression`.
    frame_range: ((start, end) before, (start, end) set) when the caller sets the scene's frame
    range, so Clear can give the artist's range back; a regeneration keeps the first "before".
    """
    mesh = obj.data
    displacements = np.asarray(displacements, dtype=np.float32)
    frames = displacements.shape[0]
    if displacements.shape[1:] != (len(mesh.vertices), 3):
        raise ValueError(f"displacements {displacements.shape} do not fit {len(mesh.vertices)} vertices")
    previous = read_record(obj)
    if frame_range is not None and previous.get("frame_range"):
        frame_range = (previous["frame_range"][0], frame_range[1])
    created_basis = previous.get("created_basis", False)
    clear_animation(obj, keep_basis=True, keep_action=True)

    if mesh.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
        created_basis = True
    key = mesh.shape_keys
    reference = key.reference_key
    base = base_coordinates(obj)

    names = []
    for k in range(frames):
        block = obj.shape_key_add(name=key_name(label, start_frame + k), from_mix=False)
        # One C-level copy per key: the only way to reach 40 keys on 100k vertices in time.
        _points(block).foreach_set("co", (base + displacements[k]).ravel())
        block.relative_key = reference
        block.value = 0.0
        names.append(block.name)
    mesh.update()

    anim = key.animation_data
    created_action = previous.get("created_action", False) or anim is None or anim.action is None
    channelbag = _channelbag(key)
    for k, name in enumerate(names):
        frame = start_frame + k
        _add_curve(channelbag, f'key_blocks["{name}"].value',
                   [(frame - 1, 0.0), (frame, 1.0), (frame + 1, 0.0)], group=ACTION_NAME)

    key[PROGRESSION_PROPERTY] = float(progression[0])
    ui = key.id_properties_ui(PROGRESSION_PROPERTY)
    ui.update(min=0.0, max=1.0, description="AnimateMe expression progression (onset, apex, offset)")
    _add_curve(channelbag, f'["{PROGRESSION_PROPERTY}"]',
               [(start_frame + k, float(p)) for k, p in enumerate(progression)], group=ACTION_NAME)

    key[RECORD_PROPERTY] = json.dumps({
        "keys": names, "created_basis": bool(created_basis), "created_action": bool(created_action),
        "label": label,
        "start_frame": int(start_frame), "frames": int(frames), "settings": settings or {},
        "frame_range": [list(map(int, r)) for r in frame_range] if frame_range else None,
    })
    return names


def clear_animation(obj: bpy.types.Object, keep_basis: bool = False, keep_action: bool = False) -> int:
    """Remove the keys, fcurves and properties AnimateMe wrote; returns how many keys went."""
    key = obj.data.shape_keys
    if key is None:
        return 0
    record = read_record(obj)
    names = set(generated_keys(obj))
    channelbag = _channelbag(key, create=False)
    if channelbag is not None:
        ours = [fc for fc in channelbag.fcurves if _is_ours(fc.data_path, names)]
        for fcurve in ours:
            channelbag.fcurves.remove(fcurve)
        if not keep_action and record.get("created_action") and len(channelbag.fcurves) == 0:
            # The action was AnimateMe's own and is empty now: it goes too.
            action = key.animation_data.action
            key.animation_data_clear()
            if action.users == 0:
                bpy.data.actions.remove(action)
    for name in names:
        obj.shape_key_remove(key.key_blocks[name])
    for prop in (PROGRESSION_PROPERTY, RECORD_PROPERTY):
        if prop in key:
            del key[prop]
    if not keep_basis and record.get("created_basis") and len(key.key_blocks) == 1:
        # Only Basis is left and AnimateMe made it: the mesh goes back to having no keys.
        obj.shape_key_clear()
    return len(names)


def _points(block: bpy.types.ShapeKey):
    """`points` (Blender 4.1+) copies raw arrays; `data` goes through RNA item by item, 100x slower."""
    return getattr(block, "points", None) or block.data


def _is_ours(data_path: str, names: set[str]) -> bool:
    if data_path == f'["{PROGRESSION_PROPERTY}"]':
        return True
    return data_path.startswith('key_blocks["') and data_path[len('key_blocks["'):].split('"]')[0] in names


def _channelbag(key: bpy.types.Key, create: bool = True):
    """The fcurve container of the shape-key datablock's action (Blender 4.4+ slots, or older)."""
    anim = key.animation_data
    if anim is None:
        if not create:
            return None
        anim = key.animation_data_create()
    if anim.action is None:
        if not create:
            return None
        anim.action = bpy.data.actions.new(ACTION_NAME)
    action = anim.action
    if not hasattr(anim, "action_slot"):
        return action  # Blender < 4.4: the action holds the fcurves itself
    from bpy_extras import anim_utils

    if anim.action_slot is None:
        if not create:
            return None
        slot = anim_utils.action_get_first_suitable_slot(action, "KEY") or \
            action.slots.new(id_type="KEY", name=key.name)
        anim.action_slot = slot
    if create:
        return anim_utils.action_ensure_channelbag_for_slot(action, anim.action_slot)
    return anim_utils.action_get_channelbag_for_slot(action, anim.action_slot)


def _add_curve(channelbag, data_path: str, points: list[tuple[float, float]], group: str) -> None:
    existing = channelbag.fcurves.find(data_path)
    if existing is not None:
        channelbag.fcurves.remove(existing)
    if hasattr(channelbag, "slot"):  # a 4.4+ channelbag
        fcurve = channelbag.fcurves.new(data_path, group_name=group)
    else:
        fcurve = channelbag.fcurves.new(data_path, action_group=group)
    fcurve.keyframe_points.add(len(points))
    fcurve.keyframe_points.foreach_set("co", np.asarray(points, dtype=np.float32).ravel())
    for point in fcurve.keyframe_points:
        point.interpolation = "LINEAR"  # a straight cross-fade, no ease overshoot
    fcurve.update()
