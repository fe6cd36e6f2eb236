"""The validator agent: the original must be a real JPEG/PNG/WebP/GIF within the size limits.

Everything after it trusts its verdict, so it decodes for real (verify() and a full load() of
every frame) and refuses bombs by the header before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from PIL import Image, UnidentifiedImageError

from imageflow.agents.base import Job, Rejected, create_agent_app
from imageflow.config import Settings
from imageflow.imaging import sniff_format

NAME = "validator"
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
# Pillow names multi-picture JPEGs (most phone cameras) MPO; they are JPEG files.
FORMAT_ALIASES = {"MPO": "JPEG"}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
# Pixels of all frames together may be this many times the per-frame limit.
MAX_FRAME_BUDGET = 4
# Major brands of HEIF files from phone cameras (Pillow has no decoder for them).
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
UTF8_BOM = b"\xef\xbb\xbf"
# Markup is recognised by its root element, which must start (after a BOM, whitespace, the XML
# declaration, comments, processing instructions and a DOCTYPE) within this many bytes.
MARKUP_SNIFF_BYTES = 16 * 1024
# One item of what may come before the root of an XML or HTML file (lowercased), matched one at a
# time so a doctype is told from the text of a comment that merely quotes one.
MARKUP_PROLOG_ITEM = re.compile(
    rb"\s+|<\?.*?\?>|<!--.*?-->|<!doctype\b[^\[>]*(?:\[.*?\]\s*)?>",
    re.DOTALL,
)
# The root's start tag, its prefix (as in <svg:svg>) dropped.
MARKUP_ROOT = re.compile(rb"<(?:[a-z_][\w.-]*:)?([a-z_][\w.-]*)")
HTML_DOCTYPE = re.compile(rb"<!doctype\s+html\b")
# ISO base media files (HEIC, AVIF) name their format in the major brand of the ftyp box at byte 4.
ISO_FTYP = slice(4, 8)
ISO_BRAND = slice(8, 12)
# A PDF's header may start anywhere in its first 1024 bytes (PDF Reference 1.7, implementation note 13).
PDF_HEADER = b"%PDF-"
PDF_HEADER_WINDOW = 1024


@dataclass(frozen=True)
class Limits:
    """What the validator accepts: bytes per file and pixels per frame."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """IMAGEFLOW_MAX_UPLOAD_BYTES and IMAGEFLOW_MAX_PIXELS, or the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            max_bytes=_positive_int(env.get("IMAGEFLOW_MAX_UPLOAD_BYTES"), DEFAULT_MAX_BYTES),
            max_pixels=_positive_int(env.get("IMAGEFLOW_MAX_PIXELS"), DEFAULT_MAX_PIXELS),
        )


def _positive_int(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Verdict:
    """The validator's judgement: accepted with an output summary, or refused with a reason."""

    accepted: bool
    reason: str | None = None
    output: dict[str, Any] = field(default_factory=dict)


def _refuse(reason: str, output: Mapping[str, Any]) -> Verdict:
    return Verdict(False, reason, dict(output))


def _markup_format(data: bytes) -> str | None:
    """SVG or HTML when the file is markup with that root (or an HTML doctype), else None."""
    window = data[:MARKUP_SNIFF_BYTES].removeprefix(UTF8_BOM).lower()
    end, html_doctype = 0, False
    while (item := MARKUP_PROLOG_ITEM.match(window, end)) is not None:
        html_doctype = html_doctype or HTML_DOCTYPE.match(item.group()) is not None
        end = item.end()
    root = MARKUP_ROOT.match(window, end)
    if root and root.group(1) == b"svg":
        return "SVG"
    if (root and root.group(1) == b"html") or html_doctype:
        return "HTML"
    return None


def _iso_media_format(data: bytes) -> str | None:
    """HEIC or AVIF when the file opens with an ftyp box of one of their major brands, else None."""
    if data[ISO_FTYP] != b"ftyp":
        return None
    brand = data[ISO_BRAND]
    if brand in HEIF_BRANDS:
        return "HEIC"
    if brand in (b"avif", b"avis"):
        return "AVIF"
    return None


def _not_an_image_reason(data: bytes) -> str:
    """Name the format of a non-image when it is recognisable (SVG, HTML, PDF), else say undecodable."""
    # A container recognised at its start wins over a PDF header found later in the bytes.
    named = _markup_format(data) or _iso_media_format(data)
    if named:
        return f"format {named} is not allowed"
    if PDF_HEADER in data[:PDF_HEADER_WINDOW]:
        return "format PDF is not allowed"
    return "not a decodable image"


def _bomb_reason(exc: Exception, limits: Limits) -> str:
    # Pillow refuses by its own limit, which may be lower than ours: name the one that applied.
    limit = min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)
    found = BOMB_PIXELS.search(str(exc))
    if found:
        return f"image is {found.group(1)} pixels, over the limit of {limit}"
    return "image is a decompression bomb"


