"""Generate Expression, Clear and Use Anyway: the operators behind the AnimateMe panel.

`execute()` runs synchronously (scripts, headless runs, tests); `invoke()` runs the numpy/ONNX work
in a worker thread and polls it from a modal timer, so the UI keeps drawing, the status bar shows
progress and Esc cancels: Esc only asks the worker to stop, and the modal keeps polling until it
has (no blocking wait, no worker left running). Nothing touches the scene until the result is
ready: then, on the main thread and in one go, the keys are written, which makes one undo step, and
a cancel or an error leaves the scene exactly as it was.
"""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

import time

import bpy
from bpy.props import BoolProperty

from ..core.errors import AnimateMeError
from ..core.fit.fit_report import refusal_problem
from ..core.frames import face_model_to_blender
from ..core.pipeline import Cancelled, Result
from . import overlay, preferences, refusals
from .mesh_data import article, check_object, fit_options, linked_problem, mesh_arrays
from ..core.rig.arkit import ARKIT_NAMES
from .rig_keys import apply_rig, clash_message, clear_rig, foreign_keys, read_rig_record
from .shape_keys import clear_animation, generated_keys, read_record, write_animation
# The job machinery lives in worker.py; its names stay importable from here for scripts and tests.
from .preferences import pipeline_for_preferences  # noqa: F401
from .worker import GenerationJob, ModalWorker, WorkerJob, generation_running, live_regenerate  # noqa: F401

last_run: dict = {}   # timings of the latest generation, for the status report and the benchmark
FORCED_PROPERTY = "animateme_fit_forced"    # on the object: its keys come from a refused fit used anyway


def selection_problem(context) -> str | None:
    """Why there is no one mesh to animate (cheap: poll() calls it on every redraw)."""
    if context.mode != "OBJECT":
        return "switch to Object Mode first (Tab): AnimateMe reads the saved mesh"
    selected = list(context.selected_objects)
    if len(selected) > 1:
        return f"{len(selected)} objects are selected: select only the neutral face mesh"
    if not selected:
        return "nothing is selected: select the neutral face mesh, then Generate Expression"
    obj = selected[0]
    if obj.type != "MESH":
        return f"'{obj.name}' is {article(obj.type.lower())}, not a mesh: select a face mesh"
    return None


def target_object(context) -> bpy.types.Object:
    """The one mesh to animate, or an AnimateMeError saying what to fix."""
    problem = selection_problem(context)
    if problem:
        raise AnimateMeError(problem)
    obj = context.selected_objects[0]
    linked = linked_problem(obj)
    if linked:
        raise AnimateMeError(linked)
    check_object(obj)
    return obj


def apply_result(context, obj: bpy.types.Object, result: Result, settings, rig=None) -> str:
    """Main thread: write the keys (object-local Z-up), set the frame range, record a forced fit.
    Returns what was written, in words."""
    scene = context.scene
    range_before = (scene.frame_start, scene.frame_end)
    clip_range = (int(settings.start_frame), int(settings.start_frame) + result.request.frames - 1)
    if rig is not None:
        shapes, performance, fit_key = rig
        wrote, action = apply_rig(obj, shapes, performance, fit_key, result.progression, result.request.label,
                                  int(settings.start_frame),
                                  frame_range=(range_before, clip_range) if settings.set_frame_range else None)
        written = f"ARKit rig ({'52 new keys' if wrote else 'keys reused'}), Action '{action}'"
    else:
        names = write_animation(obj, face_model_to_blender(result.displacements), result.progression,
                                result.request.label, int(settings.start_frame), settings=result.request.to_dict(),
                                frame_range=(range_before, clip_range) if settings.set_frame_range else None)
        written = f"{len(names)} shape keys '{result.request.label}'"
    if settings.set_frame_range:
        scene.frame_start, scene.frame_end = clip_range
    settings.device_used = "GPU (CUDA)" if "CUDA" in result.device else "CPU"
    record_forced(obj, result)
    overlay.remove_fit_preview(obj.name)       # the preview's job is done once the keys exist
    refusals.forget(obj.name)
    return written


def record_forced(obj: bpy.types.Object, result: Result) -> None:
    if result.forced and result.fit is not None:
        obj[FORCED_PROPERTY] = f"refused fit used anyway: {refusal_problem(result.fit.score)}"
    elif FORCED_PROPERTY in obj:
        del obj[FORCED_PROPERTY]


