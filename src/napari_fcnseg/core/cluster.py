"""Batch prediction of many files, slice by slice, on this process or a Dask cluster.

:func:`~.slices.label_slices` is the per-slice job (tiles -> probabilities -> optional CRF ->
labels) that ``fcnseg predict`` runs in its own process. :func:`predict_files` spreads the same
job over a Dask distributed cluster: every slice of every file is one task, so a folder of
stacks keeps all workers busy, and one large stack is shared between them too.

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

The client lives here; the workers' side is :mod:`._cluster_worker` and the writers of the
outputs :mod:`._cluster_sinks`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .progress import Progress

if TYPE_CHECKING:
    pass


from ._cluster_plan import FilePlan, PredictSettings
from ._cluster_sinks import Sink, open_sink
from ._cluster_worker import label_slice_task, plan_file

log = logging.getLogger(__name__)


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
    plan_futures = [client.submit(plan_file, str(p), settings, pure=False) for p in inputs]
    plans: list[FilePlan] = client.gather(plan_futures)
    total = sum(plan.depth for plan in plans)
    if window is None:
        threads = sum(client.nthreads().values()) or 1
        window = max(8, 4 * threads)
    sinks: dict[int, Sink] = {}  # open outputs: only those with slices in flight

    def submit(i: int, z: int) -> Any:
        if i not in sinks:
            sinks[i] = open_sink(outs[i], plans[i], dtype, info.class_names, overwrite)
        return client.submit(
            label_slice_task,
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