def process(data: bytes, limits: Limits | None = None) -> Verdict:
    """Judge an upload: format by decoded content, byte and pixel limits, a complete decode."""
    limits = limits or Limits()
    size = len(data)
    if size == 0:
        return _refuse("file is empty", {"bytes": 0})
    if size > limits.max_bytes:
        return _refuse(f"file is {size} bytes, over the limit of {limits.max_bytes}", {"bytes": size})
    facts: dict[str, Any] = {"bytes": size, "sha256": hashlib.sha256(data).hexdigest()}
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its bomb limit; here every bomb is a refusal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt = FORMAT_ALIASES.get(image.format or "", image.format or "")
                width, height = image.size
                frames = int(getattr(image, "n_frames", 1))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            return _refuse(_bomb_reason(exc, limits), facts)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            return _refuse(_not_an_image_reason(data), facts)
        facts.update(format=fmt, width=width, height=height, frames=frames)
        if fmt not in ALLOWED_FORMATS:
            return _refuse(f"format {fmt} is not allowed", facts)
        if width <= 0 or height <= 0:
            return _refuse("not a decodable image", facts)
        # Checked from the header, before a single pixel is decoded.
        if width * height > limits.max_pixels:
            pixels = width * height
            return _refuse(f"image is {pixels} pixels, over the limit of {limits.max_pixels}", facts)
        # Animations: every frame is decoded below, so the whole animation shares a budget.
        if frames * width * height > limits.max_pixels * MAX_FRAME_BUDGET:
            return _refuse(f"animation of {frames} frames is too large to decode", facts)
        problem = _decode_fully(data)
    if problem:
        return _refuse(problem, facts)
    return Verdict(True, None, facts)


def _decode_fully(data: bytes) -> str | None:
    """None when every frame decodes; otherwise the reason it does not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        # verify() leaves the image unusable: open again and really decode each frame.
        with Image.open(io.BytesIO(data)) as image:
            for index in range(int(getattr(image, "n_frames", 1))):
                image.seek(index)
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "image is a decompression bomb"
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            return "file is truncated"
        return "not a decodable image"
    return None


def fake_output(job: Job) -> dict[str, Any]:
    """The fake_done fault: a plausible verdict recorded without decoding anything."""
    return {"format": "JPEG", "width": 640, "height": 480, "bytes": 0, "sha256": "0" * 64, "frames": 1}


def handle(job: Job) -> Mapping[str, Any]:
    """Validate the original of the job's workflow; raises Rejected for bad input."""
    limits = Limits.from_env()
    recorded = job.original_size()
    if recorded is not None and recorded > limits.max_bytes:
        # Too big to be worth downloading: refuse on the stored size.
        raise Rejected(f"file is {recorded} bytes, over the limit of {limits.max_bytes}", {"bytes": recorded})
    data = job.original()
    verdict = process(data, limits)
    if verdict.accepted:
        return verdict.output
    if job.fault("accepts_bad"):
        # The fault: pass bad input on as if it were a valid image.
        return {"format": sniff_format(data) or "JPEG", "width": 1, "height": 1, **verdict.output}
    raise Rejected(verdict.reason or "not a valid image", verdict.output)


def create_app(settings: Settings | None = None) -> Flask:
    """The validator service."""
    return create_agent_app(NAME, handle, settings, fake=fake_output)
