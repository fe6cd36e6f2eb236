"""The location-leak oracle: every container of every format searched, every form of the position found.

Each image hides the fixture's position in one container; the oracle must name it, through exiftool
and through its own walk of the bytes, and must stay silent on the same image without it.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import allure
import pytest
from PIL import PngImagePlugin

from fixtures import images
from fixtures.reporting import EPIC
from oracles import exiftool
from oracles.privacy import Position, blob_leaks, container_leaks, document_leaks, text_leaks

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Oracles: location privacy"),
    pytest.mark.skipif(not exiftool.available(), reason=exiftool.INSTALL_HINT),
]

POSITION = Position(images.GPS_LATITUDE, images.GPS_LONGITUDE)
IN_TEXT = "taken at 52.516333, 13.377639 (Pariser Platz)"

# Timestamps whose digits spell the fixture's raw seconds (58.8) and both rounded coordinates.
TIMES = [
    datetime(2026, 11, 30, 13, 42, 58, 809905, tzinfo=UTC),
    datetime(2026, 11, 30, 9, 1, 52, 516333, tzinfo=UTC),
    datetime(2026, 11, 30, 9, 1, 13, 377639, tzinfo=UTC),
]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png_with_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG photo with one extra chunk before IEND."""
    buffer = io.BytesIO()
    images.photo((64, 48)).save(buffer, "PNG")
    data = buffer.getvalue()
    return data[:-12] + _png_chunk(kind, body) + data[-12:]


def _jpeg_with_segment(marker: int, body: bytes) -> bytes:
    data = images.plain_jpeg()
    return data[:2] + bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body + data[2:]


def _raw_profile_exif() -> bytes:
    """ImageMagick's zTXt "Raw profile type exif": the GPS EXIF as hex lines."""
    payload = images.camera_exif().tobytes()  # "Exif\0\0" and the TIFF payload
    hexed = payload.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    text = f"\nexif\n{len(payload):8d}\n{lines}\n".encode()
    return _png_with_chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(text))


def _png_ztxt_comment() -> bytes:
    return _png_with_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(IN_TEXT.encode()))


