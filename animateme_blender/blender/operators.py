"""Generate Expression and Clear: the operators behind the AnimateMe panel.

`execute()` runs synchronously (scripts, headless runs, tests); `invoke()` runs the numpy/ONNX work
in a worker thread and polls it from a modal timer, so the UI keeps drawing, the status bar shows
progress and Esc cancels. Nothing touches the scene until the result is ready: then, on the main
thread and in one go, the keys are written, which makes one undo step, and a cancel or an error
leaves the scene exactly as it was.
"""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

import threading
import time

import bpy
import numpy as np
from bpy.props import BoolProperty

from ..core.errors import AnimateMeError
from ..core.frames import blender_to_face_model, face_model_to_blender
from ..core.pipeline import Cancelled, Request, Result, shared_pipeline
from . import preferences
from .shape_keys import base_coordinates, clear_animation, generated_keys, triangles, write_animation

_running: dict[str, "GenerationJob"] = {}
last_run: dict = {}   # timings of the latest generation, for the status report and the benchmark


class GenerationJob:
    """Pipeline.generate on a worker thread; the main thread polls `done` and reads the outcome."""

    def __init__(self, pipeline, vertices, faces, request: Request, device: str):
        self.pipeline, self.vertices, self.faces = pipeline, vertices, faces
        self.request, self.device = request, device
        self.fraction, self.message = 0.0, "starting"
        self.result: Result | None = None
        self.error: Exception | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self.run, name="AnimateMe generation", daemon=True)

    def start(self) -> "GenerationJob":
        self._thread.start()
        return self

    def run(self) -> None:
        try:
            self.result = self.pipeline.generate(self.vertices, self.faces, self.request, self.device,
                                                 progress=self._progress, cancel=self._cancel.is_set)
        except Exception as error:  # handed to the main thread, which reports it
            self.error = error

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() or isinstance(self.error, Cancelled)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def generation_running() -> bool:
    return any(not job.done for job in _running.values())


def target_object(context) -> bpy.types.Object:
    """The one mesh to animate, or an AnimateMeError saying what to fix."""
    if context.mode != "OBJECT":
        raise AnimateMeError("switch to Object Mode first (Tab): AnimateMe reads the saved mesh")
    selected = list(context.selected_objects)
    if len(selected) > 1:
        raise AnimateMeError(f"{len(selected)} objects are selected: select only the neutral face mesh")
    if not selected:
        raise AnimateMeError("nothing is selected: select the neutral face mesh, then Generate Expression")
    obj = selected[0]
    if obj.type != "MESH":
        raise AnimateMeError(f"'{obj.name}' is a {obj.type.lower()}, not a mesh: select a face mesh")
    if obj.library or obj.data.library:
        raise AnimateMeError(f"'{obj.name}' is linked from a library: make it local first (Object > Relations)")
    if obj.override_library or obj.data.override_library:
        raise AnimateMeError(f"'{obj.name}' is a library override: make it local first (Object > Relations)")
    if len(obj.data.vertices) == 0:
        raise AnimateMeError(f"'{obj.name}' has no vertices: select a face mesh")
    return obj


