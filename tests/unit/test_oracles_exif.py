"""The metadata oracle: exiftool's reading of the upload, by the exif agent's contract, and its misses."""

from __future__ import annotations

import io
from typing import Any

import allure
import pytest
from PIL import ExifTags, Image

from fixtures import images
from fixtures.reporting import EPIC
from oracles import exif, exiftool

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Oracles: exif"),
    pytest.mark.skipif(not exiftool.available(), reason=exiftool.INSTALL_HINT),
]

CAMERA = {
    "camera": f"{images.CAMERA_MAKE} {images.CAMERA_MODEL}",
    "taken_at": "2024-05-17T14:32:09",
    "orientation": images.ORIENTATION,
    "software": images.SOFTWARE,
}
NOTHING = {"camera": None, "taken_at": None, "orientation": None, "software": None}


def _jpeg(make: str, model: str) -> bytes:
    tags = Image.Exif()
    tags[ExifTags.Base.Make] = make
    tags[ExifTags.Base.Model] = model
    buffer = io.BytesIO()
    images.photo((32, 24)).save(buffer, "JPEG", exif=tags)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "recorded"),
    [
        ("jpeg_with_exif_gps", CAMERA),
        ("png_with_exif_gps", CAMERA),
        ("webp_with_exif_gps", CAMERA),
        ("plain_jpeg", NOTHING),
        ("gif", NOTHING),
        ("jpeg_orientation_8", {**NOTHING, "orientation": 8}),
    ],
)
def test_a_true_record_has_no_difference(kind: str, recorded: dict[str, Any]) -> None:
    assert exif.check(images.SAMPLES[kind].generate(), recorded) == []


def test_an_absent_field_is_none() -> None:
    assert exif.check(images.plain_jpeg(), {}) == []


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("Canon", "Canon EOS R5", "Canon EOS R5"),
        ("NIKON CORPORATION", "NIKON Z 6", "NIKON CORPORATION NIKON Z 6"),
        ("Fuji\x00\x00  ", "X-T4  ", "Fuji X-T4"),
    ],
    ids=["model-repeats-make", "model-starts-otherwise", "padded"],
)
def test_the_camera_joining_rule(make: str, model: str, camera: str) -> None:
    assert exif.expected(exiftool.read(_jpeg(make, model)))["camera"] == camera


@pytest.mark.parametrize(
    ("wrong", "field"),
    [
        ({"camera": "Canon EOS R5"}, "camera"),
        ({"taken_at": "2024-05-17T14:32:10"}, "taken_at"),
        ({"orientation": 1}, "orientation"),
        ({"software": None}, "software"),
    ],
    ids=["wrong-camera", "wrong-time", "orientation-ignored", "software-dropped"],
)
def test_a_wrong_field_is_named(wrong: dict[str, Any], field: str) -> None:
    problems = exif.check(images.jpeg_with_exif_gps(), {**CAMERA, **wrong})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{field}: recorded"), problems


def test_metadata_of_another_upload_is_caught() -> None:
    assert exif.check(images.plain_jpeg(), CAMERA), "another image's camera passed"
