"""What to annotate next: rank slices (and regions in them) by where the model is likely wrong.

The premise is that a correction teaches the model most where its labels are most wrong (how
far that held on real slices is in the benchmark named below), so each slice is scored by an
estimate of its error that needs no annotation, from the model's own prediction:

* ``entropy``: the mean normalised entropy of the class probabilities over the predicted
  objects and a band of :data:`BAND` px around them (the background far from any object,
  where the model is sure and almost always right, would only dilute it);
* ``crf``: how much the dense CRF changes the labels, as 1 - IoU between the U-Net's labels
  and the CRF-refined ones (:func:`~.crf.refine_with_crf`, default settings);
* ``flips``: how much the labels change when the image is flipped (test-time augmentation:
  the flips of :data:`FLIPS`, each predicted and flipped back), as 1 - IoU against the
  unflipped labels, averaged over the flips;
* ``combined``: the mean of ``crf`` and ``flips`` (both 1 - IoU, so on one scale).

Every measure looks at the labels a user sees: made as the model's file says
(:func:`~.predict.model_labels`; holes filled for the bundled egg models).

Which one ranks by default (:data:`DEFAULT_MEASURE`) was chosen by
``benchmarks/bench_suggest.py`` (``benchmarks/README.md``, "What to annotate next"). Every
score is a ratio of pixel counts (disagreeing pixels over the pixels of either mask, or summed
entropy over the pixels near objects), whose denominator is at least :data:`MIN_AREA` of the
slice or region, so that a slice with a sliver of foreground does not top the list on a few
pixels. With ``region=N`` each slice is also cut into N x N px squares scored the same way, and
the slice's squares are listed worst first: where in the slice to start correcting.

:func:`rank_for_annotation` is a generator like the other long jobs: it yields
:class:`~.progress.Progress`, holds one slice (and its probabilities) at a time, stops at the
next yield when closed, and returns the ranked :class:`Suggestion` list.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import ndimage as ndi

from ..errors import InputError
from ..io.images import ImageData
from ..model.checkpoint import SegmentationModel
from .choices import DEFAULT_SUGGEST_MEASURE, SUGGEST_MEASURES
from .crf import refine_with_crf
from .normalize import normalization_bounds
from .predict import (
    DEFAULT_BATCH,
    DEFAULT_TILE,
    PreparedImage,
    SlicePrediction,
    model_labels,
    predict_slices,
    prepare_image,
)
from .progress import Progress
from .uncertainty import entropy_uncertainty

__all__ = [
    "BAND",
    "DEFAULT_MEASURE",
    "FLIPS",
    "MEASURES",
    "Region",
    "Suggestion",
    "rank_for_annotation",
]

MEASURES = SUGGEST_MEASURES
#: The measure slices are ranked by unless told otherwise (chosen by measurement: see
#: :data:`~.choices.DEFAULT_SUGGEST_MEASURE`).
DEFAULT_MEASURE = DEFAULT_SUGGEST_MEASURE
#: Width (px) of the band around the predicted objects where ``entropy`` is averaged too.
BAND = 8
#: Axes (of a (Y, X) slice) flipped for ``flips``: left-right, up-down and both.
FLIPS: tuple[tuple[int, ...], ...] = ((1,), (0,), (0, 1))
#: Smallest denominator of a score, as a share of the slice's (or region's) pixels.
MIN_AREA = 0.01
#: The measures ``combined`` averages.
COMBINED = ("crf", "flips")

T = TypeVar("T")

#: An input: an array (YX, YXC, ZYX, ZYXC), an :class:`~..io.images.ImageData` (its axes are
#: used), or a function without arguments returning either (called when its turn comes, so a
#: folder of scans is read one file at a time).
ImageInput = Any


@dataclass(frozen=True)
class Region:
    """A square of a slice and its scores.

    Attributes
    ----------
    bbox
        ``(y0, x0, y1, x1)`` in pixels of the slice (``y1`` and ``x1`` exclusive).
    score
        The ranking measure's value in this square.
    scores
        Every measure computed, by name.
    """

    bbox: tuple[int, int, int, int]
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Suggestion:
    """A slice worth correcting, with its score (higher: more likely wrong).

    Attributes
    ----------
    image
        Index of the input it belongs to (0 for a single image or stack).
    source
        Name of that input (a file, a layer, or ``image N``).
    z
        The slice of a stack, ``None`` for a 2D image.
    score
        The ranking measure's value for the whole slice.
    measure
        Name of the ranking measure.
    scores
        Every measure computed for the slice, by name (the ranking one included).
    regions
        With ``region=N``: the slice's squares, worst first.
    """

    image: int
    source: str
    z: int | None
    score: float
    measure: str
    scores: dict[str, float] = field(default_factory=dict)
    regions: tuple[Region, ...] = ()

    @property
    def region(self) -> Region | None:
        """The square of the slice most worth correcting (``None`` without ``region``)."""
        return self.regions[0] if self.regions else None

    def describe(self) -> str:
        """One line for people, e.g. ``stack.tif slice 3: flips 0.142``."""
        where = self.source if self.z is None else f"{self.source} slice {self.z}"
        return f"{where}: {self.measure} {self.score:.3f}"

    def as_dict(self) -> dict[str, Any]:
        """Return the suggestion as JSON-ready values (``region``: the worst square, or None)."""
        best = self.region
        return {
            "input": self.source,
            "image": self.image,
            "slice": self.z,
            "score": self.score,
            "measure": self.measure,
            "scores": dict(self.scores),
            "region": None if best is None else {"bbox": list(best.bbox), "score": best.score},
        }


def rank_for_annotation(
    model: SegmentationModel,
    images: ImageInput | Sequence[ImageInput],
    *,
    measure: str = DEFAULT_MEASURE,
    also: Sequence[str] = (),
    region: int | None = None,
    exclude: Collection[int | tuple[int, int]] = (),
    names: Sequence[str] | None = None,
    axes: str | Sequence[str | None] | None = None,
    top: int | None = None,
    tile: int = DEFAULT_TILE,
    batch: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    crf_iterations: int = 5,
) -> Generator[Progress, None, list[Suggestion]]:
    """Rank the slices of ``images`` by ``measure``, most likely wrong first.

    The inputs are checked at once (an :class:`InputError` says what to change); the returned
    generator does the work, yields :class:`Progress` and returns the ranked suggestions.

    Parameters
    ----------
    model
        The model whose errors a correction would fix (the one the next fine-tune starts from).
    images
        One image or stack, or a list of them (a list is ranked as one: slices of all its
        inputs compete). Each is an array, an ``ImageData`` or a function returning one.
    measure
        One of :data:`MEASURES` (module docstring).
    also
        Further measures to compute and report in ``Suggestion.scores`` (e.g. to compare).
    region
        Side (px) of the squares each slice is also scored in; ``None``: slices only.
    exclude
        Slices not to rank, e.g. those already corrected. For one image or stack: slice
        indices. For a list: input indices (all their slices) or ``(input, slice)`` pairs.
    names
        Names of the inputs for the results and error messages.
    axes
        Axes of array inputs when they cannot be inferred (as in :func:`~.predict.predict_slices`):
        one string for all, or one per input.
    top
        Return only the ``top`` best suggestions (``None``: all).
    tile, batch, device
        Inference settings, as in :func:`~.predict.predict_slices`.
    crf_iterations
        Mean-field steps of the CRF for ``crf`` and ``combined``.
    """
    several = isinstance(images, list | tuple)
    items = list(images) if several else [images]
    if not items:
        raise InputError("nothing to rank: give at least one image or stack")
    wanted = _check_measures(measure, also)
    if region is not None and region < 16:
        raise InputError(f"region={region}: give a square side of at least 16 px, or None")
    if top is not None and top < 1:
        raise InputError(f"top={top}: give at least 1, or None for every slice")
    if crf_iterations < 1:
        raise InputError(f"crf_iterations={crf_iterations}: give at least 1")
    if names is not None and len(names) != len(items):
        raise InputError(f"{len(names)} names for {len(items)} inputs; give one name per input")
    labels: list[str | None] = list(names) if names is not None else [None] * len(items)
    skip = _excluded(exclude, several, len(items))
    layouts = [axes] * len(items) if axes is None or isinstance(axes, str) else list(axes)
    if len(layouts) != len(items):
        raise InputError(f"{len(layouts)} axes for {len(items)} inputs; give one per input")
    for i, item in enumerate(items):  # arrays are checked now; files when they are opened
        if not callable(item):
            _prepare(model, item, layouts[i], _name(item, i, several, labels[i]))
    settings = _Settings(measure, wanted, region, tile, batch, device, crf_iterations)
    return _rank(model, items, labels, several, skip, layouts, settings, top)


@dataclass(frozen=True)
class _Settings:
    measure: str
    measures: tuple[str, ...]
    region: int | None
    tile: int
    batch: int
    device: str | torch.device
    crf_iterations: int


def _rank(
    model: SegmentationModel,
    items: list[ImageInput],
    names: list[str | None],
    several: bool,
    skip: dict[int, set[int] | None],
    layouts: list[str | None],
    settings: _Settings,
    top: int | None,
) -> Generator[Progress, None, list[Suggestion]]:
    found: list[Suggestion] = []
    done = 0
    for i, item in enumerate(items):
        if i in skip and skip[i] is None:
            continue
        yield Progress(done, 0, f"{names[i] or f'input {i + 1}'}: reading")
        opened = item() if callable(item) else item
        source = _name(opened, i, several, names[i])
        prepared = _prepare(model, opened, layouts[i], source)
        depth = prepared.stack.shape[0]
        order = [z for z in range(depth) if z not in (skip.get(i) or set())]
        # Estimated total: this input's slices, and as many again for each input still to come.
        later = sum(1 for j in range(i + 1, len(items)) if skip.get(j, set()) is not None)
        total = done + len(order) * (1 + later)
        job = _score_slices(model, prepared, order, source, settings, done, total)
        for z, scores, regions in (yield from job):
            found.append(
                Suggestion(
                    image=i,
                    source=source,
                    z=z if prepared.layout.is_stack else None,
                    score=scores[settings.measure],
                    measure=settings.measure,
                    scores=scores,
                    regions=regions,
                )
            )
        done += len(order)
    found.sort(key=lambda s: (-s.score, s.image, s.z or 0))
    yield Progress(done, done, f"ranked {len(found)} slice(s)")
    return found if top is None else found[:top]


def _score_slices(
    model: SegmentationModel,
    prepared: PreparedImage,
    order: list[int],
    source: str,
    settings: _Settings,
    done: int,
    total: int,
) -> Generator[Progress, None, list[tuple[int, dict[str, float], tuple[Region, ...]]]]:
    """Score the slices ``order`` of one input, one at a time."""
    out: list[tuple[int, dict[str, float], tuple[Region, ...]]] = []
    if not order:
        return out
    bounds = normalization_bounds(prepared.stack, model.info.normalization)
    slices = _predict(model, prepared.stack, "ZYXC", bounds, settings, order, source)
    for event in slices:
        if not isinstance(event, SlicePrediction):
            yield Progress(done + len(out), total, f"{source}: {event.message}")
            continue
        z = event.index
        where = f"{source} slice {z}" if prepared.layout.is_stack else source
        maps = yield from _as_step(
            _measure_maps(
                model, np.asarray(prepared.stack[z]), event.probabilities, bounds, settings
            ),
            Progress(done + len(out), total, where),
        )
        height, width = event.probabilities.shape[1:]
        scores = _scores(maps, settings.measures, (0, 0, height, width))
        out.append((z, scores, _regions(maps, settings, (height, width))))
        yield Progress(done + len(out), total, f"scored {where}")
    return out


def _measure_maps(
    model: SegmentationModel,
    pixels: np.ndarray,
    probs: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    settings: _Settings,
) -> Generator[Progress, None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Numerator and denominator maps of each measure on one slice ((Y, X, C) ``pixels``)."""
    maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labels = model_labels(model.info, probs)  # what the user sees (holes filled if the file says)
    if "entropy" in settings.measures:
        maps["entropy"] = _entropy_map(probs, labels)
    if "crf" in settings.measures:
        refined = refine_with_crf(
            pixels, probs, iterations=settings.crf_iterations, device=settings.device
        )
        maps["crf"] = _disagreement(labels, [model_labels(model.info, refined)])
    if "flips" in settings.measures:
        flipped = []
        for axes in FLIPS:
            again = yield from _predict_one(model, np.flip(pixels, axes), bounds, settings)
            flipped.append(np.flip(model_labels(model.info, again), axes))
        maps["flips"] = _disagreement(labels, flipped)
    return maps


