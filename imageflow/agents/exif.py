"""The exif agent: camera, date taken and orientation from the image's EXIF. Never its location.

GPS is stripped by the dashboard before the original is stored; this agent still never reads the
GPS IFD, so a location that slipped through can never reach the workflow document.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Flask
from PIL import ExifTags, Image

from imageflow.agents.base import Job, create_agent_app
from imageflow.config import Settings

NAME = "exif"
EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"
MAX_TEXT = 200


def _text(value: object) -> str | None:
    """A clean printable EXIF string (cameras pad with NULs and spaces), or None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value.replace("\x00", " ") if ch.isprintable()).strip()
    return cleaned[:MAX_TEXT] or None


def _iso(value: object) -> str | None:
    text = _text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], EXIF_DATE_FORMAT).isoformat()
    except ValueError:
        return None


def _camera(make: str | None, model: str | None) -> str | None:
    if make and model and model.lower().startswith(make.lower()):
        return model  # many cameras repeat the make in the model ("Canon" / "Canon EOS R5")
    joined = " ".join(part for part in (make, model) if part)
    return joined or None


def process(data: bytes) -> dict[str, Any]:
    """camera, taken_at (ISO), orientation and software from the image's EXIF (None when absent)."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
    base = ExifTags.Base
    orientation = exif.get(base.Orientation)
    taken = exif.get_ifd(ExifTags.IFD.Exif).get(base.DateTimeOriginal)
    return {
        "camera": _camera(_text(exif.get(base.Make)), _text(exif.get(base.Model))),
        "taken_at": _iso(taken),
        "orientation": orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        "software": _text(exif.get(base.Software)),
    }


def _degrees(value: object, reference: object) -> float | None:
    try:
        d, m, s = (float(part) for part in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    sign = -1 if _text(reference) in ("S", "W") else 1
    return round(sign * (d + m / 60 + s / 3600), 6)


def leaked_gps(data: bytes) -> dict[str, float | None]:
    """The exif.leaks_gps fault only: the position this agent must otherwise never read."""
    with Image.open(io.BytesIO(data)) as image:
        gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    return {
        "latitude": _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef)),
        "longitude": _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef)),
    }


def handle(job: Job) -> Mapping[str, Any]:
    """Read the EXIF summary of the job's original."""
    data = job.original()
    output = process(data)
    if job.fault("leaks_gps"):
        output["gps"] = leaked_gps(data)
    return output


def fake_output(job: Job) -> dict[str, Any]:
    """The fake_done fault: a plausible summary, nothing read."""
    return {"camera": None, "taken_at": None, "orientation": 1, "software": None}


def create_app(settings: Settings | None = None) -> Flask:
    """The exif service."""
    return create_agent_app(NAME, handle, settings, fake=fake_output)
