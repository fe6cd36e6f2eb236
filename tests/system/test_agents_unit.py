"""The agents' business logic on real generated images, and the push envelope checks (no emulator)."""

from __future__ import annotations

import base64
import importlib
import io
import json
from typing import Any

import pytest
from flask import Flask
from PIL import ExifTags, Image

from fixtures import images
from imageflow import config, faults
from imageflow.agents import analysis, base, exif, finalizer, thumbnailer, validator
from imageflow.manifest import default as default_manifest

MANIFEST = default_manifest()
GOOD_KINDS = ["jpeg_with_exif_gps", "png_with_alpha", "webp", "gif", "large_jpeg", "tiny_png"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the push envelope ------------------------------------------------------------------------

GOOD_DATA = b64(json.dumps({"workflow_id": "wf-1", "owner": "u1", "bucket": "b", "object": "o"}).encode())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "request body is not a JSON object"),
        ([1, 2], "request body is not a JSON object"),
        ({}, "no Pub/Sub message in the envelope"),
        ({"message": "x"}, "no Pub/Sub message in the envelope"),
        ({"message": {}}, "the Pub/Sub message has no data"),
        ({"message": {"data": 5}}, "the Pub/Sub message has no data"),
        ({"message": {"data": "***"}}, "message data is not base64"),
        ({"message": {"data": b64(b"\xff\xfe")}}, "message data is not JSON"),
        ({"message": {"data": b64(b"{nope")}}, "message data is not JSON"),
        ({"message": {"data": b64(b"[1]")}}, "message data is not a JSON object"),
        ({"message": {"data": b64(b"{}")}}, "message data has no workflow_id"),
        ({"message": {"data": b64(b'{"workflow_id": 7}')}}, "message data has no workflow_id"),
        ({"message": {"data": b64(b'{"workflow_id": "a/b"}')}}, "workflow_id is not a valid workflow id"),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(body: object, reason: str) -> None:
    with pytest.raises(base.EnvelopeError) as caught:
        base.parse_envelope(body)
    assert str(caught.value) == reason


def test_a_good_envelope_is_decoded() -> None:
    delivery = base.parse_envelope(
        {
            "message": {"data": GOOD_DATA, "attributes": {"lane": "lane-ab12--"}, "messageId": "m1"},
            "deliveryAttempt": 2,
        }
    )
    assert delivery.workflow_id == "wf-1"
    assert delivery.message == {"workflow_id": "wf-1", "owner": "u1", "bucket": "b", "object": "o"}
    assert delivery.lane == "lane-ab12--"
    assert delivery.attempt == 2
    assert delivery.message_id == "m1"


def test_an_invalid_lane_attribute_is_ignored() -> None:
    delivery = base.parse_envelope(
        {"message": {"data": GOOD_DATA, "attributes": {"lane": "prod-topic/../x"}}}
    )
    assert delivery.lane == ""


def agent_settings(name: str, **env: str) -> config.Settings:
    environ = {"GOOGLE_CLOUD_PROJECT": "demo-imageflow", "IMAGEFLOW_BUCKET": "imageflow-uploads", **env}
    return config.load(MANIFEST.agent(name), environ)


@pytest.fixture(params=[spec.name for spec in MANIFEST.agents])
def agent_app(request: pytest.FixtureRequest) -> Flask:
    module = importlib.import_module(MANIFEST.agent(request.param).module)
    app: Flask = module.create_app(agent_settings(request.param))
    return app


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [(b"not json", "application/json"), (b"{}", "application/json"), (b"<html>", "text/html"), (b"", "")],
)
def test_every_agent_answers_a_malformed_push_with_400_json(
    agent_app: Flask, payload: bytes, content_type: str
) -> None:
    response = agent_app.test_client().post("/", data=payload, content_type=content_type)
    assert response.status_code == 400
    assert response.is_json
    assert isinstance(response.get_json()["error"], str)


def test_every_agent_has_health_and_readiness(agent_app: Flask) -> None:
    client = agent_app.test_client()
    assert client.get("/healthz").get_json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["ready"] is True


