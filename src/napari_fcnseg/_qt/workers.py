"""Run a core generator off the GUI thread, with napari's progress bar, Cancel and error notices.

Every long job of the widgets (segmenting, CRF refinement, fine-tuning, export) is a core
generator that yields :class:`~napari_fcnseg.core.progress.Progress` and returns its result.
:class:`JobRunner` runs one such generator at a time in a napari ``GeneratorWorker``:

* each yielded ``Progress`` moves a ``napari.utils.progress`` bar (shown in napari's activity
  dock) and is passed to an optional callback (e.g. the loss plot);
* :meth:`JobRunner.cancel` calls ``worker.quit()``: the worker stops at the next yield, the
  generator is closed (so the core job's ``finally`` blocks run) and the result callback is
  never called, so nothing half-done reaches a layer;
* an exception becomes a napari error notification: for the plugin's own errors
  (:class:`~napari_fcnseg.errors.FcnsegError`) the message is written for the user and shown as
  it is; anything else is shown with its type and logged with its traceback.

The slots are methods of the runner, a ``QObject`` owned by its widget, so when the widget goes
away (e.g. the viewer is closed) Qt drops the connections and a late signal from the worker
thread touches nothing that was deleted. napari's ``create_worker`` also registers the job with
the viewer, whose close quits it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject, Signal
from qtpy.QtWidgets import QWidget
from superqt.utils import GeneratorWorker

from ..core.progress import Progress
from ..errors import FcnsegError

log = logging.getLogger(__name__)

T = TypeVar("T")


class JobFailedError(Exception):
    """A job raised ``RuntimeError`` (e.g. from torch).

    superqt's worker treats a ``RuntimeError`` as "the worker was deleted" and drops it without
    emitting ``errored`` or ``finished``; re-raising it as this type keeps it visible.
    """


def _guarded(job: Generator[Any, None, T]) -> Generator[Any, None, T]:
    try:
        result = yield from job
    except RuntimeError as exc:
        raise JobFailedError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        job.close()
    return result


def describe_error(exc: BaseException, what: str) -> str:
    """Return the notification text for an exception raised by the job ``what``."""
    if isinstance(exc, FcnsegError):
        return str(exc)
    cause = exc.__cause__ if isinstance(exc, JobFailedError) and exc.__cause__ else exc
    return f"{what} failed: {type(cause).__name__}: {cause}"


class JobRunner(QObject):
    """Runs one core generator at a time for a widget.

    Parameters
    ----------
    what
        Name of the job for the progress bar and messages, e.g. ``"Segment"``.
    parent
        The widget that owns the runner.

    Signals
    -------
    running(bool)
        Emitted with ``True`` when a job starts and ``False`` when it has ended (in any way).
    """

    running = Signal(bool)

    def __init__(self, what: str, parent: QObject | None = None):
        super().__init__(parent)
        self.what = what
        #: The running job's worker (``None`` when no job runs).
        self.worker: GeneratorWorker | None = None
        self._job: Generator[Any, None, Any] | None = None
        self._pbar: progress | None = None
        self._on_result: Callable[[Any], None] | None = None
        self._on_event: Callable[[Progress], None] | None = None
        self.cancelled = False
        self._window: QWidget | None = None

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until the job has finished, failed or been cancelled."""
        return self._job is not None

    def start(
        self,
        job: Generator[Any, None, T],
        on_result: Callable[[T], None],
        on_event: Callable[[Progress], None] | None = None,
    ) -> GeneratorWorker:
        """Run ``job`` in a worker thread; call ``on_result`` with its result in the GUI thread.

        Raises
        ------
        RuntimeError
            When a job is already running (the widgets disable their buttons meanwhile).
        """
        if self.is_running:
            raise RuntimeError(f"{self.what} is already running")
        self._job = _guarded(job)
        self._on_result, self._on_event = on_result, on_event
        self.cancelled = False
        guarded = self._job

        def work() -> Generator[Any, None, T]:
            return (yield from guarded)

        # The plain superqt worker class: napari's would also relay errors to its own handler,
        # which shows tracebacks; _on_errored shows a message written for the user instead.
        worker = create_worker(work, _worker_class=GeneratorWorker, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        # A plain function, not this object's slot: Qt drops the slots of a deleted QObject,
        # and when the viewer closes during a job the widget and this runner are deleted
        # before the worker finishes. The clean-up must still run, or the worker (and through
        # it the viewer's window) stays referenced.
        worker.finished.connect(lambda: self._on_finished())
        self.worker = worker
        self._watch_window()
        self._pbar = progress(total=0, desc=self.what)
        self.running.emit(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the job to stop at its next progress step; its result is discarded."""
        if self.worker is not None and self.is_running:
            self.cancelled = True
            self.worker.quit()

    def _watch_window(self) -> None:
        # napari quits workers it knows of when its window closes; watching the window that
        # holds the widget also covers a viewer that was not the "current" one.
        parent = self.parent()
        self._window = parent.window() if isinstance(parent, QWidget) else None
        if self._window is not None:
            self._window.installEventFilter(self)

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        """Cancel the job when the window holding the widget closes."""
        if event is not None and event.type() == QEvent.Type.Close:
            self.cancel()
        return False

    # -------------------------------------------------------------- slots (GUI thread)
    def _on_yielded(self, event: object) -> None:
        if not isinstance(event, Progress):
            return
        pbar = self._pbar  # updating the bar may process events, _on_finished included
        if pbar is not None:
            if event.total and pbar.total != event.total:
                pbar.total = event.total
            if event.message:
                pbar.set_description(f"{self.what}: {event.message}")
            pbar.update(max(0, event.step - pbar.n))
        if self._on_event is not None:
            self._on_event(event)

    def _on_returned(self, result: object) -> None:
        if self.cancelled or self._on_result is None:
            return
        try:
            self._on_result(result)
        except Exception as exc:
            self._on_errored(exc)

    def _on_errored(self, exc: BaseException) -> None:
        if not isinstance(exc, FcnsegError):
            log.error("%s failed", self.what, exc_info=exc)
        show_error(describe_error(exc, self.what))

    def _on_finished(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.close()  # after a cancel the generator is suspended: close it now
        # The worker's napari signal connections hold the viewer's window, and the callbacks
        # the job's layers: let them go.
        self.worker = None
        self._on_result = self._on_event = None
        window, self._window = self._window, None
        pbar, self._pbar = self._pbar, None
        try:
            if window is not None:
                window.removeEventFilter(self)
            self.running.emit(False)
        except RuntimeError:
            # The viewer was closed during the job and Qt has deleted the widget (and this
            # runner's C++ half); there is nothing left to update.
            log.debug("%s finished after its widget was deleted", self.what)
        if pbar is not None:
            pbar.close()  # last: closing the bar may process events
