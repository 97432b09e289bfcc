"""Read what the fit needs from a Blender mesh object, and refuse what it cannot use.

Arrays (rest positions, triangles), landmarks from the `AM_landmark_<name>` vertex groups, the
face region from a vertex group, and the checks that belong to Blender's own data: absolute shape
keys, a Mirror modifier, vertices at NaN, a mesh without faces, an unwelded mesh. Used by the
operators and by the headless batch alike (which must not import the operators).
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import AnimateMeError
from ..core.frames import blender_to_face_model
from ..core.fit.fit_options import FitOptions
from ..core.vocabulary import LANDMARK_GROUP_PREFIX, LANDMARK_NAMES, MIN_LANDMARKS, landmark_group
from .refusals import MeshRefused
from .shape_keys import base_coordinates, triangles

UNWELDED_FRACTION = 0.1   # this share of vertices sitting exactly on others: the mesh is not welded
# Modifiers that add the other half of a face: the fit would see half a face, the keys would not
# reach the mirrored half.
HALF_FACE_MODIFIERS = ("MIRROR",)


def article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


MAKE_LOCAL = "Object ▸ Relations ▸ Make Local ▸ Selected Objects and Data"


def linked_problem(obj: bpy.types.Object) -> str | None:
    """Why the keys cannot be written to a linked object or mesh (or an override), naming which of
    the two is linked; None when both are local."""
    for thing, what in ((obj, f"'{obj.name}'"), (obj.data, f"the mesh of '{obj.name}' ('{obj.data.name}')")):
        local = " (the object itself is local)" if thing is obj.data and not (obj.library or obj.override_library) else ""
        if thing.library:
            return f"{what} is linked from the library '{thing.library.name}'{local}: make it local first ({MAKE_LOCAL})"
        if thing.override_library:
            return f"{what} is a library override{local}: make it local first ({MAKE_LOCAL})"
    return None


def check_object(obj: bpy.types.Object) -> None:
    """Everything about a mesh object that makes a generation wrong or impossible, before any work."""
    mesh = obj.data
    key = mesh.shape_keys
    if key is not None and not key.use_relative:
        raise AnimateMeError(
            f"'{obj.name}' has absolute shape keys (Object Data ▸ Shape Keys ▸ Relative is off), which cannot "
            "play AnimateMe's per-frame keys: turn Relative on, or remove its shape keys, then generate again")
    if len(mesh.vertices) == 0:
        raise AnimateMeError(f"'{obj.name}' has no vertices: select a face mesh")
    coords = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", coords)
    coords = coords.reshape(-1, 3)
    for modifier in obj.modifiers:
        if modifier.type in HALF_FACE_MODIFIERS and (modifier.show_viewport or modifier.show_render):
            kind = modifier.type.capitalize()
            if _holds_both_sides(obj, modifier, coords):
                raise AnimateMeError(
                    f"'{obj.name}' has a {kind} modifier ('{modifier.name}') but its mesh is already the whole "
                    f"face, so the modifier only doubles it: remove '{modifier.name}' (Modifier Properties ▸ "
                    f"'{modifier.name}' ▸ X), then generate")
            raise AnimateMeError(
                f"'{obj.name}' has a {kind} modifier ('{modifier.name}'): the fit needs the "
                f"whole face: apply '{modifier.name}' first (Modifier Properties ▸ '{modifier.name}' ▸ Apply), "
                "then generate")
    broken = int((~np.isfinite(coords).all(axis=1)).sum())
    if broken:
        raise MeshRefused(f"{broken:,} of the {len(coords):,} vertices of '{obj.name}' are at NaN or infinite "
                          "positions", ("remove_nonfinite",))
    if len(mesh.polygons) == 0:
        raise MeshRefused(f"'{obj.name}' has no faces (only {len(mesh.vertices):,} vertices and "
                          f"{len(mesh.edges):,} edges): AnimateMe animates a surface", ("add_faces",))
    size = float(np.ptp(coords, axis=0).max()) or 1.0
    unique = len(np.unique(np.round(coords / (size * 1e-6)).astype(np.int64), axis=0))
    stacked = len(coords) - unique
    if stacked > UNWELDED_FRACTION * len(coords):
        raise MeshRefused(f"'{obj.name}' is not welded: {stacked:,} of its {len(coords):,} vertices lie exactly "
                          "on others, so its faces are not connected", ("merge_by_distance",))


def _holds_both_sides(obj, modifier, coords: np.ndarray) -> bool:
    """True when the mesh already spans both sides of a mirror plane (a whole face): applying the
    modifier would double the face, removing it is right. Half a face lies on one side."""
    points = np.asarray(coords, np.float64)
    if modifier.mirror_object is not None:
        local = modifier.mirror_object.matrix_world.inverted() @ obj.matrix_world
        points = points @ np.array(local.to_3x3()).T + np.array(local.translation)
    size = float(np.ptp(points, axis=0).max()) or 1.0
    for axis in range(3):
        if modifier.use_axis[axis]:
            side = points[:, axis] / size
            if min((side < -0.05).mean(), (side > 0.05).mean()) > 0.2:   # a fifth of it on each side
                return True
    return False


def mesh_arrays(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """Rest positions (reference key) in the face model's Y-up axes, and triangles."""
    return blender_to_face_model(base_coordinates(obj).astype(np.float64)), triangles(obj)