def test_an_agent_missing_settings_is_not_ready_and_refuses_pushes() -> None:
    app = validator.create_app(config.load(MANIFEST.agent("validator"), {}))
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "IMAGEFLOW_BUCKET" in ready.get_json()["message"]
    push = client.post("/", json=base.envelope({"workflow_id": "wf-1"}))
    assert push.status_code == 503
    assert push.is_json


def test_unknown_routes_answer_json_not_html(agent_app: Flask) -> None:
    response = agent_app.test_client().get("/nope")
    assert response.status_code == 404
    assert response.is_json


def test_never_fires_acknowledges_without_reading_anything() -> None:
    app = analysis.create_app(agent_settings("analysis", IMAGEFLOW_FAULTS="analysis.never_fires"))
    response = app.test_client().post("/", json=base.envelope({"workflow_id": "does-not-exist"}))
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "ignored"


# --- validator --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_validator_accepts_real_images(kind: str) -> None:
    data = images.SAMPLES[kind].generate()
    verdict = validator.process(data)
    assert verdict.accepted, verdict.reason
    with Image.open(io.BytesIO(data)) as image:
        assert (verdict.output["width"], verdict.output["height"]) == image.size
    assert verdict.output["bytes"] == len(data)
    assert len(verdict.output["sha256"]) == 64
    assert set(MANIFEST.agent("validator").outputs) <= set(verdict.output)


def test_validator_reports_format_and_frames() -> None:
    assert validator.process(images.gif()).output["frames"] == 2
    assert validator.process(images.gif()).output["format"] == "GIF"
    assert validator.process(images.webp()).output["format"] == "WEBP"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("decompression_bomb_png", "image is 900000000 pixels, over the limit of 40000000"),
        ("corrupt_jpeg", "file is truncated"),
        ("svg", "format SVG is not allowed"),
        ("html", "format HTML is not allowed"),
        ("text_as_jpg", "not a decodable image"),
        ("zero_bytes", "file is empty"),
        ("oversize_file", "file is 10485761 bytes, over the limit of 10485760"),
    ],
)
def test_validator_refuses_bad_input_with_a_clear_reason(kind: str, reason: str) -> None:
    verdict = validator.process(images.SAMPLES[kind].generate())
    assert verdict.accepted is False
    assert verdict.reason == reason


@pytest.mark.parametrize("variant", images.REFUSED_VARIANTS, ids=lambda v: v.name)
def test_validator_names_every_shape_of_a_refused_non_raster_format(variant: images.RefusedVariant) -> None:
    verdict = validator.process(variant.generate())
    assert (verdict.accepted, verdict.reason) == (False, variant.reason)


def _markup_at(start: int, fmt: str) -> bytes:
    """A variant whose root (SVG) or doctype (HTML) starts at byte `start`, after one comment."""
    comment = len(images.refused_variant(fmt, "comment", 0))
    body = images.SVG_BODY if fmt == "SVG" else b"<!doctype html>" + images.HTML_BODY
    return images.refused_variant(fmt, "comment", start - (comment - len(body)))


