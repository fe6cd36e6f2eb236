"""The thumbnail oracle: true thumbnails pass, wrong ones (another image, rotated, mirrored, EXIF
orientation ignored, upscaled, wrong format, metadata kept) fail; the content threshold's margins."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from typing import Any

import allure
import pytest
from PIL import Image, ImageOps

from fixtures import images
from fixtures.reporting import EPIC
from oracles import exiftool, thumbnailer
from oracles.pixels import decode_rgba, orient

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Oracles: thumbnailer"),
    pytest.mark.skipif(not exiftool.available(), reason=exiftool.INSTALL_HINT),
]

KINDS = [
    "jpeg_with_exif_gps",
    "png_with_alpha",
    "palette_png_transparent",
    "greyscale_alpha_png",
    "gif",
    "webp",
    "tiny_png",
    "cmyk_jpeg",
    "png_16bit",
    "photo_grace_hopper",
    "photo_minduka",
    *(f"jpeg_orientation_{n}" for n in range(1, 9)),
]
Edit = Callable[[Image.Image], Image.Image]


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def make_thumbnail(data: bytes, edit: Edit | None = None, upright: bool = True, **save: Any) -> bytes:
    """A thumbnail as the contract describes it (Pillow: orientation, 256 box, PNG iff transparent)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)
        image = ImageOps.exif_transpose(opened) if upright else opened.copy()
    if image.mode.startswith("I"):
        image = image.point(lambda v: v / 256).convert("L")
    lowest = image.convert("RGBA").getchannel("A").getextrema()[0]
    alpha = _transparent(image) and isinstance(lowest, int | float) and lowest < 255
    image = image.convert("RGBA" if alpha else "RGB")
    image.thumbnail((256, 256), Image.Resampling.LANCZOS)
    if edit is not None:
        image = edit(image)
    buffer = io.BytesIO()
    image.save(buffer, "PNG" if alpha else "JPEG", **save)
    return buffer.getvalue()


def recorded(thumbnail: bytes) -> dict[str, Any]:
    """The summary a correct thumbnailer records for these bytes."""
    with Image.open(io.BytesIO(thumbnail)) as image:
        return {"width": image.width, "height": image.height, "format": image.format, "bytes": len(thumbnail)}


def judge(original: bytes, thumbnail: bytes) -> list[str]:
    return thumbnailer.check(original, thumbnail, recorded(thumbnail))


@cache
def sample(kind: str) -> bytes:
    return images.SAMPLES[kind].generate()


@pytest.mark.parametrize("kind", KINDS)
def test_a_true_thumbnail_passes(kind: str) -> None:
    original = sample(kind)
    assert judge(original, make_thumbnail(original)) == []


def _rotate(angle: int) -> Edit:
    return lambda image: image.rotate(angle, expand=True)


WRONG: dict[str, Edit] = {
    "rotated-90": _rotate(90),
    "rotated-180": _rotate(180),
    "mirrored": lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "flipped": lambda image: image.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "channels-swapped": lambda image: Image.merge("RGB", image.split()[::-1]),
    "darkened": lambda image: image.point(lambda v: v * 0.8),
    "cropped": lambda image: image.crop((image.width // 4, 0, image.width, image.height)).resize(image.size),
}


@pytest.mark.parametrize("edit", WRONG.values(), ids=WRONG.keys())
@pytest.mark.parametrize("kind", ["jpeg_with_exif_gps", "photo_grace_hopper"])
def test_a_thumbnail_of_the_right_image_done_wrong_fails(kind: str, edit: Edit) -> None:
    original = sample(kind)
    problems = judge(original, make_thumbnail(original, edit))
    assert problems, "a wrong thumbnail passed"


@pytest.mark.parametrize("kind", [f"jpeg_orientation_{n}" for n in range(2, 9)] + ["jpeg_with_exif_gps"])
def test_ignoring_the_exif_orientation_fails(kind: str) -> None:
    original = sample(kind)
    problems = judge(original, make_thumbnail(original, upright=False))
    assert any("content differs" in p or "expected" in p for p in problems), problems


@pytest.mark.parametrize(("kind", "other"), [("jpeg_with_exif_gps", "photo_grace_hopper"), ("webp", "gif")])
def test_a_thumbnail_of_another_upload_fails(kind: str, other: str) -> None:
    problems = judge(sample(kind), make_thumbnail(sample(other)))
    assert any("content differs" in p for p in problems), problems


def test_an_upscaled_thumbnail_fails() -> None:
    problems = judge(sample("tiny_png"), make_thumbnail(sample("tiny_png"), lambda i: i.resize((256, 256))))
    assert any("expected 1x1" in p for p in problems), problems


def _resaved(thumbnail: bytes, mode: str, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(thumbnail)).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def test_transparency_must_stay_png_with_alpha() -> None:
    original = sample("png_with_alpha")
    thumbnail = make_thumbnail(original)
    problems = judge(original, _resaved(thumbnail, "RGB", "JPEG"))
    assert any("expected PNG" in p for p in problems), problems
    problems = judge(original, _resaved(thumbnail, "RGB", "PNG"))
    assert any("transparency is lost" in p for p in problems), problems


def test_an_opaque_original_must_give_a_jpeg() -> None:
    original = sample("jpeg_with_exif_gps")
    problems = judge(original, _resaved(make_thumbnail(original), "RGBA", "PNG"))
    assert any("expected JPEG" in p for p in problems), problems


def test_metadata_carried_into_the_thumbnail_fails() -> None:
    original = sample("jpeg_with_exif_gps")
    problems = judge(original, make_thumbnail(original, exif=images.camera_exif()))
    assert any("metadata groups" in p for p in problems), problems


def test_a_wrong_recorded_summary_fails() -> None:
    original = sample("webp")
    thumbnail = make_thumbnail(original)
    problems = thumbnailer.check(original, thumbnail, {**recorded(thumbnail), "width": 999})
    assert problems == [f"recorded width 999, the stored thumbnail has {recorded(thumbnail)['width']}"]


def test_the_content_threshold_has_margins_on_both_sides() -> None:
    """Right thumbnails sit far below the threshold, wrong ones far above (where they differ at all)."""
    originals = [sample(k) for k in ("jpeg_with_exif_gps", "photo_grace_hopper", "photo_minduka", "gif")]
    for seed in range(4):
        buffer = io.BytesIO()
        images.photo((300 + 40 * seed, 200 + 30 * seed), seed=seed).save(buffer, "JPEG", quality=90)
        originals.append(buffer.getvalue())
    right, wrong = [], []
    for index, original in enumerate(originals):
        pixels = decode_rgba(original)
        turn = thumbnailer.orientation(exiftool.read(original))
        seen = thumbnailer.distances(pixels, decode_rgba(make_thumbnail(original)))
        right.append(seen[turn])
        upright = orient(thumbnailer.grid(pixels), turn)
        for turned in (t for t in seen if t != turn):
            # An image symmetric under a turn is the same picture: nothing to tell apart there.
            if abs(orient(thumbnailer.grid(pixels), turned) - upright).mean() > 1:
                wrong.append(seen[turned])
        for other_index, other in enumerate(originals):
            if other_index != index:
                wrong.append(thumbnailer.distances(pixels, decode_rgba(make_thumbnail(other)))[turn])
    allure.attach(f"right max {max(right):.2f}, wrong min {min(wrong):.2f}", "content margins")
    assert max(right) <= thumbnailer.CONTENT_THRESHOLD / 2, right
    assert min(wrong) >= 2 * thumbnailer.CONTENT_THRESHOLD, sorted(wrong)[:5]
