"""**Suggest next slice**, in the Fine-tune form: show the slice where a correction teaches most.

The panel ranks the slices of the images behind the edited labels with the core's
:func:`~napari_fcnseg.core.suggest.rank_for_annotation`, using the model the next fine-tune
round starts from (:func:`~napari_fcnseg.training.rounds.base_model`), in a worker with
progress and Cancel. It then moves the viewer to the highest-ranked slice that is not yet
corrected or checked (what the labels layers' records track), selects its labels layer for
painting and shows the score. The ranking is kept until the model changes (a fine-tune round,
another version or models folder) or an image is closed, so pressing again moves on to the
next slice not yet corrected without predicting again; after a round the next press ranks
again with the new model. Squares within a slice are not ranked here (``fcnseg suggest
--region`` does that): a whole slice is what the Fine-tune form learns from.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, Label
from napari.layers import Image, Labels
from napari.utils.notifications import show_error

from ..core.edits import changed_slices
from ..core.progress import Progress
from ..core.suggest import Suggestion, rank_for_annotation
from ..errors import FcnsegError, InputError
from ..model.checkpoint import load_model
from ..training.rounds import base_model
from .forms import button_row, connect_runner, run_buttons
from .layers import image_data, record_of
from .shared import MODELS
from .workers import JobRunner

if TYPE_CHECKING:
    import napari


def suggest_job(
    model_path: Path,
    images: Sequence[Any],
    *,
    names: Sequence[str],
    axes: Sequence[str],
    exclude: Sequence[tuple[int, int]],
    device: str,
) -> Generator[Progress, None, list[Suggestion]]:
    """Load the model and rank the slices of ``images``: the worker's job."""
    yield Progress(0, 0, "loading the model")
    model = load_model(model_path)
    job = rank_for_annotation(
        model, list(images), names=names, axes=axes, exclude=exclude, device=device
    )
    return (yield from job)


@dataclass
class _Target:
    """An image to rank and the plugin's labels layers of it."""

    image: str
    layers: list[Labels]


@dataclass
class _Ranking:
    key: tuple[str, ...]
    targets: list[_Target]
    suggestions: list[Suggestion]


class SuggestPanel(Container):
    """The **Suggest next slice** button, its Cancel button and the suggestion shown.

    Parameters
    ----------
    viewer
        The napari viewer.
    chosen
        Returns the labels layers chosen in the Fine-tune form (their images are ranked).
    device
        Returns the device chosen in the Fine-tune form.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        chosen: Callable[[], Sequence[Labels]],
        device: Callable[[], str],
    ):
        self._viewer = viewer
        self._chosen = chosen
        self._device = device
        self.suggest_button, self.cancel_button, _ = run_buttons("Suggest next slice")
        self.suggestion = Label(value="")
        self.suggestion.native.setWordWrap(True)
        self.suggestion.visible = False  # shown with the first message (no gap in the form)
        super().__init__(
            widgets=[button_row(self.suggest_button, self.cancel_button), self.suggestion],
            labels=False,
        )
        self.margins = (0, 0, 0, 0)
        self.runner = JobRunner("Suggest next slice", parent=self.native)
        connect_runner(self.runner, self.suggest_button, self.cancel_button, self.run)
        self.cancel_button.changed.connect(self._cancelled)
        #: The last ranking, until the model or the images change.
        self.ranking: _Ranking | None = None
        MODELS.changed.connect(self.invalidate)
        self.native.destroyed.connect(lambda: MODELS.changed.disconnect(self.invalidate))
        viewer.layers.events.removed.connect(self.invalidate)

    # ---------------------------------------------------------------- actions
    def run(self) -> None:
        """Show the next slice to correct, ranking first when needed (the button)."""
        try:
            targets = self._targets()
            record = record_of(targets[0].layers[0])
            path, name = base_model(record.model if record else "", MODELS.store)
        except FcnsegError as exc:
            show_error(str(exc))
            return
        key = (str(path), *(t.image for t in targets))
        if self.ranking is not None and self.ranking.key == key:
            self.show_next()
            return
        images, axes = [], []
        for target in targets:
            data, layer_axes = image_data(self._viewer.layers[target.image])
            images.append(data)
            axes.append(layer_axes)
        exclude = [(i, z) for i, t in enumerate(targets) for z in sorted(_corrected(t))]
        job = suggest_job(
            path,
            images,
            names=[t.image for t in targets],
            axes=axes,
            exclude=exclude,
            device=self._device(),
        )
        self._say(f"ranking the slices with {name} ...")
        self.runner.start(job, on_result=lambda found: self._ranked(key, targets, found))

    def invalidate(self, _event: Any = None) -> None:
        """Forget the ranking (the model or the images changed): the next press ranks again."""
        if self.ranking is not None:
            self.ranking = None
            self._say("the model or the images changed: rank again")

    def show_next(self) -> None:
        """Move the viewer to the highest-ranked slice that is not yet corrected."""
        ranking = self.ranking
        if ranking is None:
            return
        done = [_corrected(t) for t in ranking.targets]
        left = [s for s in ranking.suggestions if (s.z or 0) not in done[s.image]]
        if not left:
            self._say("every slice is corrected or checked: fine-tune on them")
            return
        best = left[0]
        target = ranking.targets[best.image]
        active = self._viewer.layers.selection.active
        layer = active if active in target.layers else target.layers[0]
        if best.z is not None:
            axis = self._viewer.dims.ndim - layer.ndim
            world = layer.data_to_world(np.array([best.z, 0, 0]))[0]
            self._viewer.dims.set_point(axis, float(world))
        self._viewer.layers.selection.active = layer
        where = best.source if best.z is None else f"{best.source} slice {best.z}"
        self._say(
            f"next: {where} ({best.measure} score {best.score:.3f}; "
            f"{len(left)} of {len(ranking.suggestions)} ranked slices left)"
        )

    # ---------------------------------------------------------------- helpers
    def _targets(self) -> list[_Target]:
        """Return the images behind the chosen labels, with every plugin labels layer of each."""
        names: list[str] = []
        for layer in self._chosen():
            record = record_of(layer)
            if record is not None and record.image_name not in names:
                names.append(record.image_name)
        if not names:
            raise InputError(
                "no labels to rank: segment an image first (its labels then appear under "
                "'edited labels')"
            )
        for name in names:
            if name not in self._viewer.layers or not isinstance(self._viewer.layers[name], Image):
                raise InputError(
                    f"the image '{name}' of the labels is no longer open; open it again under "
                    "that name"
                )
        return [
            _Target(
                name,
                [
                    layer
                    for layer in self._viewer.layers
                    if isinstance(layer, Labels)
                    and (record := record_of(layer)) is not None
                    and record.image_name == name
                ],
            )
            for name in names
        ]

    def _ranked(
        self, key: tuple[str, ...], targets: list[_Target], found: list[Suggestion]
    ) -> None:
        self.ranking = _Ranking(key, targets, found)
        self.show_next()

    def _say(self, text: str) -> None:
        self.suggestion.value = text
        self.suggestion.visible = bool(text)

    def _cancelled(self) -> None:
        self._say("ranking cancelled")


def _corrected(target: _Target) -> set[int]:
    """Slices a person changed or checked, on any of the plugin's labels layers of the image."""
    done: set[int] = set()
    for layer in target.layers:
        record = record_of(layer)
        if record is None or record.prediction.shape != layer.data.shape:
            continue
        done.update(changed_slices(record.prediction, np.asarray(layer.data)))
        done.update(record.checked)
    return done
