"""Helpers of the widget tests (no fixtures here)."""

from __future__ import annotations

import numpy as np

SEGMENT_DOCK = "Segment and Refine with CRF"
TRAIN_DOCK = "Fine-tune and Export"


def disk_image(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of a bright disk on a dark, noisy background, and its labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = ((yy - size / 2) ** 2 + (xx - size / 2.5) ** 2 < (size / 4) ** 2).astype(np.uint8)
    colour = np.array([1.0, 0.3, 0.8])
    image = 40 + 150 * truth[..., None] * colour + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def run(qtbot, form, timeout: int = 30_000) -> None:
    """Press the form's main button and wait until its job has ended."""
    with qtbot.waitSignal(form.runner.running, check_params_cb=lambda on: not on, timeout=timeout):
        form.run_button.native.click()


def errors(notifications) -> list[str]:
    from napari.utils.notifications import NotificationSeverity

    return [n.message for n in notifications if n.severity == NotificationSeverity.ERROR]