def _as_step(job: Generator[Progress, None, T], step: Progress) -> Generator[Progress, None, T]:
    """Run ``job``, reporting each of its events as ``step`` with the event's message added."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        yield Progress(step.step, step.total, f"{step.message}: {event.message}")


def _predict(
    model: SegmentationModel,
    stack: np.ndarray,
    axes: str,
    bounds: tuple[np.ndarray, np.ndarray],
    settings: _Settings,
    slices: Sequence[int] | None = None,
    source: str = "image",
) -> Generator[Progress | SlicePrediction, None, None]:
    return predict_slices(
        model,
        stack,
        axes=axes,
        tile=settings.tile,
        batch=settings.batch,
        device=settings.device,
        bounds=bounds,
        slices=slices,
        source=source,
    )


def _predict_one(
    model: SegmentationModel,
    pixels: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    settings: _Settings,
) -> Generator[Progress, None, np.ndarray]:
    """Probabilities of one (Y, X, C) slice, normalised with its stack's bounds."""
    probs: np.ndarray | None = None
    for event in _predict(model, np.ascontiguousarray(pixels), "YXC", bounds, settings):
        if isinstance(event, SlicePrediction):
            probs = event.probabilities
        else:
            yield event
    assert probs is not None
    return probs


# ------------------------------------------------------------------------------ the measures
def _entropy_map(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entropy near the objects, pixels near the objects): numerator and denominator maps."""
    near = ndi.binary_dilation(labels > 0, iterations=BAND) if BAND else labels > 0
    unsure = np.where(near, entropy_uncertainty(probs), 0.0).astype(np.float32)
    return unsure, near.astype(np.float32)


def _disagreement(
    labels: np.ndarray, others: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels labelled differently, pixels of either foreground), averaged over ``others``."""
    differ = np.zeros(labels.shape, np.float32)
    either = np.zeros(labels.shape, np.float32)
    for other in others:
        differ += labels != other
        either += (labels > 0) | (other > 0)
    return differ / len(others), either / len(others)


