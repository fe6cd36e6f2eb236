"""The one location-leak finder: GPS in image bytes (every container), documents, API JSON and pages.

A blob is read twice: by exiftool (every tag it knows, GPS groups and coordinates in any value) and
by this module's own walk of the container (JPEG segments, PNG chunks, WebP chunks, GIF extensions,
bytes after the end), which decodes what exiftool may not: EXIF GPS IFDs in TIFF payloads, XMP, IPTC,
PNG text (zTXt is zlib, iTXt may be), ImageMagick's hex "Raw profile type exif/APP1", comments.
Text is judged by the numbers in it, never by substrings: a clock time 13:42:58.809905 is a time
(its "58.8" is not the position's seconds), a size 52 is not a latitude. Identifiers the system made
up (an account's uid, a workflow id) are blanked before a value is read: a random uid can spell
"gPS" or carry digits that read as a position.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from oracles import exiftool
from oracles.formats import GIF_EXTENSION, GIF_TRAILER, PNG_SIGNATURE, gif_blocks, sniff

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# A clock time inside a string ("13:42:52.516") is a time, never a position: dropped before numbers are read.
CLOCK_TIME = re.compile(r"\d{1,2}:\d{2}:\d{2}(?:\.\d+)?")
# A position rounded to two decimals (52.52, 13.38) still counts as the position (about 500 m).
DEGREE_TOLERANCE = 0.005
ALLOWED_KEYS = frozenset({"gps_removed"})
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
TIFF_GPS_POINTER = 0x8825
# Chunks and segments that hold pixels, never metadata: not read as text.
PIXEL_CHUNKS = frozenset({b"IDAT", b"fdAT", b"VP8 ", b"VP8L", b"ALPH", b"ANMF"})
PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
TEXT_SNIPPET = 120


@dataclass(frozen=True)
class Position:
    """A known location as EXIF writes it: degrees, minutes, seconds of latitude and longitude."""

    latitude: tuple[float, float, float]
    longitude: tuple[float, float, float]

    @property
    def degrees(self) -> tuple[float, float]:
        """Latitude and longitude in decimal degrees."""
        return decimal_degrees(self.latitude), decimal_degrees(self.longitude)


def decimal_degrees(dms: Sequence[float]) -> float:
    """Degrees, minutes, seconds as one decimal number of degrees."""
    return dms[0] + dms[1] / 60 + dms[2] / 3600


def names_position(numbers: Sequence[float], position: Position) -> bool:
    """True when the numbers hold the position: decimal degrees, its raw DMS triple, or degrees and
    decimal minutes (XMP writes "52,30.98N")."""
    targets = position.degrees
    if any(abs(abs(n) - t) <= DEGREE_TOLERANCE for n in numbers for t in targets):
        return True
    triples = {tuple(numbers[i : i + 3]) for i in range(len(numbers) - 2)}
    if position.latitude in triples or position.longitude in triples:
        return True
    return any(
        d.is_integer() and not m.is_integer() and 0 <= m < 60 and abs(abs(d) + m / 60 - t) <= DEGREE_TOLERANCE
        for d, m in itertools.pairwise(numbers)
        for t in targets
    )


def text_names_position(text: str, position: Position) -> bool:
    """True when the numbers written in the text hold the position (clock times are not read)."""
    return names_position([float(n) for n in NUMBER.findall(CLOCK_TIME.sub(" ", text))], position)


def document_leaks(
    value: object, position: Position, path: str = "", identifiers: Collection[str] = ()
) -> list[str]:
    """Every place in a document (JSON-like) where a GPS key or the position appears, as `path = value`."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "gps" in str(key).lower() and key not in ALLOWED_KEYS:
                found.append(f"{where} = {item!r}"[:200])
            found.extend(document_leaks(item, position, where, identifiers))
    elif isinstance(value, list | tuple):
        numbers = [float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(value) and names_position(numbers, position):
            found.append(f"{path} = {value!r}"[:200])
        else:
            for index, item in enumerate(value):
                found.extend(document_leaks(item, position, f"{path}[{index}]", identifiers))
    elif not isinstance(value, datetime):  # a timestamp's digits once read as "58.8": 13:42:58.809905
        text = _blank(json.dumps(value, default=str), identifiers)
        if "gps" in text.lower() or text_names_position(text, position):
            found.append(f"{path} = {text}"[:200])
    return found


def text_leaks(
    text: str, position: Position, where: str = "text", identifiers: Collection[str] = ()
) -> list[str]:
    """Every line of a text (a page's HTML, a log) whose numbers hold the position."""
    return [
        f"{where} line {number}: {line.strip()[:TEXT_SNIPPET]}"
        for number, line in enumerate(text.splitlines(), start=1)
        if text_names_position(_blank(line, identifiers), position)
    ]


def _blank(text: str, identifiers: Collection[str]) -> str:
    """The text with every identifier replaced by a space, so its letters and digits are not read."""
    for identifier in identifiers:
        if identifier:
            text = text.replace(identifier, " ")
    return text


def blob_leaks(data: bytes, position: Position) -> list[str]:
    """Every place in an image file where location data is: exiftool's reading and the own walk."""
    return exiftool_leaks(data, position) + container_leaks(data, position)


def exiftool_leaks(data: bytes, position: Position) -> list[str]:
    """GPS tags (any group) and tags whose value holds the position, as exiftool reads the file."""
    found = []
    for group, name, value in exiftool.read(data).metadata():
        text = json.dumps(value) if not isinstance(value, str) else value
        if group == "GPS" or "gps" in name.lower() or text_names_position(text, position):
            found.append(f"exiftool {group}:{name} = {text[:TEXT_SNIPPET]}")
    return found


def container_leaks(data: bytes, position: Position) -> list[str]:
    """The own walk: each metadata part of the container, decoded, judged for GPS and the position."""
    found = []
    for where, kind, payload in metadata_parts(data):
        if kind == "broken":
            found.append(f"{where}: too broken to walk ({payload.decode()}), cannot rule out a location")
            continue
        if kind == "tiff":
            found += [f"{where}: {problem}" for problem in tiff_gps(payload)]
        text = payload.decode("latin-1")
        if kind == "xmp" and re.search(r"GPS(Latitude|Longitude|Coordinates|Position)", text):
            found.append(f"{where}: XMP names a GPS property")
        if text_names_position(text, position):
            found.append(f"{where}: holds the position in text")
    return found


# --- the container walk ------------------------------------------------------------------------

Part = tuple[str, str, bytes]  # (where, kind: tiff / xmp / text / broken, payload)


def metadata_parts(data: bytes) -> Iterator[Part]:
    """Every metadata payload of the container, decoded; a broken container yields what it can."""
    kind = sniff(data)
    try:
        if kind == "JPEG":
            yield from _jpeg_parts(data, "JPEG")
        elif kind == "PNG":
            yield from _png_parts(data)
        elif kind == "WEBP":
            yield from _webp_parts(data)
        elif kind == "GIF":
            yield from _gif_parts(data)
        else:
            yield "file", "text", data
    except (IndexError, ValueError, struct.error, zlib.error) as exc:
        yield f"{kind} container", "broken", type(exc).__name__.encode()


def _classify(body: bytes) -> str:
    if any(body.find(header) >= 0 for header in TIFF_HEADERS) and (
        body.startswith(b"Exif") or body.startswith(TIFF_HEADERS)
    ):
        return "tiff"
    if b"<x:xmpmeta" in body or b"http://ns.adobe.com/xap/1.0/" in body or b"<rdf:RDF" in body:
        return "xmp"
    return "text"


def _jpeg_parts(data: bytes, where: str) -> Iterator[Part]:
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD9:  # end of image: what follows is a trailer or further embedded images
            yield from _trailer_parts(data[pos + 2 :], f"{where} after EOI")
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if pos + 2 + length > len(data):
            raise ValueError(f"JPEG segment at byte {pos} overruns the file")
        body = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xDA:
            pos = _after_entropy_data(data, pos)
            continue
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            yield f"{where} {'COM' if marker == 0xFE else f'APP{marker - 0xE0}'}", _classify(body), body


def _after_entropy_data(data: bytes, pos: int) -> int:
    """Where the next marker starts after a scan (FF 00 is a stuffed byte, FF D0-D7 a restart)."""
    while True:
        pos = data.index(b"\xff", pos)
        following = data[pos + 1] if pos + 1 < len(data) else 0xD9
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1
            continue
        return pos


def _trailer_parts(trailer: bytes, where: str) -> Iterator[Part]:
    embedded = trailer.find(b"\xff\xd8\xff")
    if embedded < 0:
        if trailer.strip(b"\x00"):
            yield where, _classify(trailer), trailer
        return
    if trailer[:embedded].strip(b"\x00"):
        yield where, _classify(trailer[:embedded]), trailer[:embedded]
    yield from _jpeg_parts(trailer[embedded:], f"{where}, embedded JPEG")


def _png_parts(data: bytes) -> Iterator[Part]:
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        name = kind.decode("latin-1")
        if kind == b"IEND":
            if data[pos:].strip(b"\x00"):
                yield "PNG after IEND", _classify(data[pos:]), data[pos:]
            return
        if kind in PIXEL_CHUNKS:
            continue
        if kind == b"eXIf":
            yield "PNG eXIf", "tiff", body
        elif kind in PNG_TEXT_CHUNKS:
            keyword, text = _png_text(kind, body)
            label = f"PNG {name} {keyword.decode('latin-1')!r}"
            if keyword.lower().startswith(b"raw profile type"):
                yield from _raw_profile(label, text)
            else:
                yield label, _classify(text), keyword + b" " + text
        else:
            yield f"PNG {name}", "text", body


def _png_text(kind: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk, decompressed."""
    keyword, _, rest = body.partition(b"\x00")
    if kind == b"zTXt":
        return keyword, zlib.decompress(rest[1:])
    if kind == b"iTXt":
        compressed, rest = rest[0], rest[2:]
        language, _, rest = rest.partition(b"\x00")
        translated, _, text = rest.partition(b"\x00")
        return keyword, language + b" " + translated + b" " + (zlib.decompress(text) if compressed else text)
    return keyword, rest


def _raw_profile(label: str, text: bytes) -> Iterator[Part]:
    """ImageMagick's raw profile: a newline, the type, the length, then the payload in hex."""
    lines = text.strip().split(b"\n")
    digits = b"".join(line.strip() for line in lines[2:])
    try:
        payload = bytes.fromhex(digits.decode("ascii"))
    except ValueError:
        yield label, "text", text
        return
    start = min((i for i in (payload.find(h) for h in TIFF_HEADERS) if i >= 0), default=-1)
    yield label, "tiff" if start >= 0 else _classify(payload), payload[start:] if start >= 0 else payload


def _webp_parts(data: bytes) -> Iterator[Part]:
    pos = 12
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
        if kind in PIXEL_CHUNKS:
            continue
        name = f"WebP {kind.decode('latin-1').strip()}"
        yield name, "tiff" if kind == b"EXIF" else ("xmp" if kind == b"XMP " else _classify(body)), body
    if data[end:].strip(b"\x00"):
        yield "WebP after RIFF", _classify(data[end:]), data[end:]


def _gif_parts(data: bytes) -> Iterator[Part]:
    for introducer, label, body in gif_blocks(data):
        if introducer == GIF_TRAILER:
            if body.strip(b"\x00"):
                yield "GIF after trailer", _classify(body), body
        elif introducer == GIF_EXTENSION and label != 0xF9:  # graphic control: timing only
            yield f"GIF extension 0x{label:02x}", _classify(body), body


# --- TIFF (the EXIF payload) ---------------------------------------------------------------------


def tiff_gps(payload: bytes) -> list[str]:
    """A GPS IFD pointed to from IFD0 or IFD1 of a TIFF/EXIF payload, with its entry count."""
    starts = [i for i in (payload.find(h) for h in TIFF_HEADERS) if i >= 0]
    if not starts:
        return []
    tiff = payload[min(starts) :]
    order = "<" if tiff.startswith(b"II") else ">"
    try:
        (offset,) = struct.unpack(order + "I", tiff[4:8])
        found, seen = [], set()
        while offset and offset not in seen and offset + 2 <= len(tiff):
            seen.add(offset)
            (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
            for index in range(count):
                entry = tiff[offset + 2 + 12 * index : offset + 14 + 12 * index]
                tag, _type, _count, value = struct.unpack(order + "HHII", entry)
                if tag == TIFF_GPS_POINTER:
                    (entries,) = struct.unpack(order + "H", tiff[value : value + 2])
                    found.append(f"GPS IFD with {entries} entries")
            (offset,) = struct.unpack(order + "I", tiff[offset + 2 + 12 * count : offset + 6 + 12 * count])
        return found
    except struct.error:
        return ["EXIF payload too broken to rule GPS out"]
