"""Landmarks in Edit Mode: select a vertex, click "Nose tip"; stored as `AM_landmark_<name>`.

Vertex groups survive save and reload, show in Blender's Vertex Groups list and are scriptable;
one vertex each. Also "Select Broken Vertices" (NaN or infinite positions), a remedy the refusal
names, since Blender has no tool that finds them.
"""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

import bmesh
import bpy
import numpy as np
from bpy.props import EnumProperty

from ..core.vocabulary import LANDMARKS, enum_items, landmark_group
from . import overlay
from .mesh_data import placed_landmarks

LANDMARK_ITEMS = enum_items(LANDMARKS)


def _edit_mesh_poll(cls, context) -> bool:
    obj = context.edit_object
    if obj is None or obj.type != "MESH":
        cls.poll_message_set("Enter Edit Mode on the face mesh (Tab) and select one vertex")
        return False
    return True


def refresh_markers(obj) -> None:
    """Redraw the markers of a face from its groups (Object Mode data: call after leaving Edit Mode
    or after a group change)."""
    settings = bpy.context.scene.animateme
    if settings.show_landmarks:
        overlay.show_landmarks(obj, placed_landmarks(obj))
    else:
        overlay.remove_landmarks(obj.name)


class ANIMATEME_OT_set_landmark(bpy.types.Operator):
    """Store the selected vertex as this landmark (a vertex group AM_landmark_<name>)"""

    bl_idname = "animateme.set_landmark"
    bl_label = "Set Landmark"
    bl_options = {"REGISTER", "UNDO"}

    name: EnumProperty(name="Landmark", items=LANDMARK_ITEMS)

    @classmethod
    def poll(cls, context):
        return _edit_mesh_poll(cls, context)

    def execute(self, context):
        obj = context.edit_object
        bm = bmesh.from_edit_mesh(obj.data)
        selected = [v.index for v in bm.verts if v.select]
        if len(selected) != 1:
            self.report({"ERROR"}, f"AnimateMe: {len(selected)} vertices are selected: select exactly one "
                                   f"vertex for the {self.name.replace('_', ' ')}")
            return {"CANCELLED"}
        group = obj.vertex_groups.get(landmark_group(self.name)) or obj.vertex_groups.new(name=landmark_group(self.name))
        deform = bm.verts.layers.deform.verify()
        for vertex in bm.verts:          # one vertex per landmark: moving it replaces the old one
            weights = vertex[deform]
            if group.index in weights:
                del weights[group.index]
        bm.verts[selected[0]][deform][group.index] = 1.0
        bmesh.update_edit_mesh(obj.data)
        self.report({"INFO"}, f"AnimateMe: {self.name} = vertex {selected[0]}")
        _refresh_after_edit(obj)
        return {"FINISHED"}


class ANIMATEME_OT_clear_landmark(bpy.types.Operator):
    """Remove this landmark (its vertex group)"""

    bl_idname = "animateme.clear_landmark"
    bl_label = "Clear Landmark"
    bl_options = {"REGISTER", "UNDO"}

    name: EnumProperty(name="Landmark", items=LANDMARK_ITEMS)

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Select the face mesh")
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        group = obj.vertex_groups.get(landmark_group(self.name))
        if group is not None:
            obj.vertex_groups.remove(group)
        _refresh_after_edit(obj)
        return {"FINISHED"}


class ANIMATEME_OT_select_broken(bpy.types.Operator):
    """Select the vertices at NaN or infinite positions (then Delete ▸ Vertices removes them)"""

    bl_idname = "animateme.select_broken"
    bl_label = "Select Broken Vertices"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _edit_mesh_poll(cls, context)

    def execute(self, context):
        bm = bmesh.from_edit_mesh(context.edit_object.data)
        count = 0
        for vertex in bm.verts:
            broken = not np.isfinite(tuple(vertex.co)).all()
            vertex.select_set(broken)
            count += broken
        bm.select_flush_mode()
        bmesh.update_edit_mesh(context.edit_object.data)
        self.report({"INFO"}, f"AnimateMe: {count} broken vertices selected")
        return {"FINISHED"}


def _refresh_after_edit(obj) -> None:
    """Markers read groups from Object Mode data: flush Edit Mode's, then redraw them."""
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    refresh_markers(obj)


def draw(layout, context) -> None:
    """The Landmarks box: a button per landmark (Edit Mode), what is placed, the markers toggle."""
    obj = context.active_object
    settings = context.scene.animateme
    box = layout.box()
    header = box.row()
    header.label(text="Landmarks", icon="EMPTY_SINGLE_ARROW")
    header.prop(settings, "show_landmarks", text="", icon="HIDE_OFF" if settings.show_landmarks else "HIDE_ON")
    if obj is None or obj.type != "MESH":
        box.label(text="Select the face mesh")
        return
    placed = {g.name for g in obj.vertex_groups}
    editing = context.mode == "EDIT_MESH"
    if not editing:
        box.label(text="Edit Mode: select a vertex, click its name", icon="INFO")
    grid = box.grid_flow(columns=2, even_columns=True, align=True)
    for choice in LANDMARKS:
        row = grid.row(align=True)
        is_placed = landmark_group(choice.name) in placed
        sub = row.row(align=True)
        sub.enabled = editing
        sub.operator("animateme.set_landmark", text=choice.label,
                     icon="CHECKMARK" if is_placed else "DOT").name = choice.name
        if is_placed:
            row.operator("animateme.clear_landmark", text="", icon="X").name = choice.name
    count = sum(landmark_group(c.name) in placed for c in LANDMARKS)
    box.label(text=f"{count} placed (the fit uses them from 3)" if count else "None placed: the fit is automatic")
    if editing:
        box.operator("animateme.select_broken", icon="ERROR")


CLASSES = (ANIMATEME_OT_set_landmark, ANIMATEME_OT_clear_landmark, ANIMATEME_OT_select_broken)
