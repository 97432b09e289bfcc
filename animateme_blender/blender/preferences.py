"""Add-on preferences: the model file and the defaults new scenes start from."""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from ..core.pipeline import default_model_path, default_template_path, shared_pipeline
from .properties import DEVICE_ITEMS, QUALITY_ITEMS

# The add-on's own package: `animateme_blender` in development, `bl_ext.<repo>.animateme` installed.
ADDON_PACKAGE = __package__.rpartition(".")[0]


class AnimateMePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    model_path: StringProperty(
        name="Model", subtype="FILE_PATH",
        description="An AnimateMe .onnx model (its .json card beside it); empty: the bundled model")
    default_quality: EnumProperty(name="Default Quality", items=QUALITY_ITEMS, default="FAST")
    default_device: EnumProperty(name="Default Device", items=DEVICE_ITEMS, default="AUTO")
    default_frames: IntProperty(name="Default Frames", default=40, min=2, max=1000)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "model_path")
        layout.label(text=f"In use: {model_path()}")
        row = layout.row()
        row.prop(self, "default_quality")
        row.prop(self, "default_device")
        layout.prop(self, "default_frames")


def preferences() -> AnimateMePreferences | None:
    addon = bpy.context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


def model_path() -> Path:
    prefs = preferences()
    if prefs and prefs.model_path.strip():
        return Path(bpy.path.abspath(prefs.model_path.strip()))
    return default_model_path()


def template_path() -> Path:
    return default_template_path()


def fit_cache_dir() -> Path | None:
    """Fits persist in the extension's user folder (survives restarts); none outside an extension."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="fits", create=True))
    except (ValueError, RuntimeError, AttributeError):
        return None


def pipeline_for_preferences():
    """The shared pipeline for the model, template and fit cache these preferences name."""
    return shared_pipeline(model_path(), template_path(), fit_cache_dir())


def apply_defaults(settings) -> None:
    """New scenes start from the preference defaults."""
    prefs = preferences()
    if prefs:
        settings.quality = prefs.default_quality
        settings.device = prefs.default_device
        settings.frames = prefs.default_frames


CLASSES = (AnimateMePreferences,)
