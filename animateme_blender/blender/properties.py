"""The panel's settings, stored on the scene (`scene.animateme`), and their conversion to a Request."""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

import time

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..core.pipeline import Request, timing_from_frames, timing_preset
from ..core.progression import LABELS, TIMING_PRESETS

EXPRESSION_ITEMS = [(label, label.capitalize(), f"Generate a {label} expression") for label in LABELS]
TIMING_ITEMS = [(name.upper(), name.capitalize(), f"The '{name}' onset / apex / offset timing")
                for name in TIMING_PRESETS] + [("CUSTOM", "Custom", "Set onset, apex, offset and end in frames")]
QUALITY_ITEMS = [
    ("FAST", "Fast (DDIM)", "A few deterministic denoising steps: about a second"),
    ("PAPER", "Paper (DDPM)", "All denoising steps of the paper's sampler: slower"),
]
DEVICE_ITEMS = [
    ("AUTO", "Auto", "The GPU when onnxruntime-gpu sees one, else the CPU"),
    ("CPU", "CPU", "Always the CPU"),
    ("GPU", "GPU", "The GPU (needs the GPU build of the add-on and a CUDA GPU)"),
]

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
    from .operators import generation_running, live_regenerate

    waited = time.monotonic() - _live_state["changed_at"]
    if waited < LIVE_DELAY_S or generation_running():
        return LIVE_DELAY_S - min(waited, LIVE_DELAY_S) + 0.05
    _live_state["scheduled"] = False
    live_regenerate()
    return None


class AnimateMeSettings(bpy.types.PropertyGroup):
    expression: EnumProperty(name="Expression", items=EXPRESSION_ITEMS, default="happy")
    intensity: FloatProperty(name="Intensity", description="How extreme the expression gets at its apex",
                             default=1.0, min=0.0, max=1.0, subtype="FACTOR")
    timing: EnumProperty(name="Timing", items=TIMING_ITEMS, default="DEFAULT")
    onset_frame: IntProperty(name="Onset", description="Clip frame where the face starts to move",
                             default=4, min=0)
    apex_frame: IntProperty(name="Apex", description="Clip frame where the expression is full", default=14, min=0)
    offset_frame: IntProperty(name="Offset", description="Clip frame where it starts to relax", default=27, min=0)
    end_frame: IntProperty(name="End", description="Clip frame where the face is neutral again", default=37, min=0)
    frames: IntProperty(name="Frames", description="Length of the clip", default=40, min=2, max=1000)
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
    device_used: StringProperty(name="Device Used", description="What ran the last generation")
    set_frame_range: BoolProperty(name="Set Frame Range", default=True,
                                  description="Make the scene's frame range cover the clip")

    def to_request(self, quality: str | None = None) -> Request:
        if self.timing == "CUSTOM":
            timing = timing_from_frames(self.frames, self.onset_frame, self.apex_frame,
                                        self.offset_frame, self.end_frame)
        else:
            timing = timing_preset(self.timing.lower())
        return Request(
            expression=self.expression,
            second=self.second_expression if self.use_second else None,
            mix=float(self.mix) if self.use_second and not self.transition else 0.0,
            transition=bool(self.use_second and self.transition),
            intensity=float(self.intensity), timing=timing, frames=int(self.frames), seed=int(self.seed),
            quality=(quality or self.quality).lower(),
        ).validate()


CLASSES = (AnimateMeSettings,)


def register_properties():
    bpy.types.Scene.animateme = PointerProperty(type=AnimateMeSettings)


def unregister_properties():
    del bpy.types.Scene.animateme
