"""``fcnseg suggest``: list the slices and scans to correct first, most likely wrong first."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.choices import DEFAULT_SUGGEST_MEASURE, SUGGEST_MEASURES
from ..errors import InputError
from ._options import (
    add_axes_option,
    add_command,
    add_inputs,
    add_model_options,
    expand_inputs,
    load_model,
    positive_int,
)

if TYPE_CHECKING:
    from ..core.progress import Progress
    from ..core.suggest import Suggestion

EXAMPLES = (
    "fcnseg suggest stack.tif --top 5               # the 5 slices to correct first",
    "fcnseg suggest scans/ --model tuned.safetensors --json",
    "fcnseg suggest stack.tif --exclude stack.tif:3 --region 256",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg suggest`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "suggest",
        summary="rank slices and scans by where a correction teaches the model most",
        description=[
            "Predict every slice of the inputs and list them, most likely wrong first, by a "
            "score that needs no annotation: correct them in this order and fine-tune "
            "(fcnseg add, fcnseg train --init). Slices of all inputs are ranked together. "
            "One slice is read and held at a time.",
            "Scores: flips, the share of the labels that changes when the image is flipped "
            "(1 - IoU against the unflipped labels, over three flips: 4 predictions per "
            "slice); crf, the share the dense CRF changes (cheaper); combined, their mean; "
            "entropy, the model's mean uncertainty over and around the objects it found. How "
            "well each follows the true error: benchmarks/README.md, 'What to annotate next'.",
        ],
        examples=EXAMPLES,
    )
    add_inputs(parser)
    add_model_options(parser)
    add_axes_option(parser)
    parser.add_argument(
        "--measure",
        choices=SUGGEST_MEASURES,
        default=DEFAULT_SUGGEST_MEASURE,
        help="what to rank by (see above)",
    )
    parser.add_argument(
        "--top",
        type=positive_int,
        default=None,
        metavar="N",
        help="list only the N slices to correct first; default: every slice",
    )
    parser.add_argument(
        "--region",
        type=positive_int,
        default=None,
        metavar="N",
        help="also score each slice in N x N px squares and show the worst one: where to "
        "start correcting; default: whole slices only",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="INPUT[:Z]",
        help="skip an input, or slice Z of it (e.g. slices already corrected); repeat for "
        "more. INPUT is the file name as listed",
    )
    parser.add_argument("--json", action="store_true", help="print the ranking as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg suggest``; return the exit status."""
    from functools import partial

    from tqdm import tqdm

    from ..core.progress import run_to_completion
    from ..core.suggest import rank_for_annotation
    from ..io.lazy import open_image

    inputs = expand_inputs(args.inputs)
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: no such file; check the path")
    exclude = _exclusions(args.exclude or [], inputs)
    model = load_model(args)
    channels = model.info.in_channels
    job = rank_for_annotation(
        model,
        [partial(open_image, path, axes=args.axes, channels=channels) for path in inputs],
        names=[str(p) for p in inputs],
        measure=args.measure,
        region=args.region,
        exclude=exclude,
        top=args.top,
        tile=args.tile,
        batch=args.batch,
        device=args.device,
    )
    with tqdm(total=0, desc="suggest", unit="slice", file=sys.stderr) as bar:

        def show(event: Progress) -> None:
            bar.total, bar.n = event.total, event.step
            bar.refresh()

        ranked = run_to_completion(job, show)
    if args.json:
        rows = [{"rank": k, **s.as_dict()} for k, s in enumerate(ranked, 1)]
        print(json.dumps({"measure": args.measure, "suggestions": rows}, indent=2))
    else:
        print(_table(ranked, args.measure, args.region))
    return 0


def _exclusions(entries: Sequence[str], inputs: Sequence[Path]) -> list[int | tuple[int, int]]:
    """Turn ``--exclude INPUT[:Z]`` into input indices and (input, slice) pairs."""
    out: list[int | tuple[int, int]] = []
    for entry in entries:
        name, _, z = entry.rpartition(":")
        if not name or not z.isdigit():
            name, z = entry, ""
        matches = [i for i, p in enumerate(inputs) if name in (str(p), p.name)]
        if not matches:
            listed = ", ".join(p.name for p in inputs[:5]) + (", ..." if len(inputs) > 5 else "")
            raise InputError(
                f"--exclude {entry}: no input is named {name!r}; give a file name as listed "
                f"({listed}), with :Z for one slice"
            )
        out.extend((i, int(z)) if z else i for i in matches)
    return out


def _table(ranked: Sequence[Suggestion], measure: str, region: int | None) -> str:
    if not ranked:
        return "no slices left to rank (all were excluded)"
    width = max(len("input"), *(len(s.source) for s in ranked))
    head = f"{'rank':>4}  {'input':<{width}}  {'slice':>5}  {measure:>8}"
    if region:
        head += f"  worst {region} px square (y0:y1, x0:x1), score"
    lines = [head]
    for k, s in enumerate(ranked, 1):
        z = "-" if s.z is None else str(s.z)
        line = f"{k:>4}  {s.source:<{width}}  {z:>5}  {s.score:8.4f}"
        if s.region is not None:
            y0, x0, y1, x1 = s.region.bbox
            line += f"  {y0}:{y1}, {x0}:{x1}, {s.region.score:.4f}"
        lines.append(line)
    return "\n".join(lines)
