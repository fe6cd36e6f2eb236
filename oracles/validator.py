"""The validator's truth, from the stored object itself; and the stored original against the upload.

sha256 and byte count are recomputed; format comes from magic bytes and size and frames from the
container's own header (oracles.formats), never from a decoder. The stored original must be the
uploaded bytes, or, when the dashboard says it removed GPS, the same pixels and the same camera EXIF
(exiftool's IFD0 and EXIF IFD) with the location gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from oracles import exiftool
from oracles.formats import NotAnImage, read_header
from oracles.pixels import decode_rgba

KEPT_GROUPS = ("IFD0:", "ExifIFD:")


def check(stored: bytes, recorded: Mapping[str, Any]) -> list[str]:
    """Every recorded fact that differs from the stored object's."""
    facts: dict[str, Any] = {"sha256": hashlib.sha256(stored).hexdigest(), "bytes": len(stored)}
    try:
        header = read_header(stored)
    except NotAnImage as exc:
        return [f"the stored object is not an image the oracle can read: {exc}"]
    facts.update(format=header.format, width=header.width, height=header.height)
    if header.frames is not None:
        facts["frames"] = header.frames
    return [
        f"{key}: recorded {recorded.get(key)!r}, the stored object has {value!r}"
        for key, value in facts.items()
        if recorded.get(key) != value
    ]


def check_stored_original(uploaded: bytes, stored: bytes, gps_removed: bool) -> list[str]:
    """The stored original is the upload byte for byte, or (GPS removed) pixel for pixel."""
    if stored == uploaded:
        if gps_removed:
            return ["the dashboard says it removed GPS, yet the stored original is the upload unchanged"]
        return []
    if not gps_removed:
        return [f"the stored original ({len(stored)} bytes) differs from the upload ({len(uploaded)} bytes)"]
    try:
        before, after = read_header(uploaded), read_header(stored)
    except NotAnImage as exc:
        return [f"the stored original is no longer readable: {exc}"]
    if (before.format, before.width, before.height) != (after.format, after.width, after.height):
        return [f"stripping GPS changed the image: {before} became {after}"]
    original, kept = decode_rgba(uploaded), decode_rgba(stored)
    changed = int(np.any(original != kept, axis=-1).sum())
    if changed:
        return [f"stripping GPS changed {changed} pixels of {original.shape[0] * original.shape[1]}"]
    lost = sorted(set(_camera_exif(uploaded).items()) - set(_camera_exif(stored).items()))
    return [f"stripping GPS also changed or removed the EXIF tags {lost}"] if lost else []


def _camera_exif(data: bytes) -> dict[str, str]:
    """The EXIF that must survive GPS removal (IFD0 and the EXIF IFD), as exiftool reads it."""
    return {key: str(value) for key, value in exiftool.read(data).pairs if key.startswith(KEPT_GROUPS)}
