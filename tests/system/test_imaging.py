"""strip_gps on real generated images: GPS gone, everything else kept, pixels untouched, garbage safe."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import ExifTags, Image

from fixtures import images
from imageflow.imaging import sniff_format, strip_gps

GPS = ExifTags.IFD.GPSInfo


def exif_of(data: bytes) -> Image.Exif:
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif()


def pixels_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.tobytes()


def entropy_coded_data(jpeg: bytes) -> bytes:
    """Everything from the JPEG's start-of-scan marker on: the compressed pixels."""
    pos = 2
    while jpeg[pos + 1] != 0xDA:
        (length,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        pos += 2 + length
    return jpeg[pos:]


@pytest.mark.parametrize("kind", ["jpeg_with_exif_gps", "png_with_exif_gps", "webp_with_exif_gps"])
def test_gps_is_removed_and_the_rest_of_the_exif_kept(kind: str) -> None:
    original = images.SAMPLES[kind].generate()
    assert GPS in exif_of(original), "fixture must carry GPS for this test to mean anything"

    cleaned, had_gps = strip_gps(original)

    assert had_gps is True
    exif = exif_of(cleaned)
    assert GPS not in exif
    assert exif.get_ifd(GPS) == {}
    assert exif[ExifTags.Base.Make] == images.CAMERA_MAKE
    assert exif[ExifTags.Base.Model] == images.CAMERA_MODEL
    assert exif[ExifTags.Base.Orientation] == images.ORIENTATION
    assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == images.TAKEN_AT
    assert sniff_format(cleaned) == sniff_format(original)


@pytest.mark.parametrize("kind", ["jpeg_with_exif_gps", "png_with_exif_gps", "webp_with_exif_gps"])
def test_pixels_are_identical_after_stripping(kind: str) -> None:
    original = images.SAMPLES[kind].generate()
    cleaned, _ = strip_gps(original)
    assert pixels_of(cleaned) == pixels_of(original)


def test_jpeg_is_not_re_encoded() -> None:
    original = images.jpeg_with_exif_gps()
    cleaned, _ = strip_gps(original)
    assert entropy_coded_data(cleaned) == entropy_coded_data(original)
    assert len(cleaned) < len(original)


def test_stripping_twice_finds_nothing_the_second_time() -> None:
    once, _ = strip_gps(images.jpeg_with_exif_gps())
    twice, had_gps = strip_gps(once)
    assert had_gps is False
    assert twice == once


@pytest.mark.parametrize(
    "kind",
    ["jpeg_with_exif_no_gps", "plain_jpeg", "png_with_alpha", "webp", "gif", "tiny_png", "large_jpeg"],
)
def test_images_without_gps_come_back_byte_identical(kind: str) -> None:
    original = images.SAMPLES[kind].generate()
    assert strip_gps(original) == (original, False)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",
        b"\xff\xd8\xff\xe1\x00",
        b"\xff\xd8\xff\xe1\xff\xff" + b"Exif\x00\x00",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\xffeXIf",
        b"RIFF\xff\xff\xff\xffWEBPEXIF\xff\xff\xff\xff",
        b"GIF89a",
        images.text_as_jpg(),
        images.svg(),
        images.html(),
        images.corrupt_jpeg(),
        bytes(range(256)) * 4,
    ],
    ids=lambda d: repr(d[:12]),
)
def test_garbage_is_returned_unchanged_without_raising(data: bytes) -> None:
    assert strip_gps(data) == (data, False)


def test_truncated_jpeg_with_gps_still_loses_its_gps() -> None:
    whole = images.jpeg_with_exif_gps()
    truncated = whole[: len(whole) * 2 // 3]
    cleaned, had_gps = strip_gps(truncated)
    assert had_gps is True
    assert GPS not in exif_of(cleaned)
    assert entropy_coded_data(cleaned) == entropy_coded_data(truncated)


def test_every_image_of_a_multi_picture_jpeg_loses_its_gps() -> None:
    # Phones write MPO files (a primary image plus embedded ones, e.g. HDR gain maps).
    frames = [images.photo(seed=n) for n in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:], exif=images.camera_exif())
    original = buffer.getvalue()

    cleaned, had_gps = strip_gps(original)

    assert had_gps is True
    with Image.open(io.BytesIO(cleaned)) as stripped, Image.open(io.BytesIO(original)) as source:
        assert stripped.n_frames == 3
        for index in range(3):
            stripped.seek(index)
            source.seek(index)
            assert GPS not in stripped.getexif(), f"frame {index} kept its GPS"
            assert stripped.getexif()[ExifTags.Base.Make] == images.CAMERA_MAKE
            assert stripped.tobytes() == source.tobytes(), f"frame {index} pixels changed"


def test_jpeg_with_trailing_data_that_looks_like_an_image_still_loses_its_gps() -> None:
    original = images.jpeg_with_exif_gps() + b"\xff\xd8\xff\xe1\x00"  # a broken "embedded image"
    cleaned, had_gps = strip_gps(original)
    assert had_gps is True
    assert GPS not in exif_of(cleaned)
    assert cleaned.endswith(b"\xff\xd8\xff\xe1\x00")


def test_xmp_packet_with_a_location_is_dropped_from_jpeg() -> None:
    xmp = (
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description "
        b'exif:GPSLatitude="52,30.98N" exif:GPSLongitude="13,22.66E"/></x:xmpmeta>'
    )
    plain = images.plain_jpeg()
    segment = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    with_xmp = plain[:2] + segment + plain[2:]

    cleaned, had_gps = strip_gps(with_xmp)

    assert had_gps is True
    assert b"GPSLatitude" not in cleaned
    assert cleaned == plain


def test_unparseable_exif_segment_is_dropped_whole() -> None:
    plain = images.plain_jpeg()
    broken = b"Exif\x00\x00" + b"XX" + b"\x00" * 20  # not a TIFF header
    segment = b"\xff\xe1" + struct.pack(">H", len(broken) + 2) + broken
    cleaned, had_gps = strip_gps(plain[:2] + segment + plain[2:])
    # GPS cannot be ruled out in what cannot be read, so it does not survive.
    assert had_gps is True
    assert cleaned == plain


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("plain_jpeg", "JPEG"), ("png_with_alpha", "PNG"), ("webp", "WEBP"), ("gif", "GIF"), ("svg", None)],
)
def test_sniff_format(kind: str, expected: str | None) -> None:
    assert sniff_format(images.SAMPLES[kind].generate()) == expected
