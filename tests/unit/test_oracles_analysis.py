"""The analysis oracle: a contract-true analysis passes within the stated tolerances, a wrong one fails."""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import allure
import pytest
from PIL import Image, ImageStat

from fixtures import images
from fixtures.reporting import EPIC
from oracles import analysis

pytestmark = [allure.epic(EPIC), allure.feature("Oracles: analysis")]

KINDS = [
    "jpeg_with_exif_gps",
    "png_with_alpha",
    "palette_png_transparent",
    "gif",
    "webp",
    "tiny_png",
    "large_jpeg",
    "cmyk_jpeg",
    "photo_grace_hopper",
    "photo_minduka",
    "photo_matplotlib_logo",
]


@cache
def sample(kind: str) -> bytes:
    return images.SAMPLES[kind].generate()


@cache
def contract_analysis(data: bytes) -> dict[str, Any]:
    """The analysis as the contract describes it, done another way (Pillow: quantise, Lanczos, Stat)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)
        width, height = opened.size
        rgba = opened.convert("RGBA")
    image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    image.thumbnail((256, 256), Image.Resampling.BILINEAR)
    quantised = image.quantize(colors=5, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    order = [index for _, index in sorted(quantised.getcolors() or [], reverse=True)]
    colours = ["#" + bytes(palette[3 * i : 3 * i + 3]).hex() for i in order if isinstance(i, int)]
    grey = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS).tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (grey[row * 9 + col] > grey[row * 9 + col + 1])
    brightness = round(float(ImageStat.Stat(image.convert("L")).mean[0]), 2)
    return {
        "dominant_colors": colours,
        "phash": f"{bits:016x}",
        "brightness": brightness,
        "width": width,
        "height": height,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_true_analysis_passes(kind: str) -> None:
    assert analysis.check(sample(kind), contract_analysis(sample(kind))) == []


def test_a_single_red_pixel() -> None:
    facts = analysis.truth(sample("tiny_png"))
    assert abs(facts.brightness - 0.299 * 255) < 0.01
    assert facts.dhash == 0
    assert analysis.check(sample("tiny_png"), {**contract_analysis(sample("tiny_png"))}) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda a: {"brightness": a["brightness"] + 3}, "brightness"),
        (lambda a: {"brightness": a["brightness"] - 1.5}, "brightness"),
        (lambda a: {"phash": contract_analysis(sample("photo_grace_hopper"))["phash"]}, "phash"),
        (lambda a: {"phash": f"{int(a['phash'], 16) ^ (2**64 - 1):016x}"}, "phash"),
        (lambda a: {"phash": "not a hash"}, "phash"),
        (
            lambda a: {"dominant_colors": contract_analysis(sample("photo_grace_hopper"))["dominant_colors"]},
            "dominant",
        ),
        (lambda a: {"dominant_colors": []}, "dominant"),
        (lambda a: {"dominant_colors": ["red"]}, "dominant"),
        (lambda a: {"width": a["height"], "height": a["width"]}, "width"),
    ],
    ids=[
        "brighter",
        "darker",
        "another-image-hash",
        "inverted-hash",
        "malformed-hash",
        "another-image-colours",
        "no-colours",
        "named-colour",
        "swapped-size",
    ],
)
def test_a_wrong_value_is_named(change: Any, field: str) -> None:
    true = contract_analysis(sample("jpeg_with_exif_gps"))
    problems = analysis.check(sample("jpeg_with_exif_gps"), {**true, **change(true)})
    assert problems, "a wrong analysis passed"
    assert problems[0].startswith(field), problems


def test_the_hash_of_the_image_mirrored_fails() -> None:
    data = sample("photo_grace_hopper")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(buffer, "JPEG", quality=95)
    mirrored = contract_analysis(buffer.getvalue())["phash"]
    problems = analysis.check(data, {**contract_analysis(data), "phash": mirrored})
    assert any(p.startswith("phash") for p in problems), problems


def test_tolerances_hold_with_margin_on_photos() -> None:
    """Right values sit well inside each tolerance on photos and generated images."""
    worst_brightness, worst_bits = 0.0, 0
    for kind in KINDS:
        facts, true = analysis.truth(sample(kind)), contract_analysis(sample(kind))
        worst_brightness = max(worst_brightness, abs(facts.brightness - true["brightness"]))
        worst_bits = max(worst_bits, facts.hash_mismatches(int(true["phash"], 16))[0])
    allure.attach(f"brightness {worst_brightness:.2f}, hash bits {worst_bits}", "worst right values")
    assert worst_brightness <= analysis.BRIGHTNESS_TOLERANCE / 2
    assert worst_bits < analysis.HASH_MISMATCHES
