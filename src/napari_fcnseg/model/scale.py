"""The working scale a model declares: the factor images are resized by before the network."""

from __future__ import annotations

from ..errors import InputError

#: Scales a model may declare: from a tenth of the size to four times it.
MIN_SCALE, MAX_SCALE = 0.1, 4.0


def check_scale(scale: float, what: str = "scale") -> float:
    """Return ``scale`` as a float, or raise :class:`InputError` when it is unusable."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {scale!r}") from None
    if not MIN_SCALE <= value <= MAX_SCALE:
        raise InputError(
            f"{what}={value:g} is outside {MIN_SCALE:g}-{MAX_SCALE:g}: it is the factor the "
            "image is resized by before the network (0.5 = half size, for objects that are "
            "large in pixels)"
        )
    return value
