from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from napari_fcnseg.core.memory import (
    MiB,
    NetworkSize,
    available_memory,
    choose_tile,
    estimate_memory,
)
from napari_fcnseg.errors import InputError
from napari_fcnseg.model.checkpoint import SegmentationModel

NET = NetworkSize(in_channels=1, num_classes=2, base_features=16, parameters=480_000, multiple=8)


def test_estimate_grows_with_tile_and_batch_not_with_slices():
    small = estimate_memory(NET, (2048, 2048), tile=256, batch=1)
    large = estimate_memory(NET, (2048, 2048), tile=1024, batch=4)
    assert large.per_batch > 10 * small.per_batch
    assert large.per_slice == small.per_slice
    assert large.host_bytes == large.total  # all on the host on the CPU
    gpu = estimate_memory(NET, (2048, 2048), tile=1024, batch=4, device="cuda")
    assert 0 < gpu.device_bytes < gpu.total
    assert estimate_memory(NET, (2048, 2048), tile=512, batch=4, crf=True).per_slice > (
        small.per_slice
    )


def test_network_size_of_a_model():
    model = SegmentationModel.create(["bg", "egg"], 1, depth=4, base_features=16)
    size = NetworkSize.of(model)
    assert size.base_features == 16 and size.num_classes == 2 and size.multiple == 8
    assert size.parameters == sum(p.numel() for p in model.parameters())


def test_auto_tile_is_1024_when_memory_is_plenty():
    plan = choose_tile(NET, (2048, 2048), tile=None, batch=4, available=(64 * 2**30, None))
    assert (plan.tile, plan.batch) == (1024, 4)


def test_a_smaller_tile_when_memory_is_tight(caplog):
    needed = estimate_memory(NET, (2048, 2048), tile=1024, batch=4).host_bytes
    plan = choose_tile(NET, (2048, 2048), tile=1024, batch=4, available=(needed, None))
    assert plan.tile < 1024 or plan.batch < 4
    assert plan.host_bytes <= 0.75 * needed
    assert "does not fit" in caplog.text


def test_gpu_memory_limits_the_tile():
    plan = choose_tile(
        NET, (2048, 2048), tile=1024, batch=4, device="cuda", available=(64 * 2**30, 300 * MiB)
    )
    assert plan.device_bytes <= 0.75 * 300 * MiB and plan.tile < 1024


def test_refuses_clearly_when_nothing_fits():
    with pytest.raises(InputError, match=r"not enough memory for 20000x20000 px slices.*MiB"):
        choose_tile(NET, (20000, 20000), tile=None, batch=4, available=(500 * MiB, None))


def test_available_memory_is_positive():
    host, device = available_memory("cpu")
    assert host > 0 and device is None


_MEASURE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    from napari_fcnseg.core.slices import label_slices
    from napari_fcnseg.core.memory import NetworkSize, estimate_memory
    from napari_fcnseg.model.checkpoint import SegmentationModel

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "egg"], 1, depth=4, base_features=16).eval()
    stack = np.random.default_rng(0).integers(0, 4000, (3, 768, 768), dtype=np.uint16)
    for _ in label_slices(model, stack[:1, :64, :64], tile=64, batch=1, device="cpu"):
        pass  # warm-up: torch's allocator and kernels
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    for _ in label_slices(model, stack, tile=384, batch=2, device="cpu"):
        pass
    peak = status("VmHWM") - before
    est = estimate_memory(NetworkSize.of(model), (768, 768), tile=384, batch=2)
    print(json.dumps({"measured": peak, "estimated": est.host_bytes}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_estimate_is_within_a_factor_of_two_of_the_measured_peak():
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    ratio = figures["estimated"] / figures["measured"]
    assert 0.5 <= ratio <= 2.0, figures
