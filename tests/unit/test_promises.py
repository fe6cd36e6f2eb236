"""The promises table says what the README and the reference system document, and is coherent itself.

The contract scenarios hold a deployed system to fixtures/promises.py without importing the
system's constants; this is the one place they are compared, so the table cannot drift unnoticed.
"""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from readme_sections import section

from fixtures import images, promises
from imageflow import workflow
from imageflow.agents import thumbnailer, validator
from imageflow.dashboard import api, auth, uploads
from stack.state import REPO_ROOT

TEMPLATES = REPO_ROOT / "imageflow" / "dashboard" / "templates"


def _contract_row(rule: str) -> str:
    found = re.search(rf"^\| {re.escape(rule)} \| (.*) \|$", section("The upload contract"), re.MULTILINE)
    assert found, f"the README's upload contract has no '{rule}' row"
    return found.group(1)


def test_readme_states_the_tables_limits() -> None:
    assert f"at most {promises.human_size(promises.MAX_FILE_BYTES)} per file" in _contract_row("file size")
    assert f"at most {promises.MAX_FILES_PER_REQUEST};" in _contract_row("files per request")
    assert f"at most {promises.human_size(promises.MAX_REQUEST_BYTES)}" in _contract_row("request size")
    assert f"at most {promises.MAX_PIXELS} per frame" in _contract_row("pixels")
    assert f"at most {promises.MAX_NAME_LENGTH} characters" in _contract_row("file name")
    accounts = _contract_row("accounts")
    assert f"at most {promises.MAX_EMAIL_LENGTH} characters" in accounts
    assert f"at least {promises.MIN_PASSWORD_LENGTH} characters with a letter and a digit" in accounts


def test_readme_names_every_accepted_and_refused_format() -> None:
    accepted = _contract_row("formats")
    for fmt in promises.ACCEPTED_FORMATS:
        assert fmt.name in accepted, fmt
    refused = _contract_row("refused formats")
    for refused_format in promises.REFUSED_FORMATS:
        assert refused_format.name in refused, refused_format
    assert promises.NOT_ACCEPTED.format(name="NAME") in refused


def test_readme_workflow_statuses_are_the_tables() -> None:
    schema = section("The workflow document")
    status_row = re.search(r"^\| `status` \| (.*) \|$", schema, re.MULTILINE)
    assert status_row
    assert tuple(re.findall(r"`(\w+)`", status_row.group(1))) == promises.WORKFLOW_STATUSES
    steps = re.search(r"status: ([a-z/]+),", schema)
    assert steps
    assert tuple(steps.group(1).split("/")) == promises.STEP_STATUSES


def test_the_systems_constants_are_the_tables() -> None:
    assert uploads.DEFAULT_MAX_UPLOAD_BYTES == promises.MAX_FILE_BYTES
    assert uploads.MAX_FILES_PER_REQUEST == promises.MAX_FILES_PER_REQUEST
    assert uploads.REQUEST_OVERHEAD_BYTES == promises.REQUEST_OVERHEAD_BYTES
    assert uploads.MAX_NAME_LENGTH == promises.MAX_NAME_LENGTH
    assert validator.DEFAULT_MAX_PIXELS == promises.MAX_PIXELS
    assert validator.DEFAULT_MAX_BYTES == promises.MAX_FILE_BYTES
    assert thumbnailer.MAX_SIDE == promises.THUMBNAIL_MAX_SIDE
    table_types = {ext: set(f.content_types) for f in promises.ACCEPTED_FORMATS for ext in f.extensions}
    assert {ext: set(types) for ext, types in uploads.ALLOWED_TYPES.items()} == table_types
    assert set(uploads.UNTYPED) == set(promises.UNTYPED_CONTENT_TYPES)
    assert {f.validator_format for f in promises.ACCEPTED_FORMATS} == validator.ALLOWED_FORMATS
    assert tuple(s.value for s in workflow.Status) == promises.WORKFLOW_STATUSES
    assert {s.value for s in workflow.TERMINAL} == promises.TERMINAL_STATUSES
    assert tuple(s.value for s in workflow.StepStatus) == promises.STEP_STATUSES
    assert thumbnailer.object_name("u", "w", "png") == f"{promises.THUMBNAILS_PREFIX}/u/w.png"


