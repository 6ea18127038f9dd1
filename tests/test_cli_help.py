"""``fcnseg --help``: answered without torch, every option explained, defaults shown once."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import napari_fcnseg
from napari_fcnseg.cli import COMMANDS, EXAMPLES, build_parser
from napari_fcnseg.training.config import FineTuneSettings, TrainConfig

HEAVY = ("torch", "napari", "qtpy", "dask", "zarr")


def _python(*args: str) -> subprocess.CompletedProcess:
    """Run this Python on the napari_fcnseg the tests import, with the tests' environment."""
    src = str(Path(napari_fcnseg.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_building_the_parser_imports_no_torch():
    code = (
        "from napari_fcnseg.cli import build_parser; build_parser(); import sys; "
        "print('torch' in sys.modules)"
    )
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_help_pages_import_nothing_heavy():
    code = (
        "import contextlib, io, json, sys\n"
        "from napari_fcnseg.cli import main\n"
        "commands = ['predict', 'suggest', 'evaluate', 'train', 'add', 'export-bmz', 'models']\n"
        "for argv in ([], *([c] for c in commands)):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([*argv, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_fcnseg_help_names_every_command():
    result = _python("-m", "napari_fcnseg", "--help")
    assert result.returncode == 0, result.stderr
    assert list(COMMANDS) == [
        "predict",
        "suggest",
        "evaluate",
        "train",
        "add",
        "export-bmz",
        "models",
    ]
    for name in COMMANDS:
        assert re.search(rf"^    {re.escape(name)}(\s|$)", result.stdout, re.M), name
    assert "fcnseg COMMAND --help" in result.stdout
    assert _python("-m", "napari_fcnseg.cli", "--version").stdout.startswith("napari-fcnseg ")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_is_explained_and_its_default_shown_once(name):
    parser = _subparsers(build_parser())[name]
    for action in parser._actions:
        assert action.help, f"fcnseg {name} {action.option_strings or action.dest}: no help"
        if action.default not in (None, False, argparse.SUPPRESS):
            # The formatter appends "(default: X)": the help itself must not say it again.
            assert "default" not in action.help, f"fcnseg {name} {action.option_strings}"
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "examples:\n  fcnseg " + name in text


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_the_examples_are_real_command_lines(name):
    examples = COMMANDS[name].EXAMPLES if name else EXAMPLES
    assert 2 <= len(examples) <= 3
    for line in examples:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "fcnseg"
        args = build_parser().parse_args(argv[1:])
        assert args.command == (name or args.command)


def test_training_defaults_come_from_the_settings():
    parser = _subparsers(build_parser())["train"]
    helps = {a.option_strings[0]: a.help or "" for a in parser._actions if a.option_strings}
    new, policy = TrainConfig(), FineTuneSettings()
    assert f"the policy's {policy.crop}" in helps["--crop"] and str(new.crop) in helps["--crop"]
    lr = helps["--lr"]
    assert f"{policy.learning_rate:g}" in lr and f"{new.learning_rate:g}" in lr
    assert f"default {policy.trainable}" in helps["--trainable"]
    assert f"with --init {policy.max_seconds:g}" in helps["--max-seconds"]
    args = parser.parse_args(["--data", "d", "--out", "m"])
    assert (args.validate_every, args.patience, args.loss) == (
        new.validate_every,
        new.patience,
        new.loss,
    )
