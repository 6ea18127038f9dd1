"""The ``fcnseg`` command: segment, rank, evaluate, grow annotated sets and train without a GUI.

One module per command (:mod:`.predict`, :mod:`.suggest`, :mod:`.evaluate`, :mod:`.train`,
:mod:`.add`, :mod:`.export_bmz`, :mod:`.models`), each with ``add_parser(commands)`` and
``run(args) -> int``; :mod:`._options` holds what they share.
Building the parser imports neither torch nor napari: every command imports its heavy
dependencies inside ``run``, so ``fcnseg --help`` answers at once. Errors are handled here, the
same for every command: one line on stderr, exit code 2 for bad input, 1 for an unexpected
failure (``--debug`` raises it with its traceback), 130 after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from .. import __version__
from ..errors import FcnsegError
from . import add, evaluate, export_bmz, models, predict, suggest, train
from ._options import HelpFormatter, examples_text, paragraphs

__all__ = ["COMMANDS", "EXAMPLES", "build_parser", "main"]

#: The subcommands, in the order ``fcnseg --help`` lists them.
COMMANDS = {
    "predict": predict,
    "suggest": suggest,
    "evaluate": evaluate,
    "train": train,
    "add": add,
    "export-bmz": export_bmz,
    "models": models,
}

EXAMPLES = (
    "fcnseg predict scans/ --out labels/",
    "fcnseg add --set eggs --image a.tif --labels a_labels.tif",
    "fcnseg train --data eggs --out tuned.safetensors --init default",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``fcnseg`` and its subcommands (imports no torch)."""
    parser = argparse.ArgumentParser(
        prog="fcnseg",
        description=paragraphs(
            "Segment microscopy images with a U-Net (+ CRF-as-RNN), rank the slices to correct "
            "first, evaluate models, grow annotated sets, train or fine-tune models on them and "
            "export them to bioimage.io."
        ),
        epilog=examples_text(EXAMPLES)
        + "\n\n'fcnseg COMMAND --help' lists every option of COMMAND with its default.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"napari-fcnseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fcnseg``; return the exit status (0 success, 2 bad input, 1 unexpected error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="fcnseg: %(message)s", stream=sys.stderr)
    with _sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command].run(args)
    except FcnsegError as exc:
        # One line, even when the message quotes a multi-line error of a library.
        print(f"fcnseg: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcnseg: interrupted; no partial output files were left", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"fcnseg: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug "
            "for details)",
            file=sys.stderr,
        )
        return 1


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``kill``, a job scheduler's cancel) like Ctrl-C while the block runs.

    Both then raise ``KeyboardInterrupt``, which removes the temporary file of an unfinished
    output and ends with a one-line message.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