def _png_itxt_compressed_xmp() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", images.xmp_packet(with_gps=True).decode(), zip=True)
    buffer = io.BytesIO()
    images.photo((64, 48)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _jpeg_iptc_caption() -> bytes:
    caption = IN_TEXT.encode()
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption
    iptc += b"\x00" * (len(iptc) % 2)
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    return _jpeg_with_segment(0xED, b"Photoshop 3.0\x00" + resource)


def _webp_exif_gps() -> bytes:
    return images.webp_with_exif_gps()


HIDDEN: dict[str, Callable[[], bytes]] = {
    "jpeg-exif-gps-ifd": images.jpeg_with_exif_gps,
    "png-exif-gps-ifd": images.png_with_exif_gps,
    "webp-exif-gps-ifd": _webp_exif_gps,
    "jpeg-xmp": images.jpeg_with_xmp_gps,
    "png-itxt-xmp": images.png_with_xmp_gps,
    "png-itxt-compressed-xmp": _png_itxt_compressed_xmp,
    "webp-xmp": images.webp_with_xmp_gps,
    "gif-xmp": images.gif_with_xmp_gps,
    "jpeg-iptc-caption": _jpeg_iptc_caption,
    "jpeg-comment": lambda: _jpeg_with_segment(0xFE, IN_TEXT.encode()),
    "jpeg-after-eoi": lambda: images.plain_jpeg() + IN_TEXT.encode(),
    "png-text": lambda: _png_with_chunk(b"tEXt", b"Comment\x00" + IN_TEXT.encode()),
    "png-ztxt": _png_ztxt_comment,
    "png-raw-profile-exif": _raw_profile_exif,
}
CLEAN: dict[str, Callable[[], bytes]] = {
    "jpeg-camera-exif": images.jpeg_with_exif_no_gps,
    "jpeg-xmp": images.jpeg_with_xmp,
    "jpeg-iptc": images.jpeg_with_iptc,
    "png-text": images.png_with_text,
    "png-alpha": images.png_with_alpha,
    "webp": images.webp,
    "gif": images.gif,
    "grace-hopper": lambda: images.matplotlib_sample("grace_hopper.jpg"),
}


@pytest.mark.parametrize("make", HIDDEN.values(), ids=HIDDEN.keys())
def test_the_position_is_found_in_every_container(make: Callable[[], bytes]) -> None:
    data = make()
    assert blob_leaks(data, POSITION), "the hidden position went unnoticed"
    # The own walk alone finds it too: exiftool is a second opinion, not the only one.
    assert container_leaks(data, POSITION), "the container walk missed the hidden position"


@pytest.mark.parametrize("make", CLEAN.values(), ids=CLEAN.keys())
def test_an_image_without_location_has_no_leak(make: Callable[[], bytes]) -> None:
    assert blob_leaks(make(), POSITION) == []


def test_a_leak_names_its_container() -> None:
    leaks = container_leaks(_raw_profile_exif(), POSITION)
    assert any("Raw profile type exif" in leak and "GPS IFD with 6 entries" in leak for leak in leaks), leaks


def test_a_container_too_broken_to_walk_is_not_called_clean() -> None:
    data = images.jpeg_with_exif_gps()
    leaks = container_leaks(data[:300], POSITION)
    assert any("cannot rule out" in leak for leak in leaks), leaks


@pytest.mark.parametrize(
    "document",
    [
        {"steps": {"analysis": {"finished_at": TIMES[0]}}, "events": [{"at": TIMES[0]}]},
        {"events": [{"at": t} for t in TIMES]},
        {"steps": {"exif": {"output": {"taken_at": "2026-11-30T13:42:58.809905"}}}},
        {"steps": {"exif": {"output": {"note": "finished 09:01:52.516333, then 09:01:13.377639"}}}},
        {"image": {"gps_removed": True, "width": 640, "height": 480, "brightness": 58.8}},
        {"sizes": [52, 30, 58]},
    ],
    ids=["timestamp-58.8", "times-like-coordinates", "iso-time", "clock-times", "allowed", "near-triple"],
)
def test_no_leak_is_reported_in_a_clean_document(document: dict[str, Any]) -> None:
    assert document_leaks(document, POSITION) == []


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"steps": {"exif": {"output": {"gps": {"latitude": 52.5163}}}}}, "steps.exif.output.gps"),
        ({"output": {"GPSInfo": "present"}}, "output.GPSInfo"),
        ({"output": {"latitude": 52.516333}}, "output.latitude"),
        ({"output": {"where": "52.52, 13.38"}}, "output.where"),
        ({"output": {"lon": -13.378}}, "output.lon"),
        ({"output": {"position": [52.0, 30.0, 58.8]}}, "output.position"),
        ({"output": {"position": "13 deg 22' 39.5\" E"}}, "output.position"),
        ({"output": {"xmp": "52,30.98N"}}, "output.xmp"),
    ],
    ids=[
        "gps-key",
        "gps-key-case",
        "decimal",
        "rounded-in-text",
        "negative",
        "raw-triple",
        "raw-in-text",
        "degrees-decimal-minutes",
    ],
)
def test_every_form_of_the_position_is_found_with_its_path(document: dict[str, Any], where: str) -> None:
    leaks = document_leaks(document, POSITION)
    assert leaks, f"the position in {document} went unnoticed"
    assert leaks[0].startswith(f"{where} = "), leaks


def test_an_identifier_that_spells_gps_is_not_a_leak_and_hides_nothing_beside_it() -> None:
    uid = "VwpSPTuYQgPSeMSTufRtuvRXQO3c"  # an Auth uid seen in a run: "gPS"
    document = {"owner": uid, "image": {"object": f"originals/{uid}/photo.jpg"}}
    assert document_leaks(document, POSITION, identifiers=(uid,)) == []
    assert [leak.split(" = ")[0] for leak in document_leaks(document, POSITION)] == ["owner", "image.object"]
    planted = {"owner": uid, "where": f"{uid} 52.5163, 13.3777"}
    found = document_leaks(planted, POSITION, identifiers=(uid,))
    assert [leak.split(" = ")[0] for leak in found] == ["where"]
    assert text_leaks(f"<td>{uid}</td><td>52.5163</td>", POSITION, "page", identifiers=(uid,))


def test_a_page_is_read_line_by_line() -> None:
    page = "<html>\n<p>uploaded 2026-11-30 13:42:58.809905</p>\n<td data-lat='52.5163'>x</td>\n</html>"
    assert text_leaks(page, POSITION, "page") == ["page line 3: <td data-lat='52.5163'>x</td>"]
