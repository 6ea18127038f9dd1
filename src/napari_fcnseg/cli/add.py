"""``fcnseg add``: add an annotated image (or a stack's annotated slices) to an annotated set."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import InputError
from ._options import add_command

log = logging.getLogger("napari_fcnseg")

EXAMPLES = (
    "fcnseg add --set eggs --image a.tif --labels a_labels.tif --class-names background,egg",
    "fcnseg add --set eggs --image b.png --labels b_labels.png --split val",
    "fcnseg add --set eggs --image stack.tif --labels stack_labels.tif --corrected edits.tif",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg add`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "add",
        summary="add an annotated image to a set (created if missing)",
        description=[
            "Add an image and its labels to the annotated set DIR, which is created when "
            "missing. A stack adds each slice that has annotated pixels as its own item. "
            "fcnseg train --data DIR trains on the set.",
        ],
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--set",
        required=True,
        type=Path,
        metavar="DIR",
        dest="set_dir",
        help="folder of the annotated set (created when missing)",
    )
    parser.add_argument(
        "--image",
        required=True,
        type=Path,
        metavar="IMG",
        help="TIFF, PNG or JPEG image (2D; a stack adds its annotated slices)",
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="LBL",
        help="TIFF or PNG labels: 0 background, 1..K classes, 255 not annotated",
    )
    parser.add_argument(
        "--corrected",
        type=Path,
        metavar="MASK",
        help="mask of the pixels a person edited or confirmed (non-zero = yes); default: no mask",
    )
    parser.add_argument("--name", help="item name; default: the image's file name stem")
    parser.add_argument(
        "--class-names",
        metavar="A,B,...",
        help="class names of a new set, background first; default: background, class 1, ... "
        "up to the largest label",
    )
    parser.add_argument(
        "--split",
        choices=("train", "val"),
        help="force the split; default: automatic, about 20%% val",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg add``; return the exit status."""
    import numpy as np

    from ..io.axes import to_zyxc
    from ..io.images import read_image
    from ..io.labels import read_labels
    from ..training.dataset import MANIFEST, AnnotatedSet, safe_item_name
    from ..training.samples import samples_from_stack, squeeze_channel

    image = read_image(args.image)
    labels = np.asarray(read_labels(args.labels))
    corrected = None if args.corrected is None else np.asarray(read_labels(args.corrected)) > 0
    stack = to_zyxc(np.asarray(image.data), image.layout)
    labels_zyx = labels[None] if labels.ndim == 2 else labels
    if labels_zyx.shape != stack.shape[:3]:
        raise InputError(
            f"{args.labels} is shaped {labels.shape} but {args.image} has spatial "
            f"shape {image.layout.spatial_shape(tuple(image.data.shape))}; they "
            "must match"
        )
    if corrected is not None and corrected.shape != labels.shape:
        raise InputError(
            f"{args.corrected} is shaped {corrected.shape} but the labels are "
            f"shaped {labels.shape}; they must match"
        )
    if args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
        annotated = AnnotatedSet.create(args.set_dir, names)  # opens it when it exists
    elif (args.set_dir / MANIFEST).is_file():
        annotated = AnnotatedSet.open(args.set_dir)
    else:
        top = int(labels[labels != 255].max(initial=1))
        names = ["background"] + [f"class {k}" for k in range(1, top + 1)]
        annotated = AnnotatedSet.create(args.set_dir, names)
    base = args.name or safe_item_name(args.image.stem)
    mask = None if corrected is None else corrected.reshape(labels_zyx.shape)
    # (item name, (Y, X, C) image, labels, corrected mask, slice index)
    items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, int | None]]
    if not image.layout.is_stack:
        items = [(base, stack[0], labels_zyx[0], None if mask is None else mask[0], None)]
    else:
        items = [
            (
                f"{base}_z{int(s.name.split()[-1]):04d}",
                s.image,
                s.labels,
                s.corrected,
                int(s.name.split()[-1]),
            )
            for s in samples_from_stack(stack, labels_zyx, mask)
        ]
        if not items:
            raise InputError(f"{args.labels} has no annotated pixel (all 255); nothing to add")
    for name, img, lbl, item_mask, z in items:
        annotated.add_item(
            squeeze_channel(img),
            lbl,
            item_mask,
            name=name,
            source=str(args.image.resolve()),
            slice_index=z,
            split=args.split,
        )
        log.info("added %s", name)
    today = len(annotated.added_on())
    count = len(annotated)
    print(f"{count} image{'s' if count != 1 else ''} in {args.set_dir}, {today} added today")
    return 0
