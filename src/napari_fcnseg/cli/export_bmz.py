"""``fcnseg export-bmz``: write a model as a bioimage.io package (``.zip``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._options import add_command

log = logging.getLogger("napari_fcnseg")

EXAMPLES = (
    "fcnseg export-bmz --out egg_chambers.zip                 # the bundled model",
    "fcnseg export-bmz --model tuned.safetensors --out tuned.zip --name 'My egg chambers' "
    "--author 'A. Person'",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg export-bmz`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "export-bmz",
        summary="write a model as a bioimage.io package (runs in other tools)",
        description=[
            "Write a bioimage.io model package (current spec): the U-Net's source and weights, "
            "the same percentile normalisation as preprocessing, class probabilities out, test "
            "tensors from a synthetic egg-chamber slice, a cover image and the model card. The "
            "package is validated and its test tensors reproduced offline with bioimageio.core "
            "before it is written. It also carries the model file, so fcnseg predict --model "
            'PACKAGE.zip reads it back unchanged. Needs: pip install "napari-fcnseg[bioimageio]".',
        ],
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH|NAME",
        help="model file (.safetensors) or the name of a bundled model (fcnseg models); "
        "default: egg-chambers",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL.zip", help="package")
    parser.add_argument(
        "--name", default=None, help="model name shown in the zoo; default: from the model file"
    )
    parser.add_argument(
        "--author",
        action="append",
        default=None,
        metavar="NAME",
        help="an author (repeat for several); default: napari-fcnseg developers",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg export-bmz``; return the exit status."""
    from .._sample_data import sample_slice_image
    from ..core.bioimageio import export_bioimageio, package_texts
    from ..model.checkpoint import load_model
    from ..model.default import resolve_model_path

    path = resolve_model_path(args.model)
    model = load_model(path)
    texts = package_texts(model, path)
    if args.name:
        texts["name"] = args.name
    out = export_bioimageio(
        model,
        args.out,
        sample_slice_image(),
        **texts,
        authors=args.author or ("napari-fcnseg developers",),
        overwrite=args.overwrite,
    )
    log.info("wrote %s (validated, test tensors reproduced)", out)
    return 0
