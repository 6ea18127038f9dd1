"""Peak-memory measurement for benchmarks (Linux: /proc/self/status and clear_refs)."""

from __future__ import annotations

from pathlib import Path


def rss_mib() -> float:
    """Current resident set size in MiB."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Peak resident set size since the last :func:`reset_peak` in MiB."""
    return _status_kib("VmHWM") / 1024


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")
