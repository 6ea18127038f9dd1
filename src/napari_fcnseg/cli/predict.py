"""``fcnseg predict``: segment images and write label TIFFs or OME-Zarr, here or on a cluster."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ._options import (
    add_axes_option,
    add_command,
    add_fill_holes_option,
    add_inputs,
    add_model_options,
    expand_inputs,
    load_model,
    positive_int,
)

if TYPE_CHECKING:
    import numpy as np

    from ..core.progress import Progress
    from ..model.checkpoint import SegmentationModel

log = logging.getLogger("napari_fcnseg")

EXAMPLES = (
    "fcnseg predict scan.tif stack.tif --out labels/    # labels/scan_labels.tif, ...",
    "fcnseg predict stack.ome.zarr --out stack_labels.ome.zarr --crf --device cuda",
    "fcnseg predict scans/ --out labels/ --format ome-zarr --scheduler local --workers 4",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg predict`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "predict",
        summary="segment images and write label TIFFs or OME-Zarr",
        description=[
            "Segment images slice by slice. Memory depends on the slice size and the tile, not "
            "on the number of slices; zarr inputs and large TIFFs are read lazily. Outputs "
            "appear under their final name only when complete, and an existing output is "
            "never replaced without --overwrite.",
        ],
        examples=EXAMPLES,
    )
    add_inputs(parser)
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="folder for <input stem>_labels.tif (or _labels.ome.zarr with "
        "--format ome-zarr); or NAME.ome.zarr for a single input",
    )
    parser.add_argument(
        "--format",
        choices=("tiff", "ome-zarr"),
        default=None,
        help="output format; default: ome-zarr when --out ends in .zarr, else tiff",
    )
    add_model_options(parser, auto_tile=True)
    add_axes_option(parser)
    parser.add_argument(
        "--crf",
        action="store_true",
        help="refine with the dense CRF (CRF-as-RNN) before writing labels",
    )
    parser.add_argument(
        "--crf-iterations",
        type=positive_int,
        default=5,
        metavar="N",
        help="mean-field iterations of the CRF",
    )
    add_fill_holes_option(parser)
    parser.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write <stem>_uncertainty.tif beside each labels file: float32, the "
        "normalised entropy of the class probabilities per pixel (0 sure, 1 undecided)",
    )
    parser.add_argument(
        "--instances",
        action="store_true",
        help="also write <stem>_instances.tif: uint16, one label per object (egg chamber), "
        "touching objects split along the gap between them",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="with --instances, also write <stem>_objects.csv: one row per object (area, "
        "centroid, axes, orientation, eccentricity, touches the border, mean intensity)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786), a "
        "scheduler file (.json), or 'local' for worker processes on this machine; "
        "default: run in this process",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes of --scheduler local; default: cores / 2",
    )
    parser.add_argument(
        "--worker-threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch threads per worker; default: cores / workers for "
        "--scheduler local, the worker's own setting otherwise",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg predict``; return the exit status."""
    from ..io.atomic import check_writable

    inputs = expand_inputs(args.inputs)
    outputs = _output_paths(inputs, args.out, args.format)
    if args.table and not args.instances:
        raise InputError("--table measures the objects of --instances: add --instances")
    for flag in ("uncertainty", "instances"):
        if getattr(args, flag) and args.scheduler:
            raise InputError(
                f"--{flag} is written by a single process only: run without --scheduler, "
                f"or drop --{flag}"
            )
    for out in outputs:
        check_writable(out, args.overwrite)
        for wanted, extra in _extras(args, out):
            if wanted:
                check_writable(extra, args.overwrite)
    if args.scheduler:
        return _predict_on_cluster(args, inputs, outputs)
    model = load_model(args)
    for path, out in zip(inputs, outputs):
        _predict_one(args, model, path, out)
    return 0


def _output_paths(inputs: Sequence[Path], out: Path, fmt: str | None) -> list[Path]:
    """Where each input's labels go (see ``fcnseg predict --help``)."""
    from ..io.lazy import image_stem, is_zarr_path
    from ..io.ome_zarr import is_ome_zarr_name

    if is_ome_zarr_name(out):
        if fmt == "tiff":
            raise InputError(
                f"--out {out} ends in .zarr but --format tiff was given; give a "
                "folder for TIFF outputs"
            )
        if len(inputs) != 1:
            raise InputError(
                f"--out {out} names one OME-Zarr but {len(inputs)} inputs were given; give a "
                "folder with --format ome-zarr to write <stem>_labels.ome.zarr for each input"
            )
        return [out]
    if out.is_file():
        raise InputError(f"--out {out} is a file; give a folder (or NAME.ome.zarr)")
    suffix = "_labels.ome.zarr" if fmt == "ome-zarr" else "_labels.tif"
    stems = [image_stem(p) if is_zarr_path(p) else p.stem for p in inputs]
    outputs = [out / f"{stem}{suffix}" for stem in stems]
    if len(set(outputs)) != len(outputs):
        raise InputError("two inputs share a file name stem; their outputs would collide")
    return outputs


