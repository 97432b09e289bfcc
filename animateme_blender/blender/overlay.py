"""Temporary viewport overlays: the fitted template as a wire over the face, and landmark markers.

They live in their own collection ("AnimateMe Overlay"), are parented to the face (so they follow
it), cannot be selected, and are never saved: a save handler removes them before Blender writes
the file, and the next generation or the Hide button removes the fit preview. Markers are small
spheres parented to their landmark vertex, named after the landmark (the name shows in the
viewport), drawn in front of the mesh.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..core.frames import face_model_to_blender
from ..core.vocabulary import LANDMARKS

COLLECTION = "AnimateMe Overlay"
PREVIEW_PREFIX = "AM Fit Preview"
MARKER_PREFIX = "AM Landmark"
OWNER_PROPERTY = "animateme_overlay_of"      # on overlay objects: the face they belong to
PREVIEW_COLOR = (0.1, 0.85, 0.3, 1.0)
MARKER_COLOR = (1.0, 0.25, 0.1, 1.0)


def _collection(create: bool = True):
    collection = bpy.data.collections.get(COLLECTION)
    if collection is None and create:
        collection = bpy.data.collections.new(COLLECTION)
    scene = bpy.context.scene
    if collection is not None and create and collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection


def _objects(prefix: str, owner: str | None = None) -> list:
    return [o for o in bpy.data.objects if o.name.startswith(prefix) and OWNER_PROPERTY in o
            and (owner is None or o[OWNER_PROPERTY] == owner)]


def _remove(objects) -> None:
    for obj in objects:
        data = obj.data
        bpy.data.objects.remove(obj)
        if data is not None and data.users == 0:
            bpy.data.meshes.remove(data)


def _attach(overlay, face, parent_vertex: int | None = None) -> None:
    overlay[OWNER_PROPERTY] = face.name
    overlay.parent = face
    if parent_vertex is not None:
        overlay.parent_type = "VERTEX"
        overlay.parent_vertices[0] = parent_vertex
    overlay.matrix_parent_inverse.identity()
    overlay.hide_select = True
    overlay.show_in_front = True
    _collection().objects.link(overlay)


def show_fit_preview(face: bpy.types.Object, fit) -> bpy.types.Object:
    """The fitted template (the fit's vertices, face-model axes of the face's local space) as a
    wire object over the face; replaces an earlier preview of the same face."""
    remove_fit_preview(face.name)
    vertices = face_model_to_blender(np.asarray(fit.vertices, dtype=np.float64)).astype(np.float32)
    faces = np.asarray(fit.template_faces, dtype=np.int32)
    mesh = bpy.data.meshes.new(f"{PREVIEW_PREFIX} {face.name}")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    preview = bpy.data.objects.new(f"{PREVIEW_PREFIX} {face.name}", mesh)
    preview.display_type = "WIRE"
    preview.color = PREVIEW_COLOR
    _attach(preview, face)
    return preview


def fit_preview(face_name: str):
    found = _objects(PREVIEW_PREFIX, face_name)
    return found[0] if found else None


def remove_fit_preview(face_name: str | None = None) -> int:
    found = _objects(PREVIEW_PREFIX, face_name)
    _remove(found)
    _drop_empty_collection()
    return len(found)


def show_landmarks(face: bpy.types.Object, landmarks: dict[str, int]) -> list:
    """A marker per placed landmark, sized to the face, named like the panel's buttons."""
    remove_landmarks(face.name)
    if not landmarks:
        return []
    corners = np.array(face.bound_box)
    radius = 0.012 * float(np.linalg.norm(corners.max(0) - corners.min(0))) or 0.001
    labels = {c.name: c.label for c in LANDMARKS}
    markers = []
    for name, vertex in landmarks.items():
        mesh = _sphere(f"{MARKER_PREFIX} {face.name} {name}", radius)
        marker = bpy.data.objects.new(f"{MARKER_PREFIX}: {labels.get(name, name)}", mesh)
        marker.color = MARKER_COLOR
        marker.show_name = True
        _attach(marker, face, parent_vertex=vertex)
        markers.append(marker)
    return markers


def remove_landmarks(face_name: str | None = None) -> int:
    found = _objects(MARKER_PREFIX, face_name)
    _remove(found)
    _drop_empty_collection()
    return len(found)


def remove_all() -> None:
    remove_fit_preview()
    remove_landmarks()


def _drop_empty_collection() -> None:
    collection = _collection(create=False)
    if collection is not None and len(collection.all_objects) == 0:
        bpy.data.collections.remove(collection)


def _sphere(name: str, radius: float):
    """A small UV sphere (8 x 6), built from arrays: no operator, no context needed."""
    rings, segments = 6, 8
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring_points = np.stack([np.outer(np.sin(theta), np.cos(phi)), np.outer(np.sin(theta), np.sin(phi)),
                            np.outer(np.cos(theta), np.ones_like(phi))], -1).reshape(-1, 3)
    points = np.vstack([[0, 0, 1], ring_points, [0, 0, -1]]) * radius
    faces = []
    for s in range(segments):
        n = (s + 1) % segments
        faces.append((0, 1 + s, 1 + n))
        for r in range(rings - 2):
            a, b = 1 + r * segments + s, 1 + r * segments + n
            faces += [(a, a + segments, b + segments), (a, b + segments, b)]
        bottom = 1 + (rings - 2) * segments
        faces.append((bottom + s, len(points) - 1, bottom + n))
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(points.tolist(), [], faces)
    mesh.update()
    return mesh


@persistent
def _before_save(*_args) -> None:
    """Overlays are the add-on's, not the artist's: they never go into a saved file."""
    remove_all()


def register() -> None:
    if _before_save not in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.append(_before_save)


def unregister() -> None:
    if _before_save in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(_before_save)
    try:
        remove_all()
    except (AttributeError, RuntimeError, ReferenceError):
        pass  # Blender quitting: nothing to clean
