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
#: The measure slices are ranked by unless told otherwise, chosen by measurement
#: (``benchmarks/bench_suggest.py``; benchmarks/README.md, "What to annotate next"): scored
#: against the true error of a model that never saw them, on the shared real slices ``flips``
#: followed the error best, for whole slices and for squares within them, ``crf`` and
#: ``combined`` came close and ``entropy`` was last. On synthetic stacks with degraded slices
#: no measure was reliable (a slice the model labels wrongly and confidently fools them all),
#: so the real slices decided. It costs four predictions per slice; ``crf`` is the cheaper
#: runner-up.
DEFAULT_SUGGEST_MEASURE = "flips"
