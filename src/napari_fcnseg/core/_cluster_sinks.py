"""Where a cluster run's labels go: OME-Zarr written by the workers, TIFF by the client."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass


from ._cluster_plan import FilePlan

log = logging.getLogger(__name__)


class Sink:
    """Where the labels of one file go."""

    store: str | None = None

    def put(self, z: int, labels: np.ndarray | None) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def open_sink(
    path: Path, plan: FilePlan, dtype: np.dtype, class_names: list[str], overwrite: bool
) -> Sink:
    from ..io.ome_zarr import is_ome_zarr_name

    if is_ome_zarr_name(path):
        return ZarrSink(path, plan, dtype, class_names, overwrite)
    return TiffSink(path, plan, dtype, class_names, overwrite)


class ZarrSink(Sink):
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


class Abort(Exception):
    """Stops a TIFF being written (its temporary file is removed)."""


class TiffSink(Sink):
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
                if isinstance(item, Abort):
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
        if self.error is not None and not isinstance(self.error, Abort):
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
                self._send(Abort())
            self.thread.join()
