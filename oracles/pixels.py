"""Pixels as numpy arrays, and the oracles' own geometry: EXIF orientation, area-average downscale.

Pillow only decodes here (turning compressed bytes into pixels is the one step shared with the
system); orienting, flattening, scaling and luminance are numpy code of their own.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Pixels = NDArray[np.float32]
# ITU-R 601-2 luma, the weights every greyscale conversion of the platform promises.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def decode_rgba(data: bytes) -> Pixels:
    """The first frame as float RGBA (0..255), as stored (no orientation applied); 16-bit scaled down."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            grey = np.asarray(image.convert("F"), dtype=np.float32)
            if grey.max(initial=0) > 255:
                grey = (grey / 256).astype(np.float32)
            alpha = np.full_like(grey, 255)
            return np.stack([grey, grey, grey, alpha], axis=-1)
        return np.asarray(image.convert("RGBA"), dtype=np.float32)


def orient(pixels: Pixels, orientation: int | None) -> Pixels:
    """The pixels as a viewer shows them under an EXIF orientation (1 to 8; anything else is 1)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1, :]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return np.rot90(pixels, k=2).transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels


def has_transparency(pixels: Pixels) -> bool:
    """True when some pixel is not fully opaque."""
    return bool(pixels[..., 3].min(initial=255) < 255)


def flatten_on_white(pixels: Pixels) -> Pixels:
    """RGB with transparent areas shown on white, as a viewer does."""
    if not has_transparency(pixels):
        return np.ascontiguousarray(pixels[..., :3])
    alpha = pixels[..., 3:4] / 255
    flat: Pixels = (pixels[..., :3] * alpha + 255 * (1 - alpha)).astype(np.float32)
    return flat


def luminance(rgb: Pixels) -> Pixels:
    """Luma of RGB pixels (0..255)."""
    grey: Pixels = rgb[..., :3] @ LUMA
    return grey


def _area_weights(source: int, target: int) -> Pixels:
    """(target, source) matrix: each output cell's share of every source pixel it covers."""
    edges = np.arange(target + 1, dtype=np.float64) * source / target
    starts = np.arange(source, dtype=np.float64)
    overlap = np.minimum(edges[1:, None], starts[None, :] + 1) - np.maximum(edges[:-1, None], starts[None, :])
    weights = np.clip(overlap, 0, None)
    shares: Pixels = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    return shares


def area_downscale(pixels: Pixels, width: int, height: int) -> Pixels:
    """Each output pixel is the exact mean of the source area it covers (any size, any channels)."""
    rows = _area_weights(pixels.shape[0], height)
    cols = _area_weights(pixels.shape[1], width)
    # Rows first: the large source is read once, and the intermediate is only `height` rows tall.
    tall = np.tensordot(rows, pixels, axes=(1, 0))  # (height, W, C)
    small = np.tensordot(tall, cols, axes=(1, 1))  # (height, C, width)
    result: Pixels = np.ascontiguousarray(small.transpose(0, 2, 1))
    return result


def sample(pixels: Pixels, most: int = 256) -> Pixels:
    """Real pixels (no averaging) on a regular lattice of at most most x most, as an (N, C) list."""
    step_y = max(1, pixels.shape[0] // most)
    step_x = max(1, pixels.shape[1] // most)
    picked: Pixels = pixels[::step_y, ::step_x].reshape(-1, pixels.shape[-1])
    return picked
