"""Fit on its own: the fitted template drawn over the face, the score and what it means.

The fit goes into the pipeline's cache, so Generate Expression on the same, unchanged mesh (and
the same landmarks and region) does not fit again. A refused fit is still shown, so the artist can
look before choosing Use Anyway, placing landmarks or a face region.
"""

# No `from __future__ import annotations` here: bpy reads property annotations as objects.

import bpy

from ..core.errors import AnimateMeError
from ..core.fit.fit_report import accepted, refusal, score_lines, verdict
from . import overlay, refusals
from .mesh_data import fit_options, mesh_arrays
from .operators import selection_problem, target_object
from .preferences import pipeline_for_preferences
from .worker import ModalWorker, WorkerJob, generation_running

fit_reports: dict[str, dict] = {}     # object name -> what the panel shows about its last fit


class FitJob(WorkerJob):
    def __init__(self, pipeline, vertices, faces, options):
        self.vertices = vertices
        # Fitted with force: a refused fit is shown too; Generate still judges it.
        super().__init__(lambda progress, cancel: pipeline.register(
            vertices, faces, progress=progress, cancel=cancel, options=options)[0].fit)


def show(obj, fit, options) -> dict:
    """Draw the fit over `obj` and keep what the panel says about it."""
    overlay.show_fit_preview(obj, fit)
    report = {"accepted": accepted(fit.score), "verdict": verdict(fit.score),
              "lines": score_lines(fit.score), "landmarks": len(options.landmarks),
              "region": options.region is not None}
    fit_reports[obj.name] = report
    if report["accepted"]:
        refusals.forget(obj.name)
    else:
        refusals.remember(obj.name, refusal(fit.score, landmarks_given=bool(options.landmarks)))
    return report


class ANIMATEME_OT_fit(ModalWorker, bpy.types.Operator):
    """Fit the template to the selected face and show it over the mesh, with its score"""

    bl_idname = "animateme.fit"
    bl_label = "Fit"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        problem = selection_problem(context) or (generation_running() and "a generation or fit is running")
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def _prepare(self, context):
        obj = target_object(context)
        vertices, faces = mesh_arrays(obj)
        options = fit_options(obj, context.scene.animateme.face_region, force=True)
        return obj, options, FitJob(pipeline_for_preferences(), vertices, faces, options)

    def execute(self, context):
        try:
            obj, options, job = self._prepare(context)
            job.run()
            if job.error is not None:
                raise job.error
        except AnimateMeError as error:
            self.report({"ERROR"}, refusals.remember(getattr(context.active_object, "name", ""), error))
            return {"CANCELLED"}
        return self._finish(obj, job.result, options)

    def invoke(self, context, event):
        try:
            obj, options, job = self._prepare(context)
        except AnimateMeError as error:
            self.report({"ERROR"}, refusals.remember(getattr(context.active_object, "name", ""), error))
            return {"CANCELLED"}
        self._options = options
        return self.start_worker(context, obj.name, job)

    def worker_done(self, context, job):
        obj = bpy.data.objects.get(self._object_name)
        if obj is None or obj.type != "MESH" or len(obj.data.vertices) != len(job.vertices):
            self.report({"ERROR"}, "AnimateMe: the face mesh changed while fitting: fit again")
            return {"CANCELLED"}
        return self._finish(obj, job.result, self._options)

    def _finish(self, obj, fit, options):
        report = show(obj, fit, options)
        if report["accepted"]:
            self.report({"INFO"}, f"AnimateMe: {report['verdict']}")
        else:
            self.report({"WARNING"}, refusals.last_refusal[obj.name]["message"])
        return {"FINISHED"}


class ANIMATEME_OT_hide_fit_preview(bpy.types.Operator):
    """Remove the fit preview from the viewport (it is never saved with the file)"""

    bl_idname = "animateme.hide_fit_preview"
    bl_label = "Hide Fit Preview"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if overlay.fit_preview(getattr(context.active_object, "name", "")) is None:
            cls.poll_message_set("No fit preview is shown for the selected face")
            return False
        return True

    def execute(self, context):
        overlay.remove_fit_preview(context.active_object.name)
        return {"FINISHED"}


def draw(layout, context) -> None:
    """The Fit box: region, Fit / Hide, the last fit's verdict and score lines, a refusal with
    Use Anyway."""
    settings = context.scene.animateme
    obj = context.active_object
    box = layout.box()
    box.label(text="Fit", icon="MOD_MESHDEFORM")
    if obj is not None and obj.type == "MESH":
        box.prop_search(settings, "face_region", obj, "vertex_groups", text="Face Region")
    row = box.row(align=True)
    row.operator("animateme.fit", icon="VIEWZOOM")
    row.operator("animateme.hide_fit_preview", text="", icon="HIDE_ON")
    name = getattr(obj, "name", "")
    report = fit_reports.get(name)
    if report:
        col = box.column(align=True)
        col.label(text=report["verdict"], icon="CHECKMARK" if report["accepted"] else "ERROR")
        for ok, words in report["lines"]:
            col.label(text=words, icon="DOT" if ok else "CANCEL")
    refused = refusals.last_refusal.get(name)
    if refused:
        col = box.column(align=True)
        col.alert = True
        for part in refused["message"].replace("AnimateMe: ", "").split("; or "):
            col.label(text=part)
        if refusals.can_use_anyway(name):
            box.operator("animateme.use_anyway", icon="ERROR")
    if obj is not None and "animateme_fit_forced" in obj:
        box.label(text="Keys made from a refused fit (used anyway)", icon="ERROR")


CLASSES = (ANIMATEME_OT_fit, ANIMATEME_OT_hide_fit_preview)
