"""The declared size of a PNG or JPEG, read from its header without decoding any pixel.

A file of a few hundred bytes can declare a million by a million pixels; decoding it would try
to allocate terabytes. :func:`declared_size` reads only the PNG ``IHDR`` chunk or the JPEG
start-of-frame segment, so readers can refuse such files before allocating anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"

#: Channels a PNG decodes to, by colour type (palette images may decode to RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}
#: JPEG start-of-frame markers (SOF0-SOF15 except DHT, JPG and DAC).
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers that stand alone, without a length: TEM, RST0-RST7, SOI.
_STANDALONE = {0x01, *range(0xD0, 0xD9)}
#: Segments read before giving up on finding the frame header.
_MAX_SEGMENTS = 10_000


@dataclass(frozen=True)
class DeclaredSize:
    """Size of the pixels a file says it holds.

    Attributes
    ----------
    height, width, channels
        Pixel rows, columns and channels after decoding.
    itemsize
        Bytes per sample (1, or 2 for 16-bit PNGs and 12-bit JPEGs).
    """

    height: int
    width: int
    channels: int
    itemsize: int

    @property
    def shape(self) -> tuple[int, ...]:
        """(height, width) or (height, width, channels)."""
        base = (self.height, self.width)
        return base if self.channels == 1 else (*base, self.channels)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded pixels take."""
        return self.height * self.width * self.channels * self.itemsize


def declared_size(path: Path) -> DeclaredSize | None:
    """Return the size a PNG or JPEG file declares, or ``None`` for other content.

    Raises
    ------
    InputError
        When the file starts like a PNG or JPEG but its header is truncated or malformed.
    """
    with open(path, "rb") as handle:
        start = handle.read(8)
        if start == PNG_SIGNATURE:
            return _png_size(path, handle)
        if start[:2] == JPEG_SOI:
            handle.seek(2)
            return _jpeg_size(path, handle)
    return None


def _png_size(path: Path, handle: BinaryIO) -> DeclaredSize:
    chunk = handle.read(8 + 13)
    if len(chunk) < 21 or chunk[4:8] != b"IHDR":
        raise InputError(
            f"{path}: cannot decode this image: its PNG header is truncated or corrupt; "
            "re-export it"
        )
    width = int.from_bytes(chunk[8:12], "big")
    height = int.from_bytes(chunk[12:16], "big")
    depth, colour = chunk[16], chunk[17]
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise InputError(
            f"{path}: cannot decode this image: its PNG header is corrupt (colour type "
            f"{colour}, bit depth {depth}); re-export it"
        )
    return DeclaredSize(height, width, _PNG_CHANNELS[colour], 2 if depth == 16 else 1)


def _jpeg_size(path: Path, handle: BinaryIO) -> DeclaredSize:
    for _ in range(_MAX_SEGMENTS):
        if handle.read(1) != b"\xff":  # a marker must come next
            break
        marker = b"\xff"
        while marker == b"\xff":  # fill bytes before the marker code
            marker = handle.read(1)
        if not marker:
            break
        code = marker[0]
        if code in _STANDALONE:
            continue
        raw_length = handle.read(2)
        if len(raw_length) < 2:
            break
        length = int.from_bytes(raw_length, "big")
        if code in _SOF_MARKERS:
            frame = handle.read(6)
            if len(frame) < 6 or length < 8:
                break
            precision = frame[0]
            height = int.from_bytes(frame[1:3], "big")
            width = int.from_bytes(frame[3:5], "big")
            return DeclaredSize(height, width, frame[5], 2 if precision > 8 else 1)
        if code == 0xDA or length < 2:  # image data before any frame header
            break
        handle.seek(length - 2, 1)
    raise InputError(
        f"{path}: cannot decode this image: its JPEG header is truncated or corrupt (no frame "
        "header); re-export it"
    )
