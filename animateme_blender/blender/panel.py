"""The AnimateMe tab in the 3D Viewport's sidebar."""

from __future__ import annotations

import bpy

from . import fit_preview, landmarks
from .rig_keys import read_rig_record
from .shape_keys import generated_keys


class VIEW3D_PT_animateme(bpy.types.Panel):
    bl_label = "AnimateMe"
    bl_idname = "VIEW3D_PT_animateme"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "AnimateMe"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.animateme
        obj = context.active_object

        landmarks.draw(layout, context)
        fit_preview.draw(layout, context)

        layout.prop(settings, "expression")
        layout.prop(settings, "intensity", slider=True)

        box = layout.box()
        box.prop(settings, "use_second")
        if settings.use_second:
            box.prop(settings, "second_expression")
            box.prop(settings, "transition")
            row = box.row(align=True)
            row.active = not settings.transition
            row.prop(settings, "mix", slider=True)
            row.prop(settings, "live_update", toggle=True, text="", icon="PLAY")

        col = layout.column(align=True)
        col.prop(settings, "timing")
        if settings.timing == "CUSTOM":
            for name in ("onset_frame", "apex_frame", "offset_frame", "end_frame"):
                col.prop(settings, name)
        row = layout.row(align=True)
        row.prop(settings, "frames")
        row.prop(settings, "start_frame")
        layout.prop(settings, "set_frame_range")

        layout.prop(settings, "seed")
        layout.prop(settings, "quality", expand=True)
        layout.prop(settings, "device", expand=True)
        layout.prop(settings, "output", expand=True)
        if settings.device_used:
            layout.label(text=f"Last run on: {settings.device_used}", icon="INFO")

        layout.separator()
        row = layout.row()
        row.scale_y = 1.5
        row.operator("animateme.generate", icon="SHAPEKEY_DATA")
        if obj is not None and obj.type == "MESH" and generated_keys(obj):
            layout.label(text=f"{len(generated_keys(obj))} generated keys on {obj.name}")
        if obj is not None and obj.type == "MESH" and read_rig_record(obj):
            clips = len(read_rig_record(obj).get("actions", []))
            layout.label(text=f"ARKit rig on {obj.name}, {clips} clip(s) as Actions")
        if obj is not None and obj.type == "MESH" and (generated_keys(obj) or read_rig_record(obj)):
            layout.operator("animateme.clear", icon="X")
        layout.operator("animateme.reset_settings", icon="LOOP_BACK")


CLASSES = (VIEW3D_PT_animateme,)
