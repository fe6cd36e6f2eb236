"""Image byte helpers shared by the dashboard and the agents: format sniffing and GPS removal.

strip_gps works on the container (JPEG segments, PNG chunks, WebP RIFF chunks, GIF extensions) rather than
re-encoding pixels, so the stored original is pixel-identical to the upload minus its location.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator

from PIL import ExifTags, Image

log = logging.getLogger(__name__)

EXIF_PREFIX = b"Exif\x00\x00"
JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GPS_TAG = ExifTags.IFD.GPSInfo
# XMP can repeat the location (exif:GPSLatitude...); such packets are dropped whole.
XMP_GPS_MARKERS = (b"GPSLatitude", b"GPSLongitude", b"GPSCoordinates")
XMP_JPEG_IDS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
PNG_RAW_EXIF_KEYS = (b"Raw profile type exif", b"Raw profile type APP1")
# JPEG markers that stand alone, without a length field.
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
JPEG_SOS = 0xDA
JPEG_EOI = 0xD9
WEBP_FLAG_EXIF = 0x08
WEBP_FLAG_XMP = 0x04
GIF_XMP_APPLICATION = b"XMP DataXMP"


def sniff_format(data: bytes) -> str | None:
    """The image container named by the leading bytes ("JPEG", "PNG", "WEBP", "GIF"), else None."""
    if data.startswith(JPEG_SOI):
        return "JPEG"
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def eight_bit(image: Image.Image) -> Image.Image:
    """The image with 8-bit channels: 16/32-bit greyscale is scaled down, not clipped to white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        wide = image.convert("I") if image.mode != "F" else image
        _, high = wide.getextrema()
        scale = 1 / 256 if isinstance(high, int | float) and high > 255 else 1
        return wide.point(lambda value: value * scale).convert("L")
    return image


def has_transparency(image: Image.Image) -> bool:
    """True when some pixel is not fully opaque (an alpha band or a transparent palette entry)."""
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in image.info:
        return False
    low = image.convert("RGBA").getchannel("A").getextrema()[0]
    return isinstance(low, int | float) and low < 255


def strip_gps(data: bytes) -> tuple[bytes, bool]:
    """Remove GPS EXIF (and XMP location) from an image; returns (new bytes, whether GPS was present).

    Anything that is not a recognisable JPEG/PNG/WebP, or that has no GPS, comes back unchanged;
    garbage never raises (the validator judges content later).
    """
    try:
        kind = sniff_format(data)
        if kind == "JPEG":
            return _strip_jpeg(data)
        if kind == "PNG":
            return _strip_png(data)
        if kind == "WEBP":
            return _strip_webp(data)
        if kind == "GIF":
            return _strip_gif(data)
    except Exception as exc:  # garbage must never raise; anything unwalkable stays as is
        # A container too broken to walk cannot be cleaned; the validator will reject it.
        log.info("strip_gps: container not walkable (%s), left unchanged", type(exc).__name__)
    return data, False


def _clean_exif(payload: bytes) -> tuple[bytes | None, bool]:
    """The EXIF payload without its GPS IFD (same prefix convention), or None to drop it whole."""
    exif = Image.Exif()
    try:
        exif.load(payload)
    except Exception:  # Pillow raises many types on bad TIFF; GPS cannot be ruled out
        return None, True
    if GPS_TAG not in exif:
        return payload, False
    del exif[GPS_TAG]
    # get_ifd caches sub-IFDs and tobytes re-adds cached ones that were deleted from the root.
    getattr(exif, "_ifds", {}).pop(GPS_TAG, None)
    try:
        cleaned = exif.tobytes()
    except Exception:  # an IFD Pillow cannot write back: keep nothing rather than GPS
        return None, True
    if not payload.startswith(EXIF_PREFIX):
        cleaned = cleaned[len(EXIF_PREFIX) :]
    return cleaned, True


def _has_xmp_gps(packet: bytes) -> bool:
    return any(marker in packet for marker in XMP_GPS_MARKERS)


# --- JPEG -------------------------------------------------------------------------------------


def _strip_jpeg(data: bytes) -> tuple[bytes, bool]:
    """The primary image's header is rewritten; embedded images (MPO, gain maps) keep their sizes."""
    out, found, pos = _clean_jpeg_header(data, 0, keep_size=False)
    while True:
        # FF D8 FF cannot occur in entropy-coded data (FF is always stuffed there), so each hit is
        # the start of an embedded image, or of opaque trailer data where a parse simply fails.
        following = data.find(JPEG_SOI + b"\xff", pos)
        if following < 0:
            out += data[pos:]
            break
        out += data[pos:following]
        try:
            header, had_gps, end = _clean_jpeg_header(data, following, keep_size=True)
        except (ValueError, IndexError, struct.error):
            out += data[following : following + 2]
            pos = following + 2
            continue
        out += header
        found |= had_gps
        pos = end
    if not found:
        return data, False
    return bytes(out), True


