"""The reference system's side of upload promises: GIF XMP location removed, HEIC named, file count, bytes."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from fixtures import images, promises
from fixtures.dashboard import FilePart, SignedIn, multipart
from imageflow.agents import validator
from imageflow.config import load as load_settings
from imageflow.dashboard.uploads import IncomingFile, Uploader
from imageflow.imaging import strip_gps
from imageflow.manifest import default as default_manifest


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


@pytest.mark.parametrize(("extra", "status"), [(0, 201), (1, 413)], ids=["at-the-limit", "one-byte-past"])
def test_a_request_of_exactly_the_byte_limit_is_read_under_a_server_that_ends_the_input(
    extra: int, status: int, signed_in_factory: Callable[..., SignedIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small per-file limit keeps the request limit (10 files + 1 MiB) cheap to reach exactly.
    monkeypatch.setenv("IMAGEFLOW_MAX_UPLOAD_BYTES", "1024")
    session = signed_in_factory()
    limit = 10 * 1024 + promises.REQUEST_OVERHEAD_BYTES
    good = FilePart("small.png", images.tiny_png(), "image/png")
    bare = len(multipart({}, [good, FilePart("padding.jpg", b"", "image/jpeg")])[0])
    body, content_type = multipart(
        {}, [good, FilePart("padding.jpg", b"\x00" * (limit + extra - bare), "image/jpeg")]
    )
    assert len(body) == limit + extra
    token = session.client.http.get("/api/session").get_json()["csrf_token"]
    response = session.client.http.post(
        "/api/uploads",
        data=body,
        content_type=content_type,
        headers={"X-CSRF-Token": token},
        # As waitress does: Werkzeug then reads to MAX_CONTENT_LENGTH instead of Content-Length.
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if status == 201:
        session.client.workflow_ids += [a["workflow_id"] for a in response.get_json()["accepted"]]
