"""The job machinery the operators share: work on a thread, polled from a modal timer.

- `WorkerJob`: `work(progress, cancel)` on a worker thread, with its progress, outcome and cancel
  flag; `GenerationJob` runs one generation (and the rig's weights) in it.
- `ModalWorker`: the modal half of an operator whose work runs in a WorkerJob (the timer, the status
  bar, Esc, Blender's own cancel).
- The running-jobs registry: one job per object; `generation_running()` for the operators' poll and
  the slider's debounce, `cancel_all()` for unregister.
- `live_regenerate()`: what the interpolation slider's debounce timer calls.

Kept apart from the operators (as Blender's extension manager keeps its utilities apart from its
operators): properties, fit_preview and operators import it, and it imports none of them.
"""

# No `from __future__ import annotations` here, as in the operator modules.

import threading

import bpy

from ..core.pipeline import Cancelled
from . import refusals
from .shape_keys import generated_keys

_running: dict[str, "WorkerJob"] = {}


class WorkerJob:
    """`work(progress, cancel)` on a worker thread; the main thread polls `done` and reads the outcome."""

    def __init__(self, work):
        self.work = work
        self.fraction, self.message = 0.0, "starting"
        self.result = None
        self.error: Exception | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self.run, name="AnimateMe worker", daemon=True)

    def start(self) -> "WorkerJob":
        self._thread.start()
        return self

    def run(self) -> None:
        try:
            self.result = self.work(self._progress, self._cancel.is_set)
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


class GenerationJob(WorkerJob):
    """Pipeline.generate on a worker thread; for the ARKit rig output, the rig and its weights too."""

    def __init__(self, pipeline, vertices, faces, request, device: str, options=None, output: str = "frames"):
        from ..core.fit.fit_options import FitOptions

        self.pipeline, self.vertices, self.faces = pipeline, vertices, faces
        self.request, self.device, self.options = request, device, options or FitOptions()
        self.output, self.rig = output, None
        super().__init__(self._generate)

    def _generate(self, progress, cancel):
        result = self.pipeline.generate(self.vertices, self.faces, self.request, self.device, progress=progress,
                                        cancel=cancel, options=self.options, output=self.output)
        if self.output == "rig":
            from ..core.rig.build import rig_for_result

            progress(0.97, "solving the ARKit rig's weights")
            rig, performance = rig_for_result(self.pipeline, self.vertices, self.faces, result, self.options)
            self.rig = (rig, performance, self.pipeline.mesh_key(self.vertices, self.faces, self.options))
        return result


def generation_running() -> bool:
    return any(not job.done for job in _running.values())


def cancel_all() -> None:
    """Ask every running job to stop (unregister: no worker outlives the add-on)."""
    for job in list(_running.values()):
        job.cancel()


class ModalWorker:
    """The modal half of an operator whose work runs in a WorkerJob: a timer polls the worker,
    the status bar shows its progress, Esc asks it to stop and the modal keeps polling until it
    has; Blender's cancel() (file load, closed window) stops it too. Subclasses give worker_done."""

    def start_worker(self, context, object_name: str, job: WorkerJob):
        self._object_name = object_name
        self._cancelling = False
        self._job = job.start()
        _running[object_name] = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        self._status(context, "AnimateMe: starting (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC" and not self._cancelling:
            job.cancel()              # the worker checks between steps; keep polling until it stops
            self._cancelling = True
            self._status(context, "AnimateMe: cancelling...")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not job.done:
            if not self._cancelling:
                context.window_manager.progress_update(int(100 * job.fraction))
                self._status(context, f"AnimateMe: {job.message} ({100 * job.fraction:.0f}%) - Esc to cancel")
            return {"RUNNING_MODAL"}
        self._cleanup(context)
        if job.cancelled:
            self.report({"WARNING"}, "AnimateMe: cancelled, nothing was changed")
            return {"CANCELLED"}
        if job.error is not None:
            self.report({"ERROR"}, refusals.remember(self._object_name, job.error))
            return {"CANCELLED"}
        return self.worker_done(context, job)

    def cancel(self, context):
        job = getattr(self, "_job", None)
        if job is not None:
            job.cancel()
        self._cleanup(context)

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
        if _running.get(getattr(self, "_object_name", None)) is getattr(self, "_job", None):
            _running.pop(self._object_name, None)


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
