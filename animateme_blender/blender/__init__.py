"""The bpy layer: settings (properties, preferences), the panel and its operators (generate,
fit preview, landmarks), the overlays they draw, the mesh reading and checks (mesh_data), the
refusal wording (refusals), the shape-key writer, and the headless batch (with its preview render).

Nothing here does numerical work; it converts Blender data to arrays, calls the core, and writes
the result back.
"""

from __future__ import annotations

import bpy

from . import fit_preview, landmarks, operators, overlay, panel, preferences, properties, worker

CLASSES = (*properties.CLASSES, *preferences.CLASSES, *operators.CLASSES, *landmarks.CLASSES,
           *fit_preview.CLASSES, *panel.CLASSES)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()
    overlay.register()


def unregister():
    worker.cancel_all()
    overlay.unregister()
    properties.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
