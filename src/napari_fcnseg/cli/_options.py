"""What the ``fcnseg`` commands share: argument types, option groups, help layout, progress bars.

Torch-free, like the command modules' parsers: building the parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..core.choices import DEVICE_CHOICES

if TYPE_CHECKING:
    from ..core.progress import Progress
    from ..model.checkpoint import SegmentationModel

log = logging.getLogger("napari_fcnseg")
T = TypeVar("T")
R = TypeVar("R")

#: Width of the descriptions (wrapped here, since the formatter keeps their line breaks).
WIDTH = 79


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default after its help; keep the line breaks of descriptions.

    Options without a default value (``None``: their help says in words what happens then) and
    flags (``False``) get no ``(default: ...)``.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: Sequence[str],
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    """Add the subcommand ``name``: ``summary`` in ``fcnseg --help``, then its own help page.

    ``description`` is a list of paragraphs; ``examples`` are command lines (``# comments``
    allowed) shown under "examples:".
    """
    return commands.add_parser(
        name,
        help=summary,
        description=paragraphs(*description),
        epilog=examples_text(examples),
        formatter_class=HelpFormatter,
    )


def paragraphs(*texts: str) -> str:
    """Wrap each text to :data:`WIDTH` columns, with a blank line between them."""
    return "\n\n".join(textwrap.fill(" ".join(text.split()), WIDTH) for text in texts)


def examples_text(lines: Sequence[str]) -> str:
    """Return the "examples:" block of an epilog."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def positive_int(text: str) -> int:
    """Parse a whole number of at least 1 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """Parse a number above 0 (an argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def tile_size(text: str) -> int | None:
    """Parse ``auto`` (``None``: planned from free memory) or a tile side (an argparse ``type``)."""
    return None if text.strip().lower() == "auto" else positive_int(text)


def scale_factor(text: str) -> float:
    """Parse a working scale the models accept (an argparse ``type``)."""
    from ..errors import InputError
    from ..model.scale import check_scale

    try:
        return check_scale(positive_float(text))
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_inputs(parser: argparse.ArgumentParser) -> None:
    """Add the ``INPUT...`` arguments (read with :func:`expand_inputs`)."""
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="TIFF (2D, stack, RGB, multichannel), PNG or JPEG images, zarr / "
        "OME-Zarr folders, or folders of such images",
    )


def add_axes_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--axes``."""
    parser.add_argument(
        "--axes",
        help="axes of the inputs when the file does not say, e.g. ZCYX; default: from the "
        "file's metadata, else guessed from the shape",
    )


def expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """Return the inputs, with plain folders replaced by the images (and zarr stores) inside."""
    from ..errors import InputError
    from ..io.images import IMAGE_SUFFIXES
    from ..io.lazy import is_zarr_path

    inputs: list[Path] = []
    for path in paths:
        if path.is_dir() and not is_zarr_path(path):
            found = sorted(
                p
                for p in path.iterdir()
                if not p.name.startswith(".")
                and (p.suffix.lower() in IMAGE_SUFFIXES or is_zarr_path(p))
            )
            if not found:
                raise InputError(f"{path} is a folder without TIFF, PNG, JPEG or zarr images")
            inputs.extend(found)
        else:
            inputs.append(path)
    return inputs


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICE_CHOICES,
        help="where to compute; auto: a CUDA GPU, else Apple's MPS, else the CPU",
    )


def add_fill_holes_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """Add ``--fill-holes`` / ``--no-fill-holes`` (default ``None``: as the model says)."""
    parser.add_argument(
        "--fill-holes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=help
        or "fill the holes of the foreground (background enclosed by an object); default: "
        "as the model's file says (the bundled egg models fill them: egg chambers are solid)",
    )


def add_model_options(parser: argparse.ArgumentParser, *, auto_tile: bool = False) -> None:
    """Add ``--model``, ``--device``, ``--tile`` and ``--batch``.

    With ``auto_tile``, ``--tile`` also takes ``auto`` (its default): the memory plan picks it.
    """
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH|NAME",
        help="model file (.safetensors), a bioimage.io package (.zip), or the name of a "
        "bundled model (fcnseg models); default: egg-chambers",
    )
    parser.add_argument(
        "--trust-model-code",
        action="store_true",
        help="run a bioimage.io package whose weights run its own code (TorchScript, PyTorch "
        "state dict): only for packages from a source you trust (docs/trust.md)",
    )
    add_device_option(parser)
    if auto_tile:
        parser.add_argument(
            "--tile",
            type=tile_size,
            default=None,
            metavar="N|auto",
            help="largest tile side in pixels; default: auto, the largest up to 1024 that "
            "fits in free memory. A tile that does not fit is made smaller, with a warning",
        )
    else:
        parser.add_argument(
            "--tile",
            type=positive_int,
            default=1024,
            metavar="N",
            help="largest tile side in pixels",
        )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=4,
        metavar="N",
        help="tiles per forward pass",
    )


def load_model(args: argparse.Namespace) -> SegmentationModel:
    """Load ``--model`` (the bundled model when it is not given)."""
    from ..model.checkpoint import load_model
    from ..model.default import resolve_model_path

    return load_model(
        resolve_model_path(args.model), trust_model_code=getattr(args, "trust_model_code", False)
    )


def given(value: T | None, default: T) -> T:
    """``value``, or ``default`` when the option was not given."""
    return default if value is None else value


def run_with_bar(job: Generator[Progress, None, R], desc: str = "train") -> R:
    """Run a training generator to the end with a tqdm bar (steps, loss, val IoU) on stderr."""
    from tqdm import tqdm

    from ..core.progress import run_to_completion

    with tqdm(total=0, desc=desc, unit="step", file=sys.stderr) as bar:

        def show(event: Progress) -> None:
            bar.total, bar.n = event.total, event.step
            val_iou = event.info.get("val_iou")
            bar.set_postfix(
                loss=f"{event.info.get('loss', float('nan')):.3f}",
                val_iou="-" if val_iou is None else f"{val_iou:.3f}",
                refresh=False,
            )
            bar.refresh()
            if event.info.get("phase") == "validate":
                log.debug(event.message)

        return run_to_completion(job, show)
