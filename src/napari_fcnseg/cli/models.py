"""``fcnseg models``: the bundled models, by name, with their classes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._options import add_command

EXAMPLES = (
    "fcnseg models",
    "fcnseg models --json      # then: fcnseg predict scan.tif --out labels/ --model NAME",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg models`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "models",
        summary="list the bundled models (usable as --model NAME)",
        description=[
            "List the models shipped with napari-fcnseg: the name to give as --model NAME, the "
            "classes (label 0, 1, ...), the input channels, the file and its model card. The "
            "first is the default.",
        ],
        examples=EXAMPLES,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg models``; return the exit status."""
    from ..model.checkpoint import read_model_info
    from ..model.default import DEFAULT_MODEL, bundled_models

    rows: list[dict[str, Any]] = []
    for name, path in bundled_models().items():
        info = read_model_info(path)
        card = path.with_suffix(".md")
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "classes": info.class_names,
                "channels": info.in_channels,
                "file": str(path),
                "card": str(card) if card.is_file() else None,
            }
        )
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    if not rows:
        print("no bundled models in this install: give a model file with --model PATH")
        return 0
    for row in rows:
        flag = " (default)" if row["default"] else ""
        classes = ", ".join(f"{i} {c}" for i, c in enumerate(row["classes"]))
        print(f"{row['name']}{flag}: {row['channels']} channel(s); classes {classes}")
        print(f"    {row['file']}" + (f"\n    card: {row['card']}" if row["card"] else ""))
    return 0
