"""The thumbnailer's truth: upright size (longest side 256, never upscaled), format, alpha and content.

Content is judged against the original itself: both are reduced to a 16 x 16 grid of RGB cell
means (exact area averages, transparency shown on white) and compared by mean absolute difference.
A thumbnail of another upload, or of the right one rotated or mirrored, lands far from the grid of
the upright original; the threshold's margins on photos and generated images are measured in
tests/unit/test_oracles_thumbnailer.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from oracles import exiftool
from oracles.formats import NotAnImage, read_header, sniff
from oracles.pixels import Pixels, area_downscale, decode_rgba, flatten_on_white, has_transparency, orient

MAX_SIDE = 256
GRID = 16
# Mean absolute difference (0..255 per channel) on the 16 x 16 RGB grid. Measured on 23 photos and
# generated images: right thumbnails at most 0.7; another scene at least 7.6 (two photos of the same
# generator), the right scene mirrored or rotated at least 10.2.
CONTENT_THRESHOLD = 3.0
# Groups a thumbnail saved "from pixels only" must not carry.
METADATA_GROUPS = ("IFD", "ExifIFD", "SubIFD", "InteropIFD", "GPS", "XMP", "IPTC", "Photoshop", "MakerNotes")
ORIENTATION_NAMES = {
    1: "as stored",
    2: "mirrored left-right",
    3: "rotated 180",
    4: "mirrored top-bottom",
    5: "transposed",
    6: "rotated 90 CW",
    7: "transversed",
    8: "rotated 90 CCW",
}


def orientation(tags: exiftool.Tags) -> int:
    """The EXIF orientation a viewer applies (1 to 8): IFD0's, else XMP's tiff:Orientation, else 1."""
    for key in ("IFD0:Orientation", "XMP-tiff:Orientation"):
        value = tags.first(key)
        if isinstance(value, int) and 1 <= value <= 8:
            return value
    return 1


def expected_size(width: int, height: int, turn: int) -> tuple[int, int]:
    """Thumbnail size of a stored width x height under an orientation: upright, longest side 256."""
    if turn in (5, 6, 7, 8):
        width, height = height, width
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def grid(pixels: Pixels) -> Pixels:
    """The 16 x 16 RGB grid of cell means, transparency shown on white."""
    return area_downscale(flatten_on_white(pixels), GRID, GRID)


def distances(original: Pixels, thumbnail: Pixels) -> dict[int, float]:
    """Grid distance of the thumbnail to the stored original under each of the 8 orientations."""
    # A square grid's cells map onto cells under every rotation and mirror: orient the grid itself.
    reference, small = grid(original), grid(thumbnail)
    return {turn: float(np.abs(orient(reference, turn) - small).mean()) for turn in ORIENTATION_NAMES}


def check(original: bytes, thumbnail: bytes, recorded: Mapping[str, Any]) -> list[str]:
    """Every way the thumbnail (and its recorded summary) differs from the truth of the original."""
    problems: list[str] = []
    try:
        source, small = read_header(original), read_header(thumbnail)
    except NotAnImage as exc:
        return [f"unreadable: {exc}"]
    turn = orientation(exiftool.read(original))
    pixels = decode_rgba(original)
    transparent = has_transparency(pixels)
    want_format = "PNG" if transparent else "JPEG"

    if sniff(thumbnail) != want_format:
        why = "the original has transparent pixels" if transparent else "the original is opaque"
        problems.append(f"thumbnail is {sniff(thumbnail)}, expected {want_format} ({why})")
    want = expected_size(source.width, source.height, turn)
    got = (small.width, small.height)
    if max(got) != max(want) or abs(got[0] - want[0]) > 1 or abs(got[1] - want[1]) > 1:
        problems.append(
            f"thumbnail is {got[0]}x{got[1]}, expected {want[0]}x{want[1]} (stored {source.width}x"
            f"{source.height}, EXIF orientation {turn}, longest side {MAX_SIDE}, never upscaled)"
        )
    facts = {"width": small.width, "height": small.height, "format": small.format, "bytes": len(thumbnail)}
    problems += [
        f"recorded {key} {recorded.get(key)!r}, the stored thumbnail has {value!r}"
        for key, value in facts.items()
        if recorded.get(key) != value
    ]
    small_pixels = decode_rgba(thumbnail)
    if transparent and not has_transparency(small_pixels):
        problems.append("the original's transparency is lost in the thumbnail")
    leaked = sorted(g for g in exiftool.read(thumbnail).groups() if g.startswith(METADATA_GROUPS))
    if leaked:
        problems.append(f"thumbnail carries metadata groups {leaked}")

    seen = distances(pixels, small_pixels)
    if seen[turn] > CONTENT_THRESHOLD:
        nearest = min(seen, key=lambda t: seen[t])
        problems.append(
            f"thumbnail content differs from the upright original: mean abs difference {seen[turn]:.1f} > "
            f"{CONTENT_THRESHOLD} on a {GRID}x{GRID} RGB grid; closest is the stored original "
            f"{ORIENTATION_NAMES[nearest]} ({seen[nearest]:.1f})"
        )
    return problems
