"""The workers' side of a cluster run: per-process model and image caches, and the tasks.

Each worker process loads the model once (keyed by file, date and device) and keeps the last
opened images, so a task costs one slice read and one slice of inference.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .predict import prepare_image

if TYPE_CHECKING:
    pass


from ._cluster_plan import FilePlan, PredictSettings
from .slices import SliceLabels, label_slices

log = logging.getLogger(__name__)

_CACHE_LOCK = threading.Lock()
_MODELS: dict[tuple[str, int, str], Any] = {}
_IMAGES: OrderedDict[tuple[str, int, str | None], Any] = OrderedDict()
_IMAGES_KEPT = 2
#: Models loaded by this process (tests check that each worker loads a model once).
LOADS: list[str] = []


def _worker_model(settings: PredictSettings) -> Any:
    from ..model.checkpoint import load_model

    path = Path(settings.model_path)
    key = (str(path.resolve()), path.stat().st_mtime_ns, settings.device)
    with _CACHE_LOCK:
        model = _MODELS.get(key)
        if model is None:
            if settings.torch_threads:
                import torch

                torch.set_num_threads(settings.torch_threads)
            model = load_model(path)
            _MODELS.clear()  # one model per worker at a time
            _MODELS[key] = model
            LOADS.append(str(path))
        return model


def _worker_image(path: str, settings: PredictSettings, channels: int) -> Any:
    from ..io.lazy import open_image

    key = (path, Path(path).stat().st_mtime_ns, settings.axes)
    with _CACHE_LOCK:
        image = _IMAGES.pop(key, None)
        if image is None:
            image = open_image(path, axes=settings.axes, channels=channels)
        _IMAGES[key] = image
        while len(_IMAGES) > _IMAGES_KEPT:
            _IMAGES.popitem(last=False)
        return image


def plan_file(path: str, settings: PredictSettings) -> FilePlan:
    import dask

    from .memory import NetworkSize, choose_tile
    from .normalize import normalization_bounds

    model = _worker_model(settings)
    with dask.config.set(scheduler="synchronous"):
        image = _worker_image(path, settings, model.info.in_channels)
        prepared = prepare_image(image.data, model.info.in_channels, image.layout.axes, path)
        bounds = normalization_bounds(prepared.stack, model.info.normalization)
    depth, height, width = prepared.stack.shape[:3]
    tile = settings.tile
    if tile is None:
        tile = choose_tile(
            NetworkSize.of(model),
            (height, width),
            tile=None,
            batch=settings.batch,
            overlap=settings.overlap,
            input_itemsize=np.dtype(image.data.dtype).itemsize,
            crf=settings.crf,
            device=settings.device,
        ).tile
    return FilePlan(prepared.spatial_shape, depth, bounds, tile, image.spacing)


def label_slice_task(
    path: str,
    z: int,
    bounds: tuple[np.ndarray, np.ndarray],
    settings: PredictSettings,
    store: str | None,
) -> np.ndarray | None:
    import dask

    assert settings.tile is not None
    model = _worker_model(settings)
    with dask.config.set(scheduler="synchronous"):
        image = _worker_image(path, settings, model.info.in_channels)
        job = label_slices(
            model,
            image.data,
            axes=image.layout.axes,
            tile=settings.tile,
            overlap=settings.overlap,
            batch=settings.batch,
            device=settings.device,
            crf=settings.crf,
            crf_iterations=settings.crf_iterations,
            fill_holes=settings.fill_holes,
            bounds=bounds,
            slices=[z],
        )
        labels = next(e.labels for e in job if isinstance(e, SliceLabels))
    if store is None:
        return labels
    from ..io.ome_zarr import write_labels_slice

    write_labels_slice(store, z, labels)
    return None
