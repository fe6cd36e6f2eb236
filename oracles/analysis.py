"""The analysis agent's truth, recomputed from the original with numpy, within stated tolerances.

The contract (imageflow/agents/analysis.py): first frame, transparency shown on white; brightness is
the mean ITU-R 601 luma (0..255); phash is a 64-bit difference hash: the grey image reduced to 9 x 8,
one bit per neighbour pair of each row (1 when the left is brighter), row by row, most significant
bit first, as 16 hex digits; dominant_colors are up to 5 #rrggbb colours, most frequent first;
width and height are the stored original's (exact). Colours are the weakest of these oracles: the
most frequent one must be a main colour of the image, which a palette of another scene often is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from oracles.formats import NotAnImage, read_header
from oracles.pixels import Pixels, area_downscale, decode_rgba, flatten_on_white, luminance

HASH_SIZE = 8
COLOURS = 5
HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
HEX_HASH = re.compile(r"^[0-9a-fA-F]{16}$")
WORKING_SIDE = 256
# Tolerances, measured in tests/unit/test_oracles_analysis.py on photos and generated images against
# an implementation of the contract (worst right output in brackets).
BRIGHTNESS_TOLERANCE = 1.0  # grey levels (0.08)
# Hash bits are compared only where the neighbours differ by more than HASH_MARGIN grey levels: a
# near-tie flips with any resampling, a clear gradient never does.
HASH_MARGIN = 8.0
HASH_MISMATCHES = 3  # decisive bits that may differ (2)
# The first (most frequent) recorded colour must lie near one of the image's own three most
# populated colour bins (4 levels per channel; RGB Euclidean distance): (22.6).
TOP_BINS = 3
BIN_LEVELS = 4
TOP_COLOUR_DISTANCE = 32.0


@dataclass(frozen=True)
class Truth:
    """The original's facts: size, brightness, the 9 x 8 grey grid of the hash, its main colours."""

    width: int
    height: int
    brightness: float
    hash_grid: Pixels
    top_colours: list[Pixels]

    @property
    def dhash(self) -> int:
        """The 64-bit difference hash of the grid."""
        bits = 0
        for brighter in (self.hash_grid[:, :-1] > self.hash_grid[:, 1:]).ravel():
            bits = (bits << 1) | int(brighter)
        return bits

    def hash_mismatches(self, recorded: int) -> tuple[int, int]:
        """(decisive bits the recorded hash gets wrong, decisive bits) of a 64-bit hash."""
        gaps = (self.hash_grid[:, :-1] - self.hash_grid[:, 1:]).ravel()
        decisive = np.abs(gaps) > HASH_MARGIN
        bits = np.array([(recorded >> (63 - i)) & 1 for i in range(64)], dtype=bool)
        return int(((bits != (gaps > 0)) & decisive).sum()), int(decisive.sum())


def top_colours(pixels: Pixels, count: int = TOP_BINS, levels: int = BIN_LEVELS) -> list[Pixels]:
    """Mean colour of each of the most populated bins of an (N, 3) pixel list, most populated first."""
    index = np.minimum((pixels // (256 / levels)).astype(np.int64), levels - 1)
    key = (index[:, 0] * levels + index[:, 1]) * levels + index[:, 2]
    counts = np.bincount(key, minlength=levels**3)
    return [pixels[key == b].mean(axis=0) for b in np.argsort(-counts)[:count] if counts[b]]


def truth(original: bytes) -> Truth:
    """The facts the analysis agent must find in the original."""
    header = read_header(original)
    flat = flatten_on_white(decode_rgba(original))
    height, width = flat.shape[:2]
    scale = min(1.0, WORKING_SIDE / max(width, height))
    working = area_downscale(flat, max(1, round(width * scale)), max(1, round(height * scale)))
    grey = luminance(flat)
    grid = area_downscale(grey[..., None], HASH_SIZE + 1, HASH_SIZE)[..., 0]
    return Truth(header.width, header.height, float(grey.mean()), grid, top_colours(working.reshape(-1, 3)))


def _rgb(text: str) -> tuple[int, int, int]:
    value = int(text[1:], 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def check(original: bytes, recorded: Mapping[str, Any]) -> list[str]:
    """Every recorded value that is not the original's within tolerance."""
    try:
        facts = truth(original)
    except NotAnImage as exc:
        return [f"original unreadable: {exc}"]
    problems = [
        f"{key}: recorded {recorded.get(key)!r}, the original is {value}"
        for key, value in (("width", facts.width), ("height", facts.height))
        if recorded.get(key) != value
    ]
    brightness = recorded.get("brightness")
    if not isinstance(brightness, int | float) or abs(brightness - facts.brightness) > BRIGHTNESS_TOLERANCE:
        problems.append(
            f"brightness: recorded {brightness!r}, recomputed {facts.brightness:.2f} "
            f"(tolerance {BRIGHTNESS_TOLERANCE})"
        )
    phash = str(recorded.get("phash"))
    if not HEX_HASH.match(phash):
        problems.append(f"phash: recorded {phash!r}, not 16 hex digits")
    else:
        wrong, decisive = facts.hash_mismatches(int(phash, 16))
        if wrong > HASH_MISMATCHES:
            problems.append(
                f"phash: recorded {phash}, recomputed {facts.dhash:016x}: {wrong} of the {decisive} clear "
                f"bits differ (at most {HASH_MISMATCHES})"
            )
    problems += _colour_problems(recorded.get("dominant_colors"), facts.top_colours)
    return problems


def _colour_problems(colours: object, tops: list[Pixels]) -> list[str]:
    if not isinstance(colours, list) or not 1 <= len(colours) <= COLOURS:
        return [f"dominant_colors: recorded {colours!r}, not a list of 1 to {COLOURS} colours"]
    if not all(isinstance(c, str) and HEX_COLOUR.match(c) for c in colours):
        return [f"dominant_colors: recorded {colours!r}, not all #rrggbb"]
    first = np.array(_rgb(colours[0]), dtype=np.float32)
    distance = min(float(np.linalg.norm(first - top)) for top in tops)
    if distance > TOP_COLOUR_DISTANCE:
        mine = ", ".join("#" + bytes(round(float(v)) for v in top).hex() for top in tops)
        return [
            f"dominant_colors: the first, {colours[0]}, is {distance:.0f} from the image's main colours "
            f"({mine}; at most {TOP_COLOUR_DISTANCE:.0f})"
        ]
    return []
