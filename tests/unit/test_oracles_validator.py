"""The validator oracle: facts from the container's own header and the bytes; stored versus uploaded."""

from __future__ import annotations

import hashlib
import io
import struct
from typing import Any

import allure
import pytest
from PIL import Image

from fixtures import images
from fixtures.reporting import EPIC
from oracles import validator
from oracles.formats import NotAnImage, read_header

pytestmark = [allure.epic(EPIC), allure.feature("Oracles: validator")]

KINDS = [
    "jpeg_with_exif_gps",
    "progressive_jpeg",
    "cmyk_jpeg",
    "png_with_alpha",
    "png_16bit",
    "webp",
    "webp_with_exif_gps",
    "animated_webp",
    "gif",
    "tiny_png",
]


def _facts(data: bytes) -> dict[str, Any]:
    """What a correct validator records, read here with Pillow (a different reader from the oracle's)."""
    with Image.open(io.BytesIO(data)) as image:
        return {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "format": {"MPO": "JPEG"}.get(image.format or "", image.format),
            "width": image.width,
            "height": image.height,
            "frames": int(getattr(image, "n_frames", 1)),
        }


def _without_gps(data: bytes) -> bytes:
    """The JPEG with its EXIF segment replaced by the same EXIF minus GPS (pixels untouched)."""
    pos = 2
    while data[pos + 1] != 0xE1:
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    body = images.camera_exif(with_gps=False).tobytes()  # "Exif\0\0" and the TIFF payload
    return data[:pos] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[end:]


@pytest.mark.parametrize("kind", KINDS)
def test_true_facts_have_no_difference(kind: str) -> None:
    data = images.SAMPLES[kind].generate()
    assert validator.check(data, _facts(data)) == []


@pytest.mark.parametrize(
    ("wrong", "field"),
    [
        ({"sha256": hashlib.sha256(b"another upload").hexdigest()}, "sha256"),
        ({"bytes": 1}, "bytes"),
        ({"format": "PNG"}, "format"),
        ({"width": 480, "height": 640}, "width"),
        ({"frames": 1}, "frames"),
    ],
    ids=["wrong-sha", "wrong-bytes", "wrong-format", "swapped-size", "frames"],
)
def test_a_wrong_fact_is_named(wrong: dict[str, Any], field: str) -> None:
    data = images.gif()
    problems = validator.check(data, {**_facts(data), **wrong})
    assert problems, f"{wrong} passed"
    assert problems[0].startswith(f"{field}: recorded"), problems


def test_a_non_image_is_refused_by_the_header_reader() -> None:
    with pytest.raises(NotAnImage):
        read_header(b"GIF89a")
    assert validator.check(images.text_as_jpg(), {}), "a text file passed as an image"


def test_the_stored_original_is_the_upload_or_the_same_pixels_without_gps() -> None:
    upload = images.jpeg_with_exif_gps()
    stripped = _without_gps(upload)
    assert stripped != upload
    assert validator.check_stored_original(upload, upload, gps_removed=False) == []
    assert validator.check_stored_original(upload, stripped, gps_removed=True) == []


def test_a_changed_stored_original_is_caught() -> None:
    upload = images.jpeg_with_exif_gps()
    buffer = io.BytesIO()
    Image.open(io.BytesIO(upload)).save(buffer, "JPEG", quality=60)  # re-encoded: other pixels
    reencoded = buffer.getvalue()
    assert validator.check_stored_original(upload, reencoded, gps_removed=True)
    assert validator.check_stored_original(upload, _without_gps(upload), gps_removed=False)
    assert validator.check_stored_original(upload, upload, gps_removed=True)
    assert validator.check_stored_original(upload, images.plain_jpeg(), gps_removed=True)