def _scores(
    maps: dict[str, tuple[np.ndarray, np.ndarray]],
    measures: Sequence[str],
    box: tuple[int, int, int, int],
) -> dict[str, float]:
    y0, x0, y1, x1 = box
    floor = MIN_AREA * (y1 - y0) * (x1 - x0)
    scores = {
        name: float(num[y0:y1, x0:x1].sum() / max(float(den[y0:y1, x0:x1].sum()), floor, 1.0))
        for name, (num, den) in maps.items()
    }
    if "combined" in measures:
        scores["combined"] = float(np.mean([scores[name] for name in COMBINED]))
    return {name: scores[name] for name in measures}


def _regions(
    maps: dict[str, tuple[np.ndarray, np.ndarray]], settings: _Settings, shape: tuple[int, ...]
) -> tuple[Region, ...]:
    side = settings.region
    if side is None:
        return ()
    height, width = shape
    regions = []
    for y0 in range(0, height, side):
        for x0 in range(0, width, side):
            box = (y0, x0, min(y0 + side, height), min(x0 + side, width))
            scores = _scores(maps, settings.measures, box)
            regions.append(Region(box, scores[settings.measure], scores))
    return tuple(sorted(regions, key=lambda r: (-r.score, r.bbox)))


# ------------------------------------------------------------------------------ the inputs
def _check_measures(measure: str, also: Sequence[str]) -> tuple[str, ...]:
    for name in (measure, *also):
        if name not in MEASURES:
            raise InputError(f"unknown measure {name!r}: choose one of {', '.join(MEASURES)}")
    wanted = [measure, *(m for m in also if m != measure)]
    needed = [m for m in wanted if m != "combined"]
    if "combined" in wanted:
        needed += [m for m in COMBINED if m not in needed]
    # The order of the report: the ranking measure first, then the others in MEASURES' order.
    return tuple(dict.fromkeys([measure, *(m for m in MEASURES if m in (*needed, *wanted))]))


