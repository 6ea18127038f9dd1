"""What every benchmark prints first: the date, the commit and the machine it measured on."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """Short hash of the checked-out commit (empty outside a git checkout)."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def machine() -> str:
    """The CPU's model name and torch's thread count, e.g. ``AMD EPYC, 2 threads``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


def header() -> str:
    """``date ..., commit ..., <machine>``: the first line of a benchmark's output."""
    return f"date {time.strftime('%Y-%m-%d %H:%M')}, commit {commit()}, {machine()}"