# The boundaries as promised, not read from the validator (a test that follows the constant moves with it).
SNIFF_WINDOW = 16 * 1024
PDF_WINDOW = 1024  # where a PDF's header may lie (PDF Reference 1.7, implementation note 13)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # The root's "<svg" ends on the window's last byte, then one byte past it.
        (_markup_at(SNIFF_WINDOW - len(b"<svg"), "SVG"), "format SVG is not allowed"),
        (_markup_at(SNIFF_WINDOW - len(b"<svg") + 1, "SVG"), "not a decodable image"),
        # The doctype's ">" on the window's last byte, then one byte past it.
        (
            _markup_at(SNIFF_WINDOW - len(b"<!doctype html>"), "HTML"),
            "format HTML is not allowed",
        ),
        (
            _markup_at(SNIFF_WINDOW - len(b"<!doctype html>") + 1, "HTML"),
            "not a decodable image",
        ),
        # "%PDF-" ends on the 1024th byte, then one byte later.
        (b"x" * (PDF_WINDOW - 5) + images.pdf(), "format PDF is not allowed"),
        (b"x" * (PDF_WINDOW - 4) + images.pdf(), "not a decodable image"),
    ],
    ids=["svg-inside", "svg-past", "html-inside", "html-past", "pdf-inside", "pdf-past"],
)
def test_validator_sniffs_markup_and_pdf_headers_up_to_its_window_and_not_past_it(
    data: bytes, reason: str
) -> None:
    assert validator._not_an_image_reason(data) == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # A comment quoting a doctype is no doctype: the root is <foo>, which names no format.
        (b"<!-- <!doctype html> --><foo/>", "not a decodable image"),
        (b"<!-- <svg> --><foo/>", "not a decodable image"),
        # A doctype after a comment still names the page.
        (b"<!-- a note --><!doctype html><foo/>", "format HTML is not allowed"),
        # An ISO media container recognised at byte 4 wins over a PDF header later in its first KiB.
        (images.heic()[:40] + b"%PDF-1.7" + images.heic()[40:], "format HEIC is not allowed"),
        (images.avif()[:40] + b"%PDF-1.7" + images.avif()[40:], "format AVIF is not allowed"),
    ],
    ids=["quoted-doctype", "quoted-svg", "doctype-after-comment", "heic-with-pdf", "avif-with-pdf"],
)
def test_validator_names_a_file_by_its_real_root_or_container(data: bytes, reason: str) -> None:
    assert validator.process(data).reason == reason


def test_validator_judges_by_content_not_by_name() -> None:
    bmp = io.BytesIO()
    images.photo((50, 40)).save(bmp, "BMP")
    assert validator.process(bmp.getvalue()).reason == "format BMP is not allowed"


def test_validator_pixel_limit_is_configurable() -> None:
    limits = validator.Limits(max_pixels=640 * 480 - 1)
    verdict = validator.process(images.plain_jpeg(), limits)
    assert verdict.reason == "image is 307200 pixels, over the limit of 307199"


def test_validator_refuses_an_animation_too_large_to_decode() -> None:
    frames = [images.photo((100, 100), seed=n).convert("P") for n in range(10)]
    animation = io.BytesIO()
    frames[0].save(animation, "GIF", save_all=True, append_images=frames[1:])
    # Each 10 000-pixel frame fits a 20 000 limit; 10 frames exceed the 4x budget of 80 000.
    verdict = validator.process(animation.getvalue(), validator.Limits(max_pixels=20_000))
    assert verdict.reason == "animation of 10 frames is too large to decode"
    assert validator.process(animation.getvalue(), validator.Limits(max_pixels=30_000)).accepted


def test_validator_limits_come_from_the_environment() -> None:
    env = {"IMAGEFLOW_MAX_UPLOAD_BYTES": "1000", "IMAGEFLOW_MAX_PIXELS": "oops"}
    assert validator.Limits.from_env(env) == validator.Limits(1000, validator.DEFAULT_MAX_PIXELS)


def test_validator_same_content_same_hash() -> None:
    first = validator.process(images.webp()).output["sha256"]
    assert first == validator.process(bytes(images.webp())).output["sha256"]
    assert first != validator.process(images.gif()).output["sha256"]


# --- thumbnailer ------------------------------------------------------------------------------


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("kind", "fmt", "size"),
    [
        ("jpeg_with_exif_gps", "JPEG", (192, 256)),  # orientation 6: upright is portrait
        ("png_with_alpha", "PNG", (256, 192)),
        ("webp", "JPEG", (256, 192)),
        ("gif", "JPEG", (200, 150)),  # smaller than 256: never enlarged
        ("large_jpeg", "JPEG", (256, 192)),
        ("tiny_png", "JPEG", (1, 1)),
    ],
)
def test_thumbnail_size_and_format(kind: str, fmt: str, size: tuple[int, int]) -> None:
    thumb = thumbnailer.process(images.SAMPLES[kind].generate())
    image = decode(thumb.data)
    assert image.format == fmt == thumb.format
    assert image.size == size == (thumb.width, thumb.height)
    assert max(image.size) <= thumbnailer.MAX_SIDE