def beside(labels: Path, suffix: str) -> Path:
    """``DIR/<stem><suffix>`` beside ``DIR/<stem>_labels.tif`` (or ``.ome.zarr``)."""
    name = labels.name
    for ending in ("_labels.ome.zarr", "_labels.tif", ".ome.zarr"):
        if name.endswith(ending):
            return labels.with_name(name[: -len(ending)] + suffix)
    return labels.with_name(labels.stem + suffix)


def uncertainty_path(labels: Path) -> Path:
    """``DIR/<stem>_uncertainty.tif`` beside the labels."""
    return beside(labels, "_uncertainty.tif")


def _extras(args: argparse.Namespace, out: Path) -> list[tuple[bool, Path]]:
    return [
        (args.uncertainty, uncertainty_path(out)),
        (args.instances, beside(out, "_instances.tif")),
        (args.table, beside(out, "_objects.csv")),
    ]


def _predict_one(args: argparse.Namespace, model: SegmentationModel, path: Path, out: Path) -> None:
    """Segment one input; errors about it name it."""
    try:
        _predict_file(args, model, path, out)
    except InputError as exc:
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from None


def _predict_file(
    args: argparse.Namespace, model: SegmentationModel, path: Path, out: Path
) -> None:
    import numpy as np
    from tqdm import tqdm

    from ..core.device import resolve_device
    from ..core.instances import split_instances
    from ..core.memory import NetworkSize, choose_tile
    from ..core.predict import prepare_image
    from ..core.slices import SliceLabels, label_slices
    from ..io.labels import labels_dtype, write_label_pages
    from ..io.lazy import open_image
    from ..io.ome_zarr import is_ome_zarr_name, write_ome_zarr_labels
    from ..io.pages import page_writer

    image = open_image(path, axes=args.axes, channels=model.info.in_channels)
    prepared = prepare_image(image.data, model.info.in_channels, image.layout.axes, str(path))
    depth, height, width = prepared.stack.shape[:3]
    device = resolve_device(args.device)
    plan = choose_tile(
        NetworkSize.of(model),
        (height, width),
        tile=args.tile,
        batch=args.batch,
        input_itemsize=np.dtype(image.data.dtype).itemsize,
        crf=args.crf,
        device=device.type,
    )
    log.info("%s: %d slice(s) of %dx%d px; %s", path.name, depth, height, width, plan.describe())
    dtype = labels_dtype(model.info.num_classes)
    with contextlib.ExitStack() as outputs:
        bar = outputs.enter_context(
            tqdm(total=0, desc=path.name, unit="tile", file=sys.stderr, leave=True)
        )
        write_unsure = (
            outputs.enter_context(
                page_writer(
                    uncertainty_path(out),
                    shape=prepared.spatial_shape,
                    overwrite=args.overwrite,
                    spacing=image.spacing,
                    unit=image.unit,
                )
            )
            if args.uncertainty
            else None
        )
        write_objects = (
            outputs.enter_context(
                page_writer(
                    beside(out, "_instances.tif"),
                    shape=prepared.spatial_shape,
                    dtype=np.uint16,
                    overwrite=args.overwrite,
                    spacing=image.spacing,
                    unit=image.unit,
                )
            )
            if args.instances
            else None
        )
        rows: list[dict[str, object]] = []
        offset = 0

        def pages() -> Iterator[np.ndarray]:
            for event in label_slices(
                model,
                image.data,
                axes=image.layout.axes,
                tile=plan.tile,
                batch=plan.batch,
                device=device,
                crf=args.crf,
                crf_iterations=args.crf_iterations,
                uncertainty=write_unsure is not None,
                fill_holes=args.fill_holes,
            ):
                if isinstance(event, SliceLabels):
                    if write_unsure is not None and event.uncertainty is not None:
                        write_unsure(event.uncertainty)
                    if write_objects is not None:
                        nonlocal offset
                        objects = split_instances(event.labels > 0)
                        if args.table:
                            rows.extend(
                                _object_rows(
                                    objects,
                                    prepared.stack[event.index],
                                    image.spacing,
                                    offset,
                                    event.index if depth > 1 else None,
                                )
                            )
                        write_objects(np.where(objects > 0, objects + offset, 0))
                        offset += int(objects.max())
                    yield event.labels
                else:
                    bar.total = event.total
                    bar.n = event.step
                    bar.refresh()

        if is_ome_zarr_name(out):
            write_ome_zarr_labels(
                out,
                pages(),
                shape=prepared.spatial_shape,
                dtype=dtype,
                class_names=model.info.class_names,
                spacing=image.spacing,
                overwrite=args.overwrite,
            )
        else:
            write_label_pages(
                out,
                pages(),
                shape=prepared.spatial_shape,
                dtype=dtype,
                overwrite=args.overwrite,
                class_names=model.info.class_names,
                spacing=image.spacing,
                unit=image.unit,
            )
        if args.table:
            _write_table(beside(out, "_objects.csv"), rows, overwrite=args.overwrite)
    log.info("wrote %s", out)
    for wanted, extra in _extras(args, out):
        if wanted:
            log.info("wrote %s", extra)