def group_members(obj: bpy.types.Object, group_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights) of the vertices in a vertex group with weight > 0."""
    group = obj.vertex_groups.get(group_name)
    if group is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    index = group.index
    members, weights = [], []
    for vertex in obj.data.vertices:
        for element in vertex.groups:
            if element.group == index and element.weight > 0.0:
                members.append(vertex.index)
                weights.append(element.weight)
                break
    return np.asarray(members, dtype=np.int64), np.asarray(weights)


def placed_landmarks(obj: bpy.types.Object) -> dict[str, int]:
    """{name: vertex} from the AM_landmark_<name> groups; a group of several vertices gives the one
    nearest their weighted centre (a landmark is a point)."""
    found = {}
    names = {g.name for g in obj.vertex_groups if g.name.startswith(LANDMARK_GROUP_PREFIX)}
    if not names:
        return found
    coords = base_coordinates(obj)
    for name in LANDMARK_NAMES:
        if landmark_group(name) not in names:
            continue
        members, weights = group_members(obj, landmark_group(name))
        if len(members) == 0:
            continue
        centre = (coords[members] * weights[:, None]).sum(0) / weights.sum()
        found[name] = int(members[np.argmin(np.linalg.norm(coords[members] - centre, axis=1))])
    return found


def region_vertices(obj: bpy.types.Object, group_name: str) -> np.ndarray | None:
    """Vertex indices of the face-region group; None when no region is chosen."""
    group_name = (group_name or "").strip()
    if not group_name:
        return None
    if obj.vertex_groups.get(group_name) is None:
        raise AnimateMeError(f"'{obj.name}' has no vertex group '{group_name}': choose the Face Region again "
                             "(or clear it to fit the whole mesh)")
    members, _ = group_members(obj, group_name)
    if len(members) == 0:
        raise AnimateMeError(f"the Face Region group '{group_name}' holds no vertices: assign the face to it "
                             "(Edit Mode, select the face, Object Data ▸ Vertex Groups ▸ Assign)")
    return members


def fit_options(obj: bpy.types.Object, region_group: str = "", force: bool = False,
                landmarks: dict | None = None) -> FitOptions:
    """The fit's options for this object: its placed landmarks (unless given), its region group."""
    if landmarks is None:
        landmarks = placed_landmarks(obj)
    if landmarks and len(landmarks) < MIN_LANDMARKS:
        placed = ", ".join(sorted(landmarks))
        raise AnimateMeError(f"'{obj.name}' has {len(landmarks)} landmark(s) ({placed}): place at least {MIN_LANDMARKS} "
                             "(nose tip and both mouth corners are quickest), or remove them")
    return FitOptions.make(landmarks, region_vertices(obj, region_group), force).check(len(obj.data.vertices))