def test_thumbnail_keeps_transparency() -> None:
    image = decode(thumbnailer.process(images.png_with_alpha()).data)
    assert image.mode == "RGBA"
    alpha = image.getchannel("A")
    assert alpha.getextrema() == (0, 255)


def test_thumbnail_carries_no_metadata() -> None:
    thumb = thumbnailer.process(images.jpeg_with_exif_gps())
    image = decode(thumb.data)
    assert dict(image.getexif()) == {}
    assert b"Exif" not in thumb.data[:200]
    assert b"ImageflowCam" not in thumb.data


def test_thumbnail_object_names() -> None:
    assert thumbnailer.object_name("uid1", "wf1", "png") == "thumbnails/uid1/wf1.png"


# --- exif -------------------------------------------------------------------------------------


def test_exif_summary_of_a_camera_photo() -> None:
    summary = exif.process(images.jpeg_with_exif_gps())
    assert summary == {
        "camera": f"{images.CAMERA_MAKE} {images.CAMERA_MODEL}",
        "taken_at": "2024-05-17T14:32:09",
        "orientation": 6,
        "software": images.SOFTWARE,
    }


@pytest.mark.parametrize("kind", ["jpeg_with_exif_gps", "png_with_exif_gps", "webp_with_exif_gps"])
def test_exif_never_reads_gps_even_when_present(kind: str) -> None:
    data = images.SAMPLES[kind].generate()
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo), "fixture must carry GPS"
    summary = exif.process(data)
    assert set(summary) == {"camera", "taken_at", "orientation", "software"}
    flat = json.dumps(summary).lower()
    for leaked in ("gps", "52.", "13."):
        assert leaked not in flat


@pytest.mark.parametrize("kind", ["plain_jpeg", "png_with_alpha", "gif", "tiny_png"])
def test_exif_summary_without_exif_is_all_none(kind: str) -> None:
    summary = exif.process(images.SAMPLES[kind].generate())
    assert summary == {"camera": None, "taken_at": None, "orientation": None, "software": None}


def test_exif_camera_does_not_repeat_the_make() -> None:
    assert exif._camera("Canon", "Canon EOS R5") == "Canon EOS R5"
    assert exif._camera(None, "X") == "X"
    assert exif._camera(None, None) is None


def test_exif_bad_dates_are_none() -> None:
    assert exif._iso("0000:00:00 00:00:00") is None
    assert exif._iso(b"2024:05:17 14:32:09\x00") == "2024-05-17T14:32:09"


def test_leaks_gps_fault_reads_the_position() -> None:
    leaked = exif.leaked_gps(images.jpeg_with_exif_gps())
    assert leaked == {"latitude": pytest.approx(52.516333), "longitude": pytest.approx(13.377639)}


# --- analysis ---------------------------------------------------------------------------------


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def reencoded(data: bytes, quality: int) -> bytes:
    out = io.BytesIO()
    decode(data).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_analysis_output_shape(kind: str) -> None:
    data = images.SAMPLES[kind].generate()
    result = analysis.process(data)
    assert set(MANIFEST.agent("analysis").outputs) <= set(result)
    assert 1 <= len(result["dominant_colors"]) <= 5
    assert all(len(c) == 7 and c.startswith("#") and int(c[1:], 16) >= 0 for c in result["dominant_colors"])
    assert len(result["phash"]) == 16
    assert 0 <= result["brightness"] <= 255
    with Image.open(io.BytesIO(data)) as image:
        assert (result["width"], result["height"]) == image.size


def test_phash_is_stable_and_perceptual() -> None:
    photo = images.plain_jpeg()
    first = analysis.process(photo)["phash"]
    assert analysis.process(photo)["phash"] == first
    assert hamming(first, analysis.process(reencoded(photo, 40))["phash"]) <= 4
    other = io.BytesIO()
    images.photo(seed=99).transpose(Image.Transpose.ROTATE_180).save(other, "JPEG")
    assert hamming(first, analysis.process(other.getvalue())["phash"]) >= 12


