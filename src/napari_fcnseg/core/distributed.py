"""Batch prediction of many files, slice by slice, on this process or a Dask cluster.

:func:`label_slices` is the per-slice job (tiles -> probabilities -> optional CRF -> labels) that
``fcnseg predict`` runs in its own process. :func:`predict_files` spreads the same job over a
Dask distributed cluster: every slice of every file is one task, so a folder of stacks keeps all
workers busy, and one large stack is shared between them too.

* Each worker process loads the model once (a per-process cache keyed by file and date) and keeps
  the last opened images, so a task costs one slice read and one slice of inference.
* Normalisation bounds are computed once per file (by a worker, where the data is) and passed to
  every slice task, so the labels are the same as those of a run on one machine.
* OME-Zarr outputs are written by the workers, chunk by chunk, into a hidden temporary store
  that the client renames into place when every slice is written; TIFF outputs are streamed
  back slice by slice, in order, and written by the client. At most ``window`` tasks are in
  flight, which bounds the memory they hold.

Inputs, outputs and the model file must be on storage that every worker can read (and, for
OME-Zarr, write): a shared file system on a cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .predict import DEFAULT_BATCH, DEFAULT_OVERLAP, SlicePrediction, predict_slices, prepare_image
from .progress import Progress

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictSettings:
    """How every slice is predicted (sent to the workers with each task).

    Attributes
    ----------
    model_path
        The model file (on storage the workers can read).
    axes
        Axes of the inputs when their files do not say.
    tile
        Largest tile side; ``None`` picks the largest that fits each worker's free memory.
    overlap, batch, device
        As for :func:`~.predict.predict_slices`.
    crf, crf_iterations
        Refine every slice with the dense CRF, with this many mean-field iterations.
    torch_threads
        Intra-op threads of torch on each worker (``None``: leave the worker's setting).
    """

    model_path: str
    axes: str | None = None
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    batch: int = DEFAULT_BATCH
    device: str = "cpu"
    crf: bool = False
    crf_iterations: int = 5
    torch_threads: int | None = None


@dataclass
class SliceLabels:
    """Labels of one Z slice, shaped (Y, X), and its uncertainty when asked for."""

    index: int
    labels: np.ndarray
    #: Normalised entropy of the probabilities the labels come from (float32, (Y, X)).
    uncertainty: np.ndarray | None = None


@dataclass(frozen=True)
class FilePlan:
    """What the client needs to know about one input before its slices are spread out."""

    spatial_shape: tuple[int, ...]
    depth: int
    bounds: tuple[np.ndarray, np.ndarray]
    tile: int
    spacing: tuple[float, ...] | None


# ------------------------------------------------------------------------------ one process
def label_slices(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    crf: bool = False,
    crf_iterations: int = 5,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    slices: Sequence[int] | None = None,
    uncertainty: bool = False,
) -> Generator[Progress | SliceLabels, None, None]:
    """Predict, optionally refine with the CRF, and label a stack one slice at a time.

    Yields :class:`Progress` and a :class:`SliceLabels` per slice, in order. The image may be a
    numpy, dask or zarr-backed dask array: only one slice is read and held at a time. The CRF
    runs per slice (2D), on that slice's pixels. With ``uncertainty`` each slice also carries
    the normalised entropy of its (refined) probabilities
    (:func:`~.uncertainty.entropy_uncertainty`). See :func:`~.predict.predict_slices` for the
    other parameters.
    """
    from ..io.labels import labels_dtype
    from .crf import refine_with_crf
    from .uncertainty import entropy_uncertainty

    dtype = labels_dtype(model.info.num_classes)
    prepared = prepare_image(image, model.info.in_channels, axes) if crf else None
    for event in predict_slices(
        model,
        image,
        axes=axes,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        bounds=bounds,
        slices=slices,
    ):
        if isinstance(event, SlicePrediction):
            probs = event.probabilities
            if prepared is not None:
                pixels = np.asarray(prepared.stack[event.index])
                probs = refine_with_crf(pixels, probs, iterations=crf_iterations, device=device)
            unsure = entropy_uncertainty(probs) if uncertainty else None
            yield SliceLabels(event.index, probs.argmax(axis=0).astype(dtype), unsure)
        else:
            yield event


# ------------------------------------------------------------------------------ the cluster
@contextlib.contextmanager
def open_client(scheduler: str, *, workers: int | None = None) -> Iterator[Any]:
    """Connect to a Dask scheduler, or start a local cluster of worker processes.

    Parameters
    ----------
    scheduler
        ``"local"`` for a :class:`distributed.LocalCluster` on this machine, else the address
        of a running scheduler (``tcp://host:8786``) or a scheduler file (``*.json``).
    workers
        Worker processes of a local cluster (default: one per two cores, at least one).

    Raises
    ------
    InputError
        If the ``distributed`` package is missing or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "--scheduler needs Dask distributed: pip install 'napari-fcnseg[cluster]'"
        ) from None
    cluster = None
    try:
        if scheduler == "local":
            count = workers or max(1, (os.cpu_count() or 2) // 2)
            cluster = LocalCluster(
                n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster, set_as_default=False)
        elif scheduler.endswith(".json"):
            client = Client(scheduler_file=scheduler, set_as_default=False, timeout="30s")
        else:
            client = Client(scheduler, set_as_default=False, timeout="30s")
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise InputError(
            f"cannot reach the Dask scheduler {scheduler!r} ({exc}); check the address and "
            "that the scheduler is running"
        ) from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def predict_files(
    client: Any,
    inputs: Sequence[str | os.PathLike[str]],
    outputs: Sequence[str | os.PathLike[str]],
    settings: PredictSettings,
    *,
    overwrite: bool = False,
    window: int | None = None,
) -> Generator[Progress, None, list[Path]]:
    """Segment files on a Dask cluster, every slice a task; return the written outputs.

    A generator: yields :class:`Progress` (slices done / all slices) and returns the output
    paths. Outputs ending in ``.zarr`` are written as OME-Zarr labels by the workers, others as
    TIFF by the client. Closing the generator cancels the tasks in flight and leaves no output.

    Parameters
    ----------
    client
        A :class:`distributed.Client` (see :func:`open_client`).
    inputs, outputs
        One output path per input.
    settings
        How to predict; the model file must be readable by every worker.
    overwrite
        Replace existing outputs.
    window
        Most slice tasks in flight at once (default: 4 per worker thread, at least 8).
    """
    from ..io.atomic import check_writable
    from ..io.labels import labels_dtype
    from ..model.checkpoint import read_model_info

    if len(inputs) != len(outputs):
        raise InputError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    outs = [check_writable(out, overwrite) for out in outputs]
    info = read_model_info(settings.model_path)
    dtype = labels_dtype(info.num_classes)
    yield Progress(0, 0, f"planning {len(inputs)} file(s)")
    plan_futures = [client.submit(_plan_file, str(p), settings, pure=False) for p in inputs]
    plans: list[FilePlan] = client.gather(plan_futures)
    total = sum(plan.depth for plan in plans)
    if window is None:
        threads = sum(client.nthreads().values()) or 1
        window = max(8, 4 * threads)
    sinks: dict[int, _Sink] = {}  # open outputs: only those with slices in flight

    def submit(i: int, z: int) -> Any:
        if i not in sinks:
            sinks[i] = _open_sink(outs[i], plans[i], dtype, info.class_names, overwrite)
        return client.submit(
            _label_slice_task,
            str(inputs[i]),
            z,
            plans[i].bounds,
            replace(settings, tile=plans[i].tile),
            sinks[i].store,
            pure=False,
        )

    tasks = iter([(i, z) for i, plan in enumerate(plans) for z in range(plan.depth)])
    pending: deque[tuple[int, int, Any]] = deque()
    done = 0
    try:
        while True:
            for i, z in itertools.islice(tasks, window - len(pending)):
                pending.append((i, z, submit(i, z)))
            if not pending:
                break
            i, z, future = pending.popleft()
            sinks[i].put(z, future.result())
            del future
            if z == plans[i].depth - 1:
                sinks.pop(i).commit()
                log.info("wrote %s", outs[i])
            done += 1
            yield Progress(done, total, f"{Path(inputs[i]).name}: slice {z + 1}/{plans[i].depth}")
    finally:
        for _, _, future in pending:
            future.cancel()
        for sink in sinks.values():
            sink.abort()
    return outs


# ------------------------------------------------------------------------------ worker side
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


def _plan_file(path: str, settings: PredictSettings) -> FilePlan:
    import dask

    from .memory import NetworkSize, choose_tile
    from .normalize import percentile_bounds

    model = _worker_model(settings)
    with dask.config.set(scheduler="synchronous"):
        image = _worker_image(path, settings, model.info.in_channels)
        prepared = prepare_image(image.data, model.info.in_channels, image.layout.axes, path)
        bounds = percentile_bounds(prepared.stack, model.info.normalization)
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


def _label_slice_task(
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
            bounds=bounds,
            slices=[z],
        )
        labels = next(e.labels for e in job if isinstance(e, SliceLabels))
    if store is None:
        return labels
    from ..io.ome_zarr import write_labels_slice

    write_labels_slice(store, z, labels)
    return None


# ------------------------------------------------------------------------------ client sinks
class _Sink:
    """Where the labels of one file go."""

    store: str | None = None

    def put(self, z: int, labels: np.ndarray | None) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def _open_sink(
    path: Path, plan: FilePlan, dtype: np.dtype, class_names: list[str], overwrite: bool
) -> _Sink:
    from ..io.ome_zarr import is_ome_zarr_name

    if is_ome_zarr_name(path):
        return _ZarrSink(path, plan, dtype, class_names, overwrite)
    return _TiffSink(path, plan, dtype, class_names, overwrite)


class _ZarrSink(_Sink):
    """The workers write the slices; the client renames the store when all are in."""

    def __init__(
        self, path: Path, plan: FilePlan, dtype: np.dtype, names: list[str], overwrite: bool
    ) -> None:
        from ..io.ome_zarr import OmeZarrLabelsWriter

        self.writer = OmeZarrLabelsWriter(
            path,
            plan.spatial_shape,
            dtype,
            class_names=names,
            spacing=plan.spacing,
            overwrite=overwrite,
        )
        self.store = str(self.writer.tmp_path)

    def put(self, z: int, labels: np.ndarray | None) -> None:
        return None  # already written by the worker

    def commit(self) -> None:
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()


_END = object()


class _Abort(Exception):
    """Stops a TIFF being written (its temporary file is removed)."""


class _TiffSink(_Sink):
    """Pages arrive in order and are streamed into a TIFF by a writer thread."""

    def __init__(
        self, path: Path, plan: FilePlan, dtype: np.dtype, names: list[str], overwrite: bool
    ) -> None:
        from ..io.labels import write_label_pages

        self.pages: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

        def pages() -> Iterator[np.ndarray]:
            while True:
                item = self.pages.get()
                if item is _END:
                    return
                if isinstance(item, _Abort):
                    raise item
                yield item

        def run() -> None:
            try:
                write_label_pages(
                    path,
                    pages(),
                    shape=plan.spatial_shape,
                    dtype=dtype,
                    overwrite=overwrite,
                    class_names=names,
                )
            except BaseException as exc:  # handed to the client thread in commit()/put()
                self.error = exc

        self.thread = threading.Thread(target=run, name=f"write {path.name}", daemon=True)
        self.thread.start()

    def _send(self, item: Any) -> None:
        while self.thread.is_alive():
            try:
                self.pages.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        self._raise()

    def _raise(self) -> None:
        if self.error is not None and not isinstance(self.error, _Abort):
            raise self.error

    def put(self, z: int, labels: np.ndarray | None) -> None:
        assert labels is not None
        self._send(labels)

    def commit(self) -> None:
        self._send(_END)
        self.thread.join()
        self._raise()

    def abort(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(BaseException):
                self._send(_Abort())
            self.thread.join()
