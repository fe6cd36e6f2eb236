"""Container facts read from the bytes themselves: format by magic bytes, header size, frame count."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
# The byte that opens each block of a GIF after its header.
GIF_EXTENSION, GIF_IMAGE, GIF_TRAILER = 0x21, 0x2C, 0x3B


class NotAnImage(ValueError):
    """The bytes are not a container this module can read."""


@dataclass(frozen=True)
class Header:
    """What the container's header says: format name, pixel size, frames (None when not counted)."""

    format: str
    width: int
    height: int
    frames: int | None


def sniff(data: bytes) -> str | None:
    """The container named by the leading bytes (JPEG, PNG, WEBP or GIF), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def read_header(data: bytes) -> Header:
    """The format, size and frame count from the container; raises NotAnImage when unreadable."""
    kind = sniff(data)
    try:
        if kind == "JPEG":
            return _jpeg(data)
        if kind == "PNG":
            return _png(data)
        if kind == "WEBP":
            return _webp(data)
        if kind == "GIF":
            return _gif(data)
    except (IndexError, struct.error) as exc:
        raise NotAnImage(f"{kind} header is truncated") from exc
    raise NotAnImage(f"unknown container starting {data[:12]!r}")


def _jpeg(data: bytes) -> Header:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise NotAnImage(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return Header("JPEG", width, height, None)
        if marker == 0xDA:
            break
        pos += 2 + length
    raise NotAnImage("JPEG without a start-of-frame segment")


def _png(data: bytes) -> Header:
    width, height = struct.unpack(">II", data[16:24])
    frames = 1
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"acTL":  # APNG: the animation control chunk counts the frames
            (frames,) = struct.unpack(">I", data[pos + 8 : pos + 12])
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return Header("PNG", width, height, frames)


def _webp(data: bytes) -> Header:
    first = data[12:16]
    if first == b"VP8 ":
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height.
        width, height = struct.unpack("<HH", data[26:30])
        return Header("WEBP", width & 0x3FFF, height & 0x3FFF, 1)
    if first == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return Header("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1)
    if first == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return Header("WEBP", width, height, _webp_frames(data))
    raise NotAnImage(f"WebP with an unknown first chunk {first!r}")


def _webp_frames(data: bytes) -> int:
    frames, pos = 0, 12
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        frames += kind == b"ANMF"
        pos += 8 + size + (size & 1)
    return max(frames, 1)


def _gif(data: bytes) -> Header:
    width, height = struct.unpack("<HH", data[6:10])
    frames = sum(1 for introducer, _, _ in gif_blocks(data) if introducer == GIF_IMAGE)
    return Header("GIF", width, height, frames)


def gif_blocks(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Each block after a GIF's header and colour table: (introducer, extension label or 0, its data).

    An image block's data is its LZW data; the trailer comes last with whatever follows it.
    """
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == GIF_TRAILER:
            yield block, 0, data[pos + 1 :]
            return
        if block == GIF_EXTENSION:
            label = data[pos + 1]
            body, pos = _sub_blocks(data, pos + 2)
            yield block, label, body
        elif block == GIF_IMAGE:  # image descriptor, optional local colour table, LZW size, sub-blocks
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            body, pos = _sub_blocks(data, pos + 1)
            yield block, 0, body
        else:
            raise NotAnImage(f"GIF block 0x{block:02x} unknown at byte {pos}")


def _sub_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while data[pos] != 0:
        parts.append(data[pos + 1 : pos + 1 + data[pos]])
        pos += data[pos] + 1
    return b"".join(parts), pos + 1