def _name(item: ImageInput, index: int, several: bool, given: str | None) -> str:
    """Name an input in results and messages: as given, by its file, or ``image N``."""
    if given is not None:
        return given
    if isinstance(item, ImageData):
        return str(item.path)
    return f"image {index}" if several else "image"


def _excluded(
    exclude: Collection[int | tuple[int, int]], several: bool, count: int
) -> dict[int, set[int] | None]:
    """Map input index -> excluded slices (``None``: the whole input)."""
    skip: dict[int, set[int] | None] = {}
    for entry in exclude:
        if isinstance(entry, tuple | list) and len(entry) == 2:
            i, z = (int(v) for v in entry)
        elif isinstance(entry, int | np.integer) and not several:
            i, z = 0, int(entry)
        elif isinstance(entry, int | np.integer):
            i, z = int(entry), -1
        else:
            raise InputError(
                f"exclude entry {entry!r}: give slice indices for one image or stack, or input "
                "indices and (input, slice) pairs for a list of images"
            )
        if not 0 <= i < count:
            raise InputError(f"exclude entry {entry!r} names input {i}, but there are {count}")
        if z < 0:
            skip[i] = None
        elif (slices := skip.setdefault(i, set())) is not None:
            slices.add(z)
    return skip


def _prepare(
    model: SegmentationModel, item: ImageInput, axes: str | None, source: str
) -> PreparedImage:
    if isinstance(item, ImageData):
        return prepare_image(item.data, model.info.in_channels, item.layout.axes, source)
    if not hasattr(item, "shape") and not isinstance(item, list | tuple | np.ndarray):
        raise InputError(
            f"{source}: got {type(item).__name__}; give an image or stack as an array (YX, YXC, "
            "ZYX or ZYXC), or a list of them"
        )
    shape = tuple(getattr(item, "shape", np.shape(item)))
    if len(shape) < 2 or min(shape) < 1:
        raise InputError(
            f"{source} has shape {shape}; give a 2D image (YX or YXC) or a stack (ZYX or ZYXC)"
        )
    return prepare_image(item, model.info.in_channels, axes, source)
