"""The exif agent's truth, read by exiftool: camera, taken_at, orientation, software.

The contract (imageflow/agents/exif.py's docstring and README): text fields are cleaned (NULs to
spaces, unprintable characters dropped, trimmed, at most 200 characters) or None; camera joins make
and model with a space unless the model already starts with the make; taken_at is DateTimeOriginal
of the EXIF IFD as ISO 8601; orientation is 1 to 8 or None; an absent field is recorded as None.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from oracles import exiftool

MAX_TEXT = 200
EXIF_DATE = "%Y:%m:%d %H:%M:%S"
FIELDS = ("camera", "taken_at", "orientation", "software")


def _text(value: object) -> str | None:
    # exiftool's JSON turns numeric-looking strings into numbers: a model "100" is still text.
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    raw = str(value)
    cleaned = "".join(ch for ch in raw.replace("\x00", " ") if ch.isprintable()).strip()
    return cleaned[:MAX_TEXT] or None


def _camera(make: str | None, model: str | None) -> str | None:
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(part for part in (make, model) if part) or None


def _taken_at(value: object) -> str | None:
    text = _text(value)
    try:
        return datetime.strptime(text[:19], EXIF_DATE).isoformat() if text else None
    except ValueError:
        return None


def expected(tags: exiftool.Tags) -> dict[str, Any]:
    """What the exif agent must record, from exiftool's reading of the original."""
    orientation = tags.first("IFD0:Orientation")
    return {
        "camera": _camera(_text(tags.first("IFD0:Make")), _text(tags.first("IFD0:Model"))),
        "taken_at": _taken_at(tags.first("ExifIFD:DateTimeOriginal")),
        "orientation": orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
        "software": _text(tags.first("IFD0:Software")),
    }


def check(original: bytes, recorded: Mapping[str, Any]) -> list[str]:
    """Every recorded field that differs from exiftool's reading of the original (absent means None)."""
    truth = expected(exiftool.read(original))
    return [
        f"{field}: recorded {recorded.get(field)!r}, exiftool reads {truth[field]!r}"
        for field in FIELDS
        if recorded.get(field) != truth[field]
    ]
