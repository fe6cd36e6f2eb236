"""The reference system's side of three upload promises: GIF XMP location removed, HEIC named, file count."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fixtures import images, promises
from imageflow.agents import validator
from imageflow.config import load as load_settings
from imageflow.dashboard.uploads import IncomingFile, Uploader
from imageflow.imaging import strip_gps
from imageflow.manifest import default as default_manifest

pytestmark = pytest.mark.system


def test_gif_xmp_naming_a_location_is_dropped_and_the_gif_still_decodes() -> None:
    data = images.gif_with_xmp_gps()
    cleaned, found = strip_gps(data)
    assert found
    assert b"GPSLatitude" not in cleaned
    assert images.XMP_TITLE.encode() not in cleaned
    with Image.open(io.BytesIO(cleaned)) as stripped, Image.open(io.BytesIO(data)) as original:
        assert stripped.size == original.size
        assert stripped.convert("RGB").tobytes() == original.convert("RGB").tobytes()


def test_gif_without_location_is_left_byte_for_byte() -> None:
    assert strip_gps(images.gif()) == (images.gif(), False)


@pytest.mark.parametrize("kind", ["heic", "avif"])
def test_iso_media_formats_are_refused_by_name(kind: str) -> None:
    expected = {f.kind: f.validator_reason for f in promises.REFUSED_FORMATS}[kind]
    assert validator.process(images.SAMPLES[kind].generate()).reason == expected


def test_a_request_past_the_file_count_is_refused_whole_before_anything_is_stored() -> None:
    manifest = default_manifest()
    uploader = Uploader(load_settings(manifest.dashboard, {}), manifest)
    files = [
        IncomingFile(f"photo-{i}.jpg", "image/jpeg", io.BytesIO(images.plain_jpeg()))
        for i in range(promises.MAX_FILES_PER_REQUEST + 1)
    ]
    # No emulator is configured here: a file that got as far as storage would fail loudly.
    accepted, refused = uploader.accept_all("someone", files)
    assert accepted == []
    assert [r.reason for r in refused] == [
        promises.TOO_MANY_FILES.format(name=f"photo-{i}.jpg") for i in range(len(files))
    ]
