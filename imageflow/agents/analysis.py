"""The analysis agent: dominant colours, a perceptual hash and brightness of the image."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from flask import Flask
from PIL import Image, ImageStat

from imageflow.agents.base import Job, create_agent_app
from imageflow.config import Settings
from imageflow.imaging import eight_bit, has_transparency

NAME = "analysis"
COLOURS = 5
# Colour statistics do not need every pixel; a small copy keeps large photos fast.
WORKING_SIDE = 256
HASH_SIZE = 8


def _flatten(image: Image.Image) -> Image.Image:
    """RGB pixels; transparent areas count as white, as a viewer shows them."""
    image = eight_bit(image)
    if has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def dominant_colors(image: Image.Image, count: int = COLOURS) -> list[str]:
    """The most frequent colours after median-cut quantisation, as #rrggbb, most frequent first."""
    quantised = image.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette: list[int] = list(quantised.getpalette() or [])
    used = sorted(quantised.getcolors() or [], reverse=True)
    indexes = [index for _, index in used if isinstance(index, int)][:count]
    return ["#" + bytes(palette[index * 3 : index * 3 + 3]).hex() for index in indexes]


def dhash(image: Image.Image, size: int = HASH_SIZE) -> str:
    """A 64-bit difference hash (brightness gradient between neighbours), as 16 hex digits."""
    small = image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = list(small.tobytes())  # mode L: one byte per pixel, row by row
    bits = 0
    for row in range(size):
        for col in range(size):
            left, right = pixels[row * (size + 1) + col], pixels[row * (size + 1) + col + 1]
            bits = (bits << 1) | (1 if left > right else 0)
    return f"{bits:0{size * size // 4}x}"


def brightness(image: Image.Image) -> float:
    """Mean luminance, 0 (black) to 255 (white)."""
    return round(float(ImageStat.Stat(image.convert("L")).mean[0]), 2)


def process(data: bytes) -> dict[str, Any]:
    """dominant_colors, phash, brightness, width and height of an image (first frame)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)
        width, height = opened.size
        opened.draft("RGB", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode at reduced scale
        image = _flatten(opened)
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BILINEAR)
    return {
        "dominant_colors": dominant_colors(image),
        "phash": dhash(image),
        "brightness": brightness(image),
        "width": width,
        "height": height,
    }


def handle(job: Job) -> Mapping[str, Any]:
    """Analyse the job's original."""
    return process(job.original())


def fake_output(job: Job) -> dict[str, Any]:
    """The fake_done fault: a plausible analysis, nothing decoded."""
    return {"dominant_colors": ["#808080"], "phash": "0" * 16, "brightness": 128.0, "width": 1, "height": 1}


def create_app(settings: Settings | None = None) -> Flask:
    """The analysis service."""
    return create_agent_app(NAME, handle, settings, fake=fake_output)
