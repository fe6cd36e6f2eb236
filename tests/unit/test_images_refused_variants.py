"""The refused-format variants are what they claim: checked by readers the validator does not use."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import allure
import pytest

from fixtures import images
from fixtures.reporting import EPIC

pytestmark = [allure.epic(EPIC), allure.feature("Fixtures: refused formats")]

FILE_TIMEOUT_SECONDS = 30


def svg_root(data: bytes) -> tuple[str, str] | None:
    """The root's (namespace, local name) as an XML parser reads it; None when it is not XML."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    namespace, _, local = root.tag.rpartition("}")
    return namespace.lstrip("{"), local


class _FirstMarkup(HTMLParser):
    """Records the doctype and the first start tag an HTML parser sees."""

    def __init__(self) -> None:
        super().__init__()
        self.doctype: str | None = None
        self.first_tag: str | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.first_tag = self.first_tag or tag


def is_html(data: bytes) -> bool:
    """An HTML parser finds an html doctype and the html element first."""
    parser = _FirstMarkup()
    parser.feed(data.decode("utf-8-sig"))
    parser.close()
    return parser.doctype == "doctype html" and parser.first_tag == "html"


def libmagic_type(data: bytes) -> str:
    """What `file` (libmagic) says the bytes are."""
    found = shutil.which("file")
    if not found:
        pytest.skip("`file` (libmagic) is not installed, so no independent reader of PDF headers")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "variant"
        path.write_bytes(data)
        done = subprocess.run(
            [found, "-b", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=FILE_TIMEOUT_SECONDS,
        )
    return done.stdout.strip()


def variant_id(variant: images.RefusedVariant) -> str:
    """The variant's name without its disguise."""
    return variant.name.removesuffix(".jpg")


SVGS = [v for v in images.REFUSED_VARIANTS if v.fmt == "SVG"]
HTMLS = [v for v in images.REFUSED_VARIANTS if v.fmt == "HTML"]
PDFS = [v for v in images.REFUSED_VARIANTS if v.fmt == "PDF"]


def test_every_shape_of_every_format_is_in_the_catalogue() -> None:
    listed = {(v.fmt, v.shape) for v in images.REFUSED_VARIANTS}
    shapes = {(fmt, shape) for fmt, names in images.VARIANT_SHAPES.items() for shape in names}
    assert listed == shapes


@pytest.mark.parametrize("variant", SVGS, ids=variant_id)
def test_svg_variants_parse_as_xml_with_an_svg_root(variant: images.RefusedVariant) -> None:
    data = variant.generate()
    namespace, local = svg_root(data) or ("", "")
    assert namespace == images.SVG_NAMESPACE, f"{variant.name}: root in {namespace!r}"
    # XML names are case-sensitive: the uppercase shape's root is the same name, differently cased.
    assert local == ("SVG" if variant.shape == "uppercase" else "svg")
    assert data.lower().index(b"<svg") >= variant.filler, "the filler comes before the root"


@pytest.mark.parametrize("variant", HTMLS, ids=variant_id)
def test_html_variants_parse_as_html_pages(variant: images.RefusedVariant) -> None:
    data = variant.generate()
    assert is_html(data)
    _, local = svg_root(data) or ("", "")
    assert local.lower() != "svg", "an HTML variant is not an SVG"


@pytest.mark.parametrize("variant", PDFS, ids=variant_id)
def test_pdf_variants_are_a_pdf_document_after_junk_within_the_first_kilobyte(
    variant: images.RefusedVariant,
) -> None:
    # libmagic looks for the header at offset 0 only, so it judges the document after the junk.
    data = variant.generate()
    junk, document = data[: variant.filler], data[variant.filler :]
    assert libmagic_type(document).startswith("PDF document"), f"{variant.name}: {libmagic_type(document)}"
    assert b"%PDF-" not in junk, "the junk holds no header of its own"
    assert len(junk) + len(b"%PDF-") <= 1024, "the header lies within the first 1024 bytes"


def test_the_readers_tell_the_formats_apart() -> None:
    assert svg_root(images.plain_jpeg()) is None
    assert not is_html(images.svg())
    assert svg_root(images.html()) is None, "an HTML page with a script is not well-formed XML"
    assert not libmagic_type(images.tiny_png()).startswith("PDF document")


def test_a_pdf_header_past_the_first_kilobyte_is_not_a_variant() -> None:
    with pytest.raises(ValueError, match="first 1024 bytes"):
        images.refused_variant("PDF", "junk", images.PDF_MAX_JUNK + 1)