def _object_rows(
    objects: np.ndarray,
    pixels: np.ndarray,
    spacing: tuple[float, ...] | None,
    offset: int,
    z: int | None,
) -> list[dict[str, object]]:
    """Return the table rows of one slice's objects (labels as in the instances file)."""
    from ..core.instances import object_table

    scale = tuple(spacing[-2:]) if spacing else None
    table = object_table(objects, pixels, scale=scale, unit="unit")
    names = list(table)
    rows = []
    for i in range(len(table["label"])):
        row: dict[str, object] = {name: table[name][i] for name in names}
        row["label"] = int(row["label"]) + offset  # type: ignore[call-overload]
        if z is not None:
            row = {"label": row["label"], "z": z, **{k: v for k, v in row.items() if k != "label"}}
        rows.append(row)
    return rows


def _write_table(path: Path, rows: list[dict[str, object]], *, overwrite: bool) -> None:
    """Write the objects' rows as CSV, atomically."""
    import csv

    from ..io.atomic import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp, tmp.open("w", newline="") as handle:
        columns = list(rows[0]) if rows else ["label", "area_px", "area"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _predict_on_cluster(args: argparse.Namespace, inputs: list[Path], outputs: list[Path]) -> int:
    import os

    from tqdm import tqdm

    from ..core.cluster import PredictSettings, open_client, predict_files
    from ..core.progress import run_to_completion
    from ..model.checkpoint import read_model_info
    from ..model.default import resolve_model_path
    from ..model.package import is_bioimageio_package, is_our_package

    model_path = resolve_model_path(args.model).resolve()
    if is_bioimageio_package(model_path) and not is_our_package(model_path):
        raise InputError(
            f"{model_path} is another tool's bioimage.io package: it runs in one process only; "
            "run without --scheduler"
        )
    read_model_info(model_path)  # a bad model file is reported before any worker starts
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: no such file; check the path")
    threads = args.worker_threads
    if threads is None and args.scheduler == "local":
        workers = args.workers or max(1, (os.cpu_count() or 2) // 2)
        threads = max(1, (os.cpu_count() or 1) // workers)
    settings = PredictSettings(
        model_path=str(model_path),
        axes=args.axes,
        tile=args.tile,
        batch=args.batch,
        device=args.device,
        crf=args.crf,
        crf_iterations=args.crf_iterations,
        fill_holes=args.fill_holes,
        torch_threads=threads,
    )
    for handler in logging.getLogger().handlers:  # Dask's INFO lines would drown the progress
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or r.name.startswith(log.name))
    with open_client(args.scheduler, workers=args.workers) as client:
        log.info("running on %d Dask worker(s) at %s", len(client.nthreads()), args.scheduler)
        with tqdm(total=0, desc=f"{len(inputs)} file(s)", unit="slice", file=sys.stderr) as bar:

            def update(event: Progress) -> None:
                bar.total = event.total
                bar.n = event.step
                bar.refresh()

            written = run_to_completion(
                predict_files(
                    client,
                    [p.resolve() for p in inputs],
                    [o.resolve() for o in outputs],
                    settings,
                    overwrite=args.overwrite,
                ),
                update,
            )
    log.info("wrote %d output(s) in %s", len(written), args.out)
    return 0


def _cell(value: object) -> object:
    """Return a CSV cell: floats with 6 significant digits."""
    import numpy as np

    return f"{value:.6g}" if isinstance(value, float | np.floating) else value
