"""The thumbnailer agent: a thumbnail of at most 256 px on the longest side, upright and metadata-free."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from PIL import Image, ImageOps

from imageflow.agents.base import Job, create_agent_app
from imageflow.config import Settings
from imageflow.imaging import eight_bit, has_transparency

NAME = "thumbnailer"
MAX_SIDE = 256
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Thumbnail:
    """An encoded thumbnail and what it is."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """The object name's extension."""
        return "png" if self.format == "PNG" else "jpg"

    @property
    def content_type(self) -> str:
        """The MIME type it is stored with."""
        return "image/png" if self.format == "PNG" else "image/jpeg"


def process(data: bytes, max_side: int = MAX_SIDE) -> Thumbnail:
    """Make the thumbnail: apply the EXIF orientation first, then shrink; PNG if it has transparency."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)  # animated images: the first frame
        opened.draft(None, (max_side * 2, max_side * 2))  # JPEG: decode at reduced scale
        upright = eight_bit(ImageOps.exif_transpose(opened))
    # Judged on the pixels, not the mode: an RGBA image that is fully opaque becomes a JPEG.
    transparent = has_transparency(upright)
    image = upright.convert("RGBA" if transparent else "RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    # Saved from pixels only, without exif= or icc_profile=: nothing of the original's metadata travels.
    if transparent:
        image.save(buffer, "PNG", optimize=True)
        fmt = "PNG"
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        fmt = "JPEG"
    return Thumbnail(buffer.getvalue(), fmt, image.width, image.height)


def object_name(owner: str, workflow_id: str, extension: str) -> str:
    """Where a workflow's thumbnail is stored."""
    return f"thumbnails/{owner}/{workflow_id}.{extension}"


def summary(job: Job, thumbnail: Thumbnail) -> dict[str, Any]:
    """The step output for a thumbnail."""
    return {
        "object": object_name(job.owner, job.workflow_id, thumbnail.extension),
        "width": thumbnail.width,
        "height": thumbnail.height,
        "format": thumbnail.format,
        "bytes": len(thumbnail.data),
    }


def handle(job: Job) -> Mapping[str, Any]:
    """Make the thumbnail of the job's original and store it."""
    thumbnail = process(job.original())
    output = summary(job, thumbnail)
    if not job.fault("not_written"):
        job.write(output["object"], thumbnail.data, thumbnail.content_type)
    return output


def fake_output(job: Job) -> dict[str, Any]:
    """The fake_done fault: a plausible thumbnail summary, nothing decoded or written."""
    return {
        "object": object_name(job.owner, job.workflow_id, "jpg"),
        "width": MAX_SIDE,
        "height": 192,
        "format": "JPEG",
        "bytes": 9000,
    }


def create_app(settings: Settings | None = None) -> Flask:
    """The thumbnailer service."""
    return create_agent_app(NAME, handle, settings, fake=fake_output)
