"""Overlapping tiles and their seamless blending."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


def axis_tiles(length: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile extent and start positions covering ``length`` pixels.

    The number of tiles is the fewest whose neighbours overlap by at least ``overlap``; the
    extent is then shrunk to share the length evenly (rounded up to ``multiple``), so an image a
    little larger than one tile is not processed twice over. Starts may run past the end of the
    image: the caller pads.
    """
    tile = max(multiple, tile - tile % multiple)
    padded = round_up(length, multiple)
    if padded <= tile:
        return padded, [0]
    overlap = min(overlap, tile // 2)
    count = math.ceil((length - overlap) / (tile - overlap))
    extent = min(tile, round_up(math.ceil((length + (count - 1) * overlap) / count), multiple))
    last = length - extent
    starts = [round(i * last / (count - 1)) for i in range(count)]
    return extent, starts


@dataclass(frozen=True)
class TileGrid:
    """The tiles covering one (Y, X) slice."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    overlap: int

    @classmethod
    def plan(cls, height: int, width: int, tile: int, overlap: int, multiple: int) -> TileGrid:
        """Cover a ``height`` x ``width`` slice with tiles of at most ``tile`` pixels a side."""
        tile_h, ys = axis_tiles(height, tile, overlap, multiple)
        tile_w, xs = axis_tiles(width, tile, overlap, multiple)
        return cls(height, width, tile_h, tile_w, tuple(ys), tuple(xs), overlap)

    @property
    def origins(self) -> list[tuple[int, int]]:
        """Top-left corner of every tile, row by row."""
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def padded_shape(self) -> tuple[int, int]:
        """Size of the padded slice the tiles are cut from."""
        return self.ys[-1] + self.tile_h, self.xs[-1] + self.tile_w

    def weights(self, y: int, x: int) -> np.ndarray:
        """Blending weights of the tile at (y, x): 1 inside, ramping down where it overlaps."""
        wy = _ramp(self.tile_h, y > 0, y + self.tile_h < self.ys[-1] + self.tile_h, self.overlap)
        wx = _ramp(self.tile_w, x > 0, x + self.tile_w < self.xs[-1] + self.tile_w, self.overlap)
        return np.outer(wy, wx).astype(np.float32)


def _ramp(length: int, rise: bool, fall: bool, overlap: int) -> np.ndarray:
    weights = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        ramp = (np.arange(1, n + 1, dtype=np.float32) / (n + 1)).astype(np.float32)
        if rise:
            weights[:n] = ramp
        if fall:
            weights[-n:] = ramp[::-1]
    return weights