class ANIMATEME_OT_generate(ModalWorker, bpy.types.Operator):
    """Animate the selected neutral face: one shape key per frame, keyframed to play back"""

    bl_idname = "animateme.generate"
    bl_label = "Generate Expression"
    bl_options = {"REGISTER", "UNDO"}

    live: BoolProperty(name="Live", default=False, options={"HIDDEN", "SKIP_SAVE"},
                       description="Fast mode from the cached fit only (the interpolation slider)")
    force: BoolProperty(name="Use Anyway", default=False, options={"HIDDEN", "SKIP_SAVE"},
                        description="Use the fit even though it was refused")

    @classmethod
    def poll(cls, context):
        problem = selection_problem(context)
        if problem is None and generation_running():
            problem = "a generation is running: wait for it, or press Esc to cancel it"
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def _prepare(self, context):
        settings = context.scene.animateme
        obj = target_object(context)
        request = settings.to_request(quality="fast" if self.live else None)
        vertices, faces = mesh_arrays(obj)
        options = fit_options(obj, settings.face_region, force=self.force)
        if settings.output == "RIG":
            clash = foreign_keys(obj, ARKIT_NAMES)
            if clash:                   # before the slow work: nothing of the user's is overwritten
                raise AnimateMeError(clash_message(obj, clash))
        pipeline = pipeline_for_preferences()
        if self.live and not pipeline.is_registered(vertices, faces, options):
            raise AnimateMeError("no cached fit for this mesh yet: press Generate Expression once first")
        return settings, obj, request, vertices, faces, options, pipeline

    def execute(self, context):
        obj_name = context.active_object.name if context.active_object else ""
        try:
            settings, obj, request, vertices, faces, options, pipeline = self._prepare(context)
            obj_name = obj.name
            job = GenerationJob(pipeline, vertices, faces, request, settings.device.lower(), options,
                                settings.output.lower())
            job.run()  # synchronously, in this thread
            if job.error is not None:
                raise job.error
            return self._finish(context, obj, job, settings)
        except Cancelled:
            self.report({"WARNING"}, "AnimateMe: cancelled, nothing was changed")
            return {"CANCELLED"}
        except AnimateMeError as error:
            self.report({"ERROR"}, refusals.remember(obj_name, error))
            return {"CANCELLED"}

    def invoke(self, context, event):
        try:
            settings, obj, request, vertices, faces, options, pipeline = self._prepare(context)
        except AnimateMeError as error:
            self.report({"ERROR"}, refusals.remember(getattr(context.active_object, "name", ""), error))
            return {"CANCELLED"}
        return self.start_worker(context, obj.name,
                                 GenerationJob(pipeline, vertices, faces, request, settings.device.lower(), options,
                                               settings.output.lower()))

    def worker_done(self, context, job):
        obj = bpy.data.objects.get(self._object_name)
        if obj is None or obj.type != "MESH" or len(obj.data.vertices) != len(job.vertices):
            self.report({"ERROR"}, "AnimateMe: the face mesh changed while generating: nothing was written, "
                                   "generate again")
            return {"CANCELLED"}
        if context.mode != "OBJECT":
            self.report({"ERROR"}, "AnimateMe: left Object Mode while generating: nothing was written, "
                                   "generate again")
            return {"CANCELLED"}
        try:
            return self._finish(context, obj, job, context.scene.animateme)
        except AnimateMeError as error:
            self.report({"ERROR"}, refusals.remember(obj.name, error))
            return {"CANCELLED"}

    def _finish(self, context, obj, job, settings):
        result: Result = job.result
        started = time.perf_counter()
        written = apply_result(context, obj, result, settings, job.rig)
        write_s = time.perf_counter() - started
        last_run.clear()
        last_run.update(result.timings, write=write_s, device=result.device, fit_cached=result.fit_cached)
        cached = "cached fit" if result.fit_cached else "new fit"
        forced = ", refused fit used anyway" if result.forced else ""
        folds = f", {result.folds_left} triangles turn over: look at the mouth up close" if result.folds_left else ""
        self.report({"WARNING" if result.forced or result.folds_left else "INFO"},
                    f"AnimateMe: {written} on {obj.name} "
                    f"({settings.device_used}, {cached}{forced}{folds}, {result.timings['total'] + write_s:.1f} s)")
        return {"FINISHED"}


class ANIMATEME_OT_use_anyway(bpy.types.Operator):
    """Generate with the refused fit anyway (check the fit preview first); the object records it"""

    bl_idname = "animateme.use_anyway"
    bl_label = "Use Anyway"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or not refusals.can_use_anyway(obj.name):
            cls.poll_message_set("Only after the fit of the selected face was refused")
            return False
        return True

    def invoke(self, context, event):
        # Generate runs modal on its own; this button only starts it.
        started = bpy.ops.animateme.generate("INVOKE_DEFAULT", force=True)
        return {"FINISHED"} if started & {"RUNNING_MODAL", "FINISHED"} else {"CANCELLED"}

    def execute(self, context):
        return bpy.ops.animateme.generate("EXEC_DEFAULT", force=True)


class ANIMATEME_OT_clear(bpy.types.Operator):
    """Remove the shape keys and keyframes AnimateMe generated on the selected face (nothing else),
    and give back the frame range it changed"""

    bl_idname = "animateme.clear"
    bl_label = "Clear Generated Keys"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH" or context.mode != "OBJECT" or not (
                generated_keys(obj) or read_rig_record(obj)):
            cls.poll_message_set("Select a face with AnimateMe keys, in Object Mode")
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        frame_range = read_record(obj).get("frame_range") or read_rig_record(obj).get("frame_range")
        removed = clear_animation(obj) + clear_rig(obj)
        scene = context.scene
        if frame_range and tuple(frame_range[1]) == (scene.frame_start, scene.frame_end):
            # Only when the range is still the one AnimateMe set: the artist may have changed it since.
            scene.frame_start, scene.frame_end = frame_range[0]
        if FORCED_PROPERTY in obj:
            del obj[FORCED_PROPERTY]
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


CLASSES = (ANIMATEME_OT_generate, ANIMATEME_OT_use_anyway, ANIMATEME_OT_clear, ANIMATEME_OT_reset_settings)
