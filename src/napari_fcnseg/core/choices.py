"""The names a device or precision setting can take, importable without torch.

The ``fcnseg`` parser and the forms list these choices before anything heavy is loaded;
:mod:`.device` resolves them.
"""

from __future__ import annotations

#: Settings of the device to run on (see :func:`~.device.resolve_device`).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: Settings of the training arithmetic (see :func:`~.device.training_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")
#: What ``rank_for_annotation`` can rank slices by (see :mod:`.suggest`): the mean uncertainty
#: over the predicted objects and their border band, the labels the CRF changes, the labels
#: that change when the image is flipped, and the mean of the last two.
SUGGEST_MEASURES = ("entropy", "crf", "flips", "combined")
#: The measure slices are ranked by unless told otherwise. Chosen by measurement:
#: ``benchmarks/bench_suggest.py`` scores every measure against the true error (1 - IoU) of a
#: model that never saw the slices, on the shared real slices (slices and squares within them)
#: and on a synthetic stack with degraded slices, and runs the loop with each measure's picks;
#: benchmarks/README.md, "What to annotate next", says which followed the error best.
DEFAULT_SUGGEST_MEASURE = "crf"
