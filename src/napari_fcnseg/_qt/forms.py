"""Pieces the forms share: their Run/Cancel buttons, layer pickers and file choosers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, PushButton, Widget

from .workers import JobRunner

if TYPE_CHECKING:
    import napari

#: Events of ``viewer.layers`` after which the layer pickers are refreshed.
LAYER_LIST_EVENTS = ("inserted", "removed", "reordered")


def button_row(*buttons: Widget) -> Container:
    """Return the buttons side by side in a row without margins."""
    row = Container(layout="horizontal", widgets=list(buttons), labels=False)
    row.margins = (0, 0, 0, 0)
    return row


def run_buttons(text: str) -> tuple[PushButton, PushButton, Container]:
    """Return a run button labelled ``text``, a (disabled) Cancel button and their row."""
    run = PushButton(text=text)
    cancel = PushButton(text="Cancel", enabled=False)
    return run, cancel, button_row(run, cancel)


def connect_runner(
    runner: JobRunner, run_button: PushButton, cancel_button: PushButton, run: Callable[[], None]
) -> None:
    """Start jobs with ``run_button`` and cancel them with ``cancel_button``.

    While a job runs, the run button is disabled and the Cancel button enabled.
    """

    def set_running(running: bool) -> None:
        run_button.enabled = not running
        cancel_button.enabled = running

    runner.running.connect(set_running)
    run_button.changed.connect(run)
    cancel_button.changed.connect(runner.cancel)


def watch_layer_list(viewer: napari.Viewer, callback: Callable[[Any], None]) -> None:
    """Call ``callback`` whenever a layer is added to, removed from or moved in the viewer."""
    for event in LAYER_LIST_EVENTS:
        getattr(viewer.layers.events, event).connect(callback)


def watch_edits(layers: Iterable[Any], callback: Callable[[Any], None]) -> None:
    """Call ``callback(event)`` whenever a person paints on, fills or replaces a Labels layer.

    ``event.source`` is the layer. Connecting a layer twice has no effect (napari's event
    emitters keep one connection per callback).
    """
    for layer in layers:
        for event in (layer.events.labels_update, layer.events.paint, layer.events.data):
            event.connect(callback)


def refresh_layer_combos(*combos: ComboBox) -> None:
    """Reread the combos' layer choices; an empty combo then picks the top layer of the list."""
    for combo in combos:
        combo.reset_choices()
    for combo in combos:
        if combo.value is None and combo.choices:
            combo.value = combo.choices[-1]  # the top layer of the list


def chosen_path(edit: FileEdit) -> Path | None:
    """Return the file or folder chosen in ``edit``, or ``None`` when nothing is chosen."""
    value = edit.value
    if not isinstance(value, Path) or str(value) in ("", "."):
        return None
    return value