def mesh_arrays(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """Rest positions (reference key) in the face model's Y-up axes, and triangles."""
    return blender_to_face_model(base_coordinates(obj).astype(np.float64)), triangles(obj)


def pipeline_for_preferences():
    return shared_pipeline(preferences.model_path(), preferences.template_path(), preferences.fit_cache_dir())


def apply_result(context, obj: bpy.types.Object, result: Result, settings) -> list[str]:
    """Main thread: write the keys (object-local Z-up) and report what ran."""
    displacements = face_model_to_blender(result.displacements)
    names = write_animation(obj, displacements, result.progression, result.request.label,
                            int(settings.start_frame), settings=result.request.to_dict())
    if settings.set_frame_range:
        scene = context.scene
        scene.frame_start = int(settings.start_frame)
        scene.frame_end = int(settings.start_frame) + len(names) - 1
    settings.device_used = "GPU (CUDA)" if "CUDA" in result.device else "CPU"
    return names


class ANIMATEME_OT_generate(bpy.types.Operator):
    """Animate the selected neutral face: one shape key per frame, keyframed to play back"""

    bl_idname = "animateme.generate"
    bl_label = "Generate Expression"
    bl_options = {"REGISTER", "UNDO"}

    live: BoolProperty(name="Live", default=False, options={"HIDDEN", "SKIP_SAVE"},
                       description="Fast mode from the cached fit only (the interpolation slider)")

    def _prepare(self, context):
        settings = context.scene.animateme
        obj = target_object(context)
        request = settings.to_request(quality="fast" if self.live else None)
        vertices, faces = mesh_arrays(obj)
        pipeline = pipeline_for_preferences()
        if self.live and not pipeline.is_registered(vertices, faces):
            raise AnimateMeError("no cached fit for this mesh yet: press Generate Expression once first")
        return settings, obj, request, vertices, faces, pipeline

    def execute(self, context):
        try:
            settings, obj, request, vertices, faces, pipeline = self._prepare(context)
            job = GenerationJob(pipeline, vertices, faces, request, settings.device.lower())
            job.run()  # synchronously, in this thread
            if job.error is not None:
                raise job.error
            return self._finish(context, obj, job.result, settings)
        except Cancelled:
            self.report({"WARNING"}, "AnimateMe: cancelled, nothing was changed")
            return {"CANCELLED"}
        except AnimateMeError as error:
            self.report({"ERROR"}, f"AnimateMe: {error}")
            return {"CANCELLED"}

    def invoke(self, context, event):
        if generation_running():
            self.report({"WARNING"}, "AnimateMe: a generation is already running (Esc cancels it)")
            return {"CANCELLED"}
        try:
            settings, obj, request, vertices, faces, pipeline = self._prepare(context)
        except AnimateMeError as error:
            self.report({"ERROR"}, f"AnimateMe: {error}")
            return {"CANCELLED"}
        self._object_name = obj.name
        self._job = GenerationJob(pipeline, vertices, faces, request, settings.device.lower()).start()
        _running[obj.name] = self._job
        self._started = time.perf_counter()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        self._status(context, "AnimateMe: starting (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC":
            job.cancel()
            job.wait(5.0)  # the worker checks cancel between steps: it stops within one step
            self._cleanup(context)
            self.report({"WARNING"}, "AnimateMe: cancelled, nothing was changed")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not job.done:
            context.window_manager.progress_update(int(100 * job.fraction))
            self._status(context, f"AnimateMe: {job.message} ({100 * job.fraction:.0f}%) - Esc to cancel")
            return {"RUNNING_MODAL"}
        self._cleanup(context)
        if job.cancelled:
            self.report({"WARNING"}, "AnimateMe: cancelled, nothing was changed")
            return {"CANCELLED"}
        if job.error is not None:
            message = str(job.error) if isinstance(job.error, AnimateMeError) else repr(job.error)
            self.report({"ERROR"}, f"AnimateMe: {message}")
            return {"CANCELLED"}
        obj = bpy.data.objects.get(self._object_name)
        if obj is None or obj.type != "MESH" or len(obj.data.vertices) != len(job.vertices):
            self.report({"ERROR"}, "AnimateMe: the face mesh changed while generating: nothing was written, "
                                   "generate again")
            return {"CANCELLED"}
        if context.mode != "OBJECT":
            self.report({"ERROR"}, "AnimateMe: left Object Mode while generating: nothing was written, "
                                   "generate again")
            return {"CANCELLED"}
        return self._finish(context, obj, job.result, context.scene.animateme)

    def _finish(self, context, obj, result: Result, settings):
        started = time.perf_counter()
        names = apply_result(context, obj, result, settings)
        write_s = time.perf_counter() - started
        last_run.clear()
        last_run.update(result.timings, write=write_s, device=result.device, fit_cached=result.fit_cached)
        cached = "cached fit" if result.fit_cached else "new fit"
        self.report({"INFO"}, f"AnimateMe: {len(names)} shape keys '{result.request.label}' on {obj.name} "
                              f"({settings.device_used}, {cached}, {result.timings['total'] + write_s:.1f} s)")
        return {"FINISHED"}

    def _status(self, context, text: str | None) -> None:
        if context.workspace is not None:
            context.workspace.status_text_set(text)

    def _cleanup(self, context) -> None:
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        self._status(context, None)
        _running.pop(self._object_name, None)


class ANIMATEME_OT_clear(bpy.types.Operator):
    """Remove the shape keys and keyframes AnimateMe generated on the selected face (nothing else)"""

    bl_idname = "animateme.clear"
    bl_label = "Clear Generated Keys"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and context.mode == "OBJECT" and bool(generated_keys(obj))

    def execute(self, context):
        removed = clear_animation(context.active_object)
        self.report({"INFO"}, f"AnimateMe: removed {removed} generated shape keys")
        return {"FINISHED"}


class ANIMATEME_OT_reset_settings(bpy.types.Operator):
    """Reset quality, device and frame count to the add-on preferences' defaults"""

    bl_idname = "animateme.reset_settings"
    bl_label = "Reset to Defaults"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        preferences.apply_defaults(context.scene.animateme)
        return {"FINISHED"}


def live_regenerate() -> None:
    """Called by the slider's debounce timer: the modal path when a window exists, else synchronous."""
    context = bpy.context
    window = context.window or (context.window_manager.windows[0] if context.window_manager.windows else None)
    obj = context.active_object
    if obj is None or obj.type != "MESH" or not generated_keys(obj):
        return  # only a face that was already generated follows the slider
    area = next((a for a in window.screen.areas if a.type == "VIEW_3D"), None) if window else None
    if window is not None and area is not None and not bpy.app.background:
        with context.temp_override(window=window, area=area):
            bpy.ops.animateme.generate("INVOKE_DEFAULT", live=True)
    else:
        bpy.ops.animateme.generate("EXEC_DEFAULT", live=True)


CLASSES = (ANIMATEME_OT_generate, ANIMATEME_OT_clear, ANIMATEME_OT_reset_settings)