def test_brightness_and_colours_of_flat_images() -> None:
    white, black = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (64, 64), (255, 255, 255)).save(white, "PNG")
    Image.new("RGB", (64, 64), (0, 0, 0)).save(black, "PNG")
    assert analysis.process(white.getvalue())["brightness"] == 255
    assert analysis.process(white.getvalue())["dominant_colors"] == ["#ffffff"]
    assert analysis.process(black.getvalue())["brightness"] == 0


def test_dominant_colour_of_a_mostly_red_picture() -> None:
    picture = Image.new("RGB", (100, 100), (200, 20, 20))
    picture.paste((20, 20, 200), (0, 0, 100, 20))
    data = io.BytesIO()
    picture.save(data, "PNG")
    assert analysis.process(data.getvalue())["dominant_colors"][:2] == ["#c81414", "#1414c8"]


# --- finalizer and faults ---------------------------------------------------------------------


def test_finalizer_missing_dependencies() -> None:
    document: dict[str, Any] = {"steps": {"a": {"status": "done"}, "b": {"status": "running"}}}
    assert finalizer.missing_dependencies(document, ["a", "b", "c"]) == ["b", "c"]


def test_fault_catalogue_covers_every_manifest_agent() -> None:
    for agent in MANIFEST.agent_names:
        for fault in faults.GENERIC_FAULTS:
            assert f"{agent}.{fault}" in faults.FAULTS
    for name in ("finalizer.early", "thumbnailer.not_written", "exif.leaks_gps", "validator.accepts_bad"):
        assert name in faults.FAULTS
    assert all(isinstance(text, str) and text for text in faults.FAULTS.values())


def test_unknown_fault_names_are_detected() -> None:
    assert faults.unknown({"exif.errors", "exif.eror", "nobody.slow"}, MANIFEST.agent_names) == [
        "exif.eror",
        "nobody.slow",
    ]


def test_faults_are_refused_on_staging() -> None:
    with pytest.raises(config.ConfigError):
        agent_settings("exif", IMAGEFLOW_ENV="staging", IMAGEFLOW_FAULTS="exif.errors")


# --- unusual but valid images -----------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def unusual_images() -> dict[str, bytes]:
    base = images.photo((300, 200))
    sixteen = base.convert("L").convert("I").point(lambda v: v * 256).convert("I;16")
    return {
        "png-16-bit-grey": encode(sixteen, "PNG"),
        "png-grey-alpha-opaque": encode(base.convert("LA"), "PNG"),
        "png-1-bit": encode(base.convert("1"), "PNG"),
        "png-palette": encode(base.convert("P"), "PNG"),
        "jpeg-grey": encode(base.convert("L"), "JPEG"),
        "jpeg-cmyk": encode(base.convert("CMYK"), "JPEG"),
        "webp-lossless": encode(base, "WEBP", lossless=True),
        "webp-animated": encode(base, "WEBP", save_all=True, append_images=[base.rotate(180)], duration=100),
        "apng": encode(base, "PNG", save_all=True, append_images=[base.rotate(180)]),
        "wide-5000x1": encode(Image.new("RGB", (5000, 1), (10, 20, 30)), "PNG"),
    }


UNUSUAL = unusual_images()


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_every_agent_handles_unusual_valid_images(name: str) -> None:
    data = UNUSUAL[name]
    assert validator.process(data).accepted
    thumb = thumbnailer.process(data)
    # Opaque pictures of any mode become JPEG thumbnails of the photo, not a blank page.
    assert thumb.format == "JPEG"
    assert max(thumb.width, thumb.height) == 256
    assert exif.process(data)["camera"] is None
    result = analysis.process(data)
    assert 10 < result["brightness"] < 250, result


def test_sixteen_bit_images_are_scaled_not_clipped() -> None:
    photo_brightness = analysis.process(UNUSUAL["jpeg-grey"])["brightness"]
    assert analysis.process(UNUSUAL["png-16-bit-grey"])["brightness"] == pytest.approx(
        photo_brightness, abs=2
    )