def _clean_jpeg_header(data: bytes, start: int, keep_size: bool) -> tuple[bytearray, bool, int]:
    """Rewrite one image's marker segments from its SOI up to its scan data.

    Returns (header bytes, whether GPS was found, where the copy continues). With keep_size every
    segment keeps its length (zero padding), so offsets into the file (the MPO index) stay valid.
    """
    if data[start : start + 2] != JPEG_SOI:
        raise ValueError("JPEG SOI expected")
    out = bytearray(JPEG_SOI)
    found = False
    pos = start + 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError("JPEG marker expected")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in JPEG_STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if marker in (JPEG_SOS, JPEG_EOI):
            # Entropy-coded data (the pixels) is copied as is by the caller.
            out += bytes((0xFF, marker))
            return out, found, pos
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > len(data):
            raise ValueError("JPEG segment overruns the file")
        body = data[pos + 2 : pos + length]
        pos += length
        replacement: bytes | None = body
        if marker == 0xE1 and body.startswith(EXIF_PREFIX):
            replacement, had_gps = _clean_exif(body)
            found |= had_gps
        elif marker == 0xE1 and body.startswith(XMP_JPEG_IDS) and _has_xmp_gps(body):
            replacement, found = None, True
        if replacement is not None and len(replacement) + 2 > 0xFFFF:
            replacement = None
        if keep_size:
            # A dropped segment becomes an anonymous APP1 of zeros that readers skip.
            filler = bytes(len(body) - len(replacement)) if replacement is not None else bytes(len(body))
            replacement = (replacement or b"") + filler
        if replacement is None:
            continue
        out += bytes((0xFF, marker)) + struct.pack(">H", len(replacement) + 2) + replacement
    return out, found, pos


# --- PNG --------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(type, body, raw chunk bytes) for each chunk after the signature."""
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("PNG chunk overruns the file")
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length], data[pos:end]
        pos = end
        if kind == b"IEND":
            break


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png_text(kind: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk."""
    keyword, _, rest = body.partition(b"\x00")
    if kind == b"zTXt":
        return keyword, zlib.decompress(rest[1:])
    if kind == b"iTXt":
        compressed, rest = rest[0], rest[2:]
        _language, _, rest = rest.partition(b"\x00")
        _translated, _, text = rest.partition(b"\x00")
        return keyword, zlib.decompress(text) if compressed else text
    return keyword, rest


def _raw_profile_has_gps(text: bytes) -> bool:
    """Whether an ImageMagick "Raw profile type exif" text (hex after a header) holds GPS."""
    lines = text.strip().split(b"\n")
    try:
        payload = bytes.fromhex(b"".join(lines[2:]).decode("ascii"))
    except ValueError:
        return True
    start = payload.find(b"MM\x00*")
    start = payload.find(b"II*\x00") if start < 0 else start
    cleaned, had_gps = _clean_exif(payload[start:] if start >= 0 else payload)
    return had_gps or cleaned is None


def _strip_png(data: bytes) -> tuple[bytes, bool]:
    out = bytearray(PNG_SIGNATURE)
    found = False
    for kind, body, raw in _png_chunks(data):
        if kind == b"eXIf":
            cleaned, had_gps = _clean_exif(body)
            found |= had_gps
            if cleaned is not None:
                out += _png_chunk(kind, cleaned) if had_gps else raw
            continue
        if kind in PNG_TEXT_CHUNKS:
            keyword, text = _png_text(kind, body)
            if keyword in PNG_RAW_EXIF_KEYS and _raw_profile_has_gps(text):
                found = True
                continue
            if keyword == b"XML:com.adobe.xmp" and _has_xmp_gps(text):
                found = True
                continue
        out += raw
    if not found:
        return data, False
    return bytes(out), True


# --- WebP -------------------------------------------------------------------------------------


def _strip_webp(data: bytes) -> tuple[bytes, bool]:
    chunks: list[tuple[bytes, bytes]] = []
    found = False
    pos = 12
    end_of_riff = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end_of_riff:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        if len(body) != size:
            raise ValueError("WebP chunk overruns the file")
        pos += 8 + size + (size & 1)
        if kind == b"EXIF":
            cleaned, had_gps = _clean_exif(body)
            found |= had_gps
            if cleaned is None:
                continue
            body = cleaned
        elif kind == b"XMP " and _has_xmp_gps(body):
            found = True
            continue
        chunks.append((kind, body))
    if not found:
        return data, False
    kinds = {kind for kind, _ in chunks}
    payload = bytearray(b"WEBP")
    for kind, body in chunks:
        if kind == b"VP8X":
            # The feature flags must not announce a chunk that was dropped.
            flags = body[0]
            if b"EXIF" not in kinds:
                flags &= ~WEBP_FLAG_EXIF
            if b"XMP " not in kinds:
                flags &= ~WEBP_FLAG_XMP
            body = bytes((flags,)) + body[1:]
        payload += kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")
    return b"RIFF" + struct.pack("<I", len(payload)) + bytes(payload), True


# --- GIF --------------------------------------------------------------------------------------


def _gif_sub_blocks_end(data: bytes, pos: int) -> int:
    """Where a run of GIF data sub-blocks ends (just past its zero-length terminator)."""
    while True:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
        if pos > len(data):
            raise ValueError("GIF sub-block overruns the file")


def _strip_gif(data: bytes) -> tuple[bytes, bool]:
    """Drop XMP application extensions that name a location (GIF has no EXIF)."""
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)
    out = bytearray(data[:pos])
    found = False
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            break
        start = pos
        if introducer == 0x21:
            label = data[pos + 1]
            end = _gif_sub_blocks_end(data, pos + 2)
            # An application extension's first sub-block is its 11-byte identifier; XMP's raw packet
            # follows with a "magic trailer" that makes it walk like sub-blocks.
            is_xmp = label == 0xFF and data[pos + 2] == 11 and data[pos + 3 : pos + 14] == GIF_XMP_APPLICATION
            if is_xmp and _has_xmp_gps(data[start:end]):
                found = True
                pos = end
                continue
        elif introducer == 0x2C:
            local = data[pos + 9]
            pos += 10 + (3 * 2 ** ((local & 0x07) + 1) if local & 0x80 else 0)
            end = _gif_sub_blocks_end(data, pos + 1)  # after the LZW minimum code size
        else:
            raise ValueError("GIF block expected")
        out += data[start:end]
        pos = end
    if not found:
        return data, False
    return bytes(out + data[pos:]), True
