"""The panel's settings, stored on the scene (`scene.animateme`), and their conversion to a Request."""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..core.request import build_request, frames_from_timing, timing_from_frames, timing_preset
from ..core.vocabulary import CUSTOM_TIMING, DEVICES, EXPRESSIONS, OUTPUTS, QUALITIES, TIMINGS, enum_items
from .worker import generation_running, live_regenerate

EXPRESSION_ITEMS = enum_items(EXPRESSIONS)
TIMING_ITEMS = enum_items((*TIMINGS, CUSTOM_TIMING), upper=True)
QUALITY_ITEMS = enum_items(QUALITIES, upper=True)
DEVICE_ITEMS = enum_items(DEVICES, upper=True)
OUTPUT_ITEMS = enum_items(OUTPUTS, upper=True)
CUSTOM_FIELDS = ("onset_frame", "apex_frame", "offset_frame", "end_frame")

# Debounce for the live interpolation slider: regenerate once the slider rests this long.
LIVE_DELAY_S = 0.35
_live_state = {"changed_at": 0.0, "scheduled": False}


def _mix_changed(self, context):
    if not self.live_update or not self.use_second:
        return
    _live_state["changed_at"] = time.monotonic()
    if not _live_state["scheduled"]:
        _live_state["scheduled"] = True
        bpy.app.timers.register(_live_tick, first_interval=LIVE_DELAY_S)


def _live_tick():
    """Timer: once the slider has rested, regenerate fast from the cached fit (modal, same seed)."""
    waited = time.monotonic() - _live_state["changed_at"]
    if waited < LIVE_DELAY_S or generation_running():
        return LIVE_DELAY_S - min(waited, LIVE_DELAY_S) + 0.05
    _live_state["scheduled"] = False
    live_regenerate()
    return None


def _fill_custom_timing(self, context):
    """Custom starts from the default timing scaled to the clip, so its frames always fit."""
    if self.timing != "CUSTOM":
        return
    last = max(self.frames - 1, 1)
    if self.end_frame > last or not self.custom_filled:
        marks = frames_from_timing(self.frames, timing_preset("default"))
        for name, value in zip(CUSTOM_FIELDS, marks):
            setattr(self, name, value)
        self.custom_filled = True


def _show_landmarks_changed(self, context):
    from .landmarks import refresh_markers

    obj = context.active_object
    if obj is not None and obj.type == "MESH":
        refresh_markers(obj)


class AnimateMeSettings(bpy.types.PropertyGroup):
    expression: EnumProperty(name="Expression", items=EXPRESSION_ITEMS, default="happy")
    intensity: FloatProperty(name="Intensity", description="How extreme the expression gets at its apex",
                             default=1.0, min=0.0, max=1.0, subtype="FACTOR")
    timing: EnumProperty(name="Timing", items=TIMING_ITEMS, default="DEFAULT", update=_fill_custom_timing)
    custom_filled: BoolProperty(default=False, options={"HIDDEN"})
    onset_frame: IntProperty(name="Onset", description="Clip frame where the face starts to move",
                             default=4, min=0)
    apex_frame: IntProperty(name="Apex", description="Clip frame where the expression is full", default=14, min=0)
    offset_frame: IntProperty(name="Offset", description="Clip frame where it starts to relax", default=27, min=0)
    end_frame: IntProperty(name="End", description="Clip frame where the face is neutral again", default=37, min=0)
    frames: IntProperty(name="Frames", description="Length of the clip", default=40, min=3, max=1000,
                        update=_fill_custom_timing)
    start_frame: IntProperty(name="Start Frame", description="Scene frame of the clip's first frame", default=1)
    use_second: BoolProperty(name="Second Expression", description="Blend with, or move on to, a second expression")
    second_expression: EnumProperty(name="Second", items=EXPRESSION_ITEMS, default="sad")
    mix: FloatProperty(name="Interpolation", description="0: only the first expression, 1: only the second",
                       default=0.5, min=0.0, max=1.0, subtype="FACTOR", update=_mix_changed)
    transition: BoolProperty(name="Transition", description="First expression, then the second, within the clip")
    live_update: BoolProperty(name="Live", default=True,
                              description="Regenerate (fast, same seed) when the interpolation slider moves")
    seed: IntProperty(name="Seed", default=0, min=0)
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="FAST")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    output: EnumProperty(name="Output", items=OUTPUT_ITEMS, default="FRAMES")
    device_used: StringProperty(name="Device Used", description="What ran the last generation")
    face_region: StringProperty(
        name="Face Region", description="Vertex group of the face: only it is fitted and animated, everything "
        "else stays exactly still (empty: the whole mesh)")
    show_landmarks: BoolProperty(name="Show Landmarks", default=True, update=_show_landmarks_changed,
                                 description="Draw the placed landmarks in the viewport")
    set_frame_range: BoolProperty(name="Set Frame Range", default=True,
                                  description="Make the scene's frame range cover the clip")

    def to_request(self, quality: str | None = None):
        if self.timing == "CUSTOM":
            timing = timing_from_frames(self.frames, self.onset_frame, self.apex_frame,
                                        self.offset_frame, self.end_frame)
        else:
            timing = self.timing.lower()
        return build_request(self.expression, self.second_expression if self.use_second else None,
                             float(self.mix), bool(self.use_second and self.transition), float(self.intensity),
                             timing, int(self.frames), int(self.seed), (quality or self.quality).lower())


CLASSES = (AnimateMeSettings,)


def register_properties():
    bpy.types.Scene.animateme = PointerProperty(type=AnimateMeSettings)


def unregister_properties():
    del bpy.types.Scene.animateme
