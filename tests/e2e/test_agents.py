"""What each agent wrote: thumbnail in storage, EXIF read, GPS nowhere, analysis and validator facts.

Uploads go through the JSON API (the browser adds nothing here); the witnesses are the workflow
document (admin read) and the objects in the bucket, decoded with Pillow.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import allure
import pytest
from google.cloud import storage
from PIL import ExifTags, Image, ImageOps
from pipeline_checks import completed, every_agent_once

from fixtures.firestore import WatchResult, WorkflowWatcher
from fixtures.images import (
    CAMERA_MAKE,
    CAMERA_MODEL,
    ORIENTATION,
    TAKEN_AT,
    ImageFile,
    MakeImage,
)
from fixtures.privacy import gps_leaks
from fixtures.reporting import labels
from fixtures.uploads import ApiSession, accepted_ids
from fixtures.users import TestUser
from imageflow.manifest import Manifest

THUMBNAIL_SIDE = 256
HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
HEX_HASH = re.compile(r"^[0-9a-fA-F]{16}$")


@dataclass(frozen=True)
class Processed:
    """One upload after the pipeline ran: who uploaded what, and the watch result."""

    user: TestUser
    image: ImageFile
    result: WatchResult

    @property
    def workflow_id(self) -> str:
        """The upload's workflow id."""
        return self.result.workflow_id

    @property
    def document(self) -> dict[str, Any]:
        """The final workflow document."""
        return self.result.document or {}


Process = Callable[[str], Processed]