def test_the_systems_messages_are_the_tables() -> None:
    limit = promises.MAX_FILE_BYTES
    name = uploads.clean_filename("photo.tif")
    assert uploads.check(name, "image/tiff", b"x", limit) == promises.NOT_ACCEPTED.format(name="photo.tif")
    jpeg = uploads.clean_filename("photo.jpg")
    assert uploads.check(jpeg, "image/jpeg", b"", limit) == promises.EMPTY.format(name="photo.jpg")
    assert uploads.check(jpeg, "image/jpeg", b"x" * (limit + 1), limit) == promises.TOO_LARGE.format(
        name="photo.jpg"
    )
    assert auth.INVALID_EMAIL == promises.INVALID_EMAIL
    assert auth.WEAK_PASSWORD == promises.WEAK_PASSWORD
    assert auth.PASSWORDS_DIFFER == promises.PASSWORDS_DIFFER
    assert api.NO_FILES == promises.NO_FILES
    assert uploads.human_size(promises.MAX_REQUEST_BYTES) == promises.human_size(promises.MAX_REQUEST_BYTES)


def test_the_pages_state_the_tables_rules() -> None:
    dashboard = (TEMPLATES / "dashboard.html").read_text(encoding="utf-8")
    assert f'accept="{promises.PAGE_ACCEPT}"' in dashboard
    assert "JPEG, PNG, WebP or GIF, up to {{ max_file_size }} each." in dashboard
    assert promises.file_hint() == "JPEG, PNG, WebP or GIF, up to 10 MiB each."
    assert promises.PASSWORD_HINT in (TEMPLATES / "register.html").read_text(encoding="utf-8")
    offered = set(promises.PAGE_ACCEPT.split(","))
    for fmt in promises.ACCEPTED_FORMATS:
        assert fmt.content_types[0] in offered
        assert {f".{ext}" for ext in fmt.extensions} <= offered


def _identified(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # anything Pillow cannot identify (SVG, PDF, HEIC) is fine here
        return None


@pytest.mark.parametrize("refused", promises.REFUSED_FORMATS, ids=lambda f: f.name)
def test_every_refused_sample_exists_and_is_no_accepted_format(refused: promises.RefusedFormat) -> None:
    sample = images.SAMPLES[refused.kind]
    accepted_extensions = {ext for f in promises.ACCEPTED_FORMATS for ext in f.extensions}
    assert sample.filename.rsplit(".", 1)[1] not in accepted_extensions
    assert _identified(sample.generate()) not in {f.validator_format for f in promises.ACCEPTED_FORMATS}


@pytest.mark.parametrize("promise", promises.METADATA_PROMISES, ids=lambda p: p.kind)
def test_every_metadata_sample_carries_its_marker(promise: promises.MetadataPromise) -> None:
    assert promise.marker in images.SAMPLES[promise.kind].generate()


def test_limit_samples_sit_exactly_at_and_one_past_each_limit() -> None:
    assert len(images.jpeg_at_size_limit()) == promises.MAX_FILE_BYTES
    assert len(images.jpeg_over_size_limit()) == promises.MAX_FILE_BYTES + 1
    with Image.open(io.BytesIO(images.png_at_pixel_limit())) as at_limit:
        assert at_limit.width * at_limit.height == promises.MAX_PIXELS
    with Image.open(io.BytesIO(images.png_over_pixel_limit())) as past:
        assert past.width * past.height == promises.MAX_PIXELS + 1
    assert promises.MAX_REQUEST_BYTES == 101 * promises.MIB


def test_matplotlib_sample_photographs_are_real_images() -> None:
    for name in images.MATPLOTLIB_IMAGES:
        assert _identified(images.matplotlib_sample(name)) in {"JPEG", "PNG"}, name