@pytest.fixture
def process(
    new_user: TestUser,
    api_session: Callable[[TestUser], ApiSession],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> Process:
    """Factory: upload one generated image as a new user and wait until every agent ran once."""
    session = api_session(new_user)

    def run(kind: str) -> Processed:
        image = make_image(kind)
        response = session.upload([image.multipart()])
        assert response.status_code == 201, f"upload answered {response.status_code}: {response.text[:300]}"
        workflow_id = accepted_ids(response)[image.filename]
        result = completed(workflow_watcher, workflow_id)
        every_agent_once(result, pipeline_manifest)
        return Processed(new_user, image, result)

    return run


def _download(bucket: storage.Bucket, name: str) -> bytes:
    blob = bucket.blob(name)
    assert blob.exists(), f"object {name} is not in bucket {bucket.name}"
    return bytes(blob.download_as_bytes())


def _has_exif(image: Image.Image) -> bool:
    return bool(image.info.get("exif")) or len(image.getexif()) > 0


def _expected_thumbnail_size(original: bytes) -> tuple[int, int]:
    """Longest side 256 (never upscaled), after the EXIF orientation is applied."""
    with Image.open(io.BytesIO(original)) as source:
        upright = ImageOps.exif_transpose(source)
        width, height = upright.size
    scale = min(1.0, THUMBNAIL_SIDE / max(width, height))
    return round(width * scale), round(height * scale)


@pytest.mark.e2e
@pytest.mark.agent("thumbnailer")
@labels("Agents", "thumbnailer: thumbnail in storage, longest side 256", allure.severity_level.CRITICAL)
@pytest.mark.parametrize(("kind", "extension"), [("jpeg_with_exif_gps", "jpg"), ("large_jpeg", "jpg")])
def test_thumbnail_written_with_longest_side_256(
    kind: str, extension: str, process: Process, upload_bucket: storage.Bucket
) -> None:
    done = process(kind)
    output = done.result.output("thumbnailer")
    assert output["object"] == f"thumbnails/{done.user.uid}/{done.workflow_id}.{extension}"

    data = _download(upload_bucket, output["object"])
    with Image.open(io.BytesIO(data)) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert thumbnail.size == (output["width"], output["height"]), "recorded size differs from the file"
        assert max(thumbnail.size) == THUMBNAIL_SIDE
        expected = _expected_thumbnail_size(done.image.data)
        proportions = f"thumbnail {thumbnail.size} does not keep the upright proportions {expected}"
        assert abs(thumbnail.width - expected[0]) <= 1, proportions
        assert abs(thumbnail.height - expected[1]) <= 1, proportions
        assert not _has_exif(thumbnail), "the thumbnail carries EXIF"


@pytest.mark.e2e
@pytest.mark.agent("thumbnailer")
@labels("Agents", "thumbnailer: transparency kept as PNG", allure.severity_level.NORMAL)
def test_thumbnail_of_transparent_png_is_png_with_alpha(
    process: Process, upload_bucket: storage.Bucket
) -> None:
    done = process("png_with_alpha")
    output = done.result.output("thumbnailer")
    assert output["object"].endswith(f"/{done.workflow_id}.png")
    with Image.open(io.BytesIO(_download(upload_bucket, output["object"]))) as thumbnail:
        assert thumbnail.format == "PNG"
        assert "A" in thumbnail.getbands(), f"alpha lost: bands {thumbnail.getbands()}"
        assert thumbnail.size == (output["width"], output["height"]) == (256, 192)


@pytest.mark.e2e
@pytest.mark.agent("thumbnailer")
@labels("Agents", "thumbnailer: small images are not upscaled", allure.severity_level.NORMAL)
def test_thumbnail_of_tiny_image_keeps_its_size(process: Process, upload_bucket: storage.Bucket) -> None:
    done = process("tiny_png")
    output = done.result.output("thumbnailer")
    with Image.open(io.BytesIO(_download(upload_bucket, output["object"]))) as thumbnail:
        assert thumbnail.size == (output["width"], output["height"]) == (1, 1)


@pytest.mark.e2e
@pytest.mark.agent("exif")
@labels("Agents", "exif: camera, date taken and orientation read", allure.severity_level.CRITICAL)
def test_exif_reads_camera_date_taken_and_orientation(process: Process) -> None:
    output = process("jpeg_with_exif_gps").result.output("exif")
    assert output["camera"] == f"{CAMERA_MAKE} {CAMERA_MODEL}"
    date, _, time_of_day = TAKEN_AT.partition(" ")
    assert str(output["taken_at"]).startswith(f"{date.replace(':', '-')}T{time_of_day}"), output["taken_at"]
    assert output["orientation"] == ORIENTATION


@pytest.mark.e2e
@pytest.mark.agent("exif")
@labels("Agents", "exif: an image without EXIF is not an error", allure.severity_level.NORMAL)
def test_exif_of_image_without_metadata_records_nothing(process: Process) -> None:
    output = process("webp").result.output("exif")
    assert output.get("camera") is None
    assert output.get("taken_at") is None


@pytest.mark.e2e
@pytest.mark.agent("exif")
@labels(
    "Privacy",
    "GPS position absent from document, thumbnail and stored original",
    allure.severity_level.BLOCKER,
)
def test_gps_absent_from_workflow_document_thumbnail_and_stored_original(
    process: Process, upload_bucket: storage.Bucket
) -> None:
    done = process("jpeg_with_exif_gps")
    with allure.step("No GPS key or coordinate anywhere in the workflow document"):
        leaks = gps_leaks(done.document)
        assert not leaks, "the GPS position is in the workflow document at: " + "; ".join(leaks)
        assert done.document["image"]["gps_removed"] is True

    with allure.step("The stored original keeps its camera EXIF but has no GPS IFD"):
        original = _download(upload_bucket, done.document["image"]["object"])
        with Image.open(io.BytesIO(original)) as stored:
            exif = stored.getexif()
            assert not exif.get_ifd(ExifTags.IFD.GPSInfo), "the stored original still has a GPS IFD"
            assert ExifTags.IFD.GPSInfo not in exif, "the stored original still points to a GPS IFD"
            assert exif.get(ExifTags.Base.Make) == CAMERA_MAKE, "stripping GPS lost the rest of the EXIF"

    with allure.step("The thumbnail has no EXIF at all"):
        thumbnail = _download(upload_bucket, done.result.output("thumbnailer")["object"])
        with Image.open(io.BytesIO(thumbnail)) as small:
            assert not _has_exif(small)


@pytest.mark.e2e
@pytest.mark.agent("analysis")
@labels(
    "Agents", "analysis: dominant colours, perceptual hash and brightness", allure.severity_level.CRITICAL
)
def test_analysis_records_dominant_colours_phash_and_brightness(process: Process) -> None:
    output = process("jpeg_with_exif_gps").result.output("analysis")
    colours = output["dominant_colors"]
    assert isinstance(colours, list), colours
    assert 1 <= len(colours) <= 5, colours
    assert all(HEX_COLOUR.match(str(c)) for c in colours), colours
    assert HEX_HASH.match(str(output["phash"])), output["phash"]
    assert 0 < float(output["brightness"]) < 255, output["brightness"]


@pytest.mark.e2e
@pytest.mark.agent("analysis")
@labels("Agents", "analysis: values match a known image", allure.severity_level.NORMAL)
def test_analysis_of_single_red_pixel_is_red_with_matching_brightness(process: Process) -> None:
    output = process("tiny_png").result.output("analysis")
    assert [str(c).lower() for c in output["dominant_colors"]] == ["#ff0000"]
    # Luminance of pure red (ITU-R 601-2, as Pillow's "L" conversion): 0.299 * 255.
    assert abs(float(output["brightness"]) - 76.2) < 1.5, output["brightness"]


@pytest.mark.e2e
@pytest.mark.agent("validator")
@labels("Agents", "validator: facts of the stored original", allure.severity_level.CRITICAL)
@pytest.mark.parametrize(
    ("kind", "image_format", "size"),
    [("jpeg_with_exif_gps", "JPEG", (640, 480)), ("gif", "GIF", (200, 150)), ("webp", "WEBP", (500, 375))],
)
def test_validator_sha256_and_size_match_stored_original(
    kind: str, image_format: str, size: tuple[int, int], process: Process, upload_bucket: storage.Bucket
) -> None:
    done = process(kind)
    output = done.result.output("validator")
    stored = _download(upload_bucket, done.document["image"]["object"])
    assert output["sha256"] == hashlib.sha256(stored).hexdigest(), "sha256 is not that of the stored original"
    assert output["bytes"] == len(stored) == done.document["image"]["bytes"]
    assert output["format"] == image_format
    assert (output["width"], output["height"]) == size


@pytest.mark.e2e
@pytest.mark.agent("finalizer")
@labels("Agents", "finalizer: completes only after every dependency", allure.severity_level.CRITICAL)
def test_finalizer_completes_only_after_every_dependency_finished(
    process: Process, pipeline_manifest: Manifest
) -> None:
    done = process("webp")
    finalizer = pipeline_manifest.agent("finalizer")
    assert sorted(done.result.output("finalizer")["completed_steps"]) == sorted(finalizer.depends_on)
    finished = done.result.step("finalizer")["finished_at"]
    late = {
        name: done.result.step(name)["finished_at"]
        for name in finalizer.depends_on
        if done.result.step(name)["finished_at"] > finished
    }
    assert not late, f"the finalizer finished at {finished}, before its dependencies: {late}"
    assert done.document["completed_at"] >= max(
        done.result.step(n)["finished_at"] for n in finalizer.depends_on
    )
