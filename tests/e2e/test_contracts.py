"""The upload contract from both sides, generated from fixtures/promises.py: accepted, refused, limits.

Every accepted format and every legal variant completes with every agent once; every common format
outside the allow-list is refused with the promised reason and leaves nothing behind; every limit
is tried at the limit and one past it; metadata survives or is removed as promised. Refusals are
batched (a request may carry up to the file limit, each file judged alone) to keep the gate short.
"""

from __future__ import annotations

import html
import io
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import allure
import pytest
import requests
from contract_checks import (
    PipelineScene,
    no_server_error,
    only_these_stored,
    refusals,
    stored_for,
    upload_parts,
)
from google.cloud import storage
from PIL import Image
from pipeline_checks import api_agrees, every_agent_once

from fixtures import promises
from fixtures.dashboard import ROW_PATTERN, FilePart, element_text, multipart
from fixtures.firestore import WatchResult, WorkflowWatcher
from fixtures.images import GPS_LATITUDE, GPS_LONGITUDE, REFUSED_VARIANTS, SAMPLES
from fixtures.reporting import labels
from fixtures.target import Target, unique_name
from fixtures.uploads import HTTP_TIMEOUT_SECONDS, ApiSession, accepted_ids, form_with_token
from fixtures.users import IdentityToolkit, TestUser
from imageflow.manifest import Manifest
from oracles import privacy

Part = tuple[str, bytes, str]
ApiFor = Callable[[TestUser], ApiSession]
Severity = allure.severity_level
POSITION = privacy.Position(GPS_LATITUDE, GPS_LONGITUDE)
# Pillow names a multi-picture JPEG MPO; the contract calls it JPEG.
FORMAT_NAMES = {"MPO": "JPEG"}


OnlyStored = Callable[[Iterable[str]], object]


@pytest.fixture
def only_stored(new_user: TestUser, upload_bucket: storage.Bucket, target: Target) -> OnlyStored:
    """only_stored(workflow_ids): nothing but these workflows is stored for the test's user."""
    return lambda workflow_ids: only_these_stored(new_user, upload_bucket, target, workflow_ids)


def post_form(target: Target, path: str, fields: Mapping[str, str]) -> requests.Response:
    """A page's form posted over plain HTTP by an anonymous visitor, with the form's CSRF token."""
    session = ApiSession(target)
    try:
        _, token = form_with_token(session.http, session.base, path)
        return session.http.post(
            f"{session.base}{path}",
            data={"csrf_token": token, **fields},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    finally:
        session.close()


def part(kind: str, filename: str | None = None, content_type: str | None = None) -> Part:
    """One file of an upload: a sample's bytes under its own (or the given) name and declared type."""
    sample = SAMPLES[kind]
    return (
        filename or sample.filename,
        sample.generate(),
        sample.content_type if content_type is None else content_type,
    )


def chunks(parts: Sequence[Part]) -> list[list[Part]]:
    """The parts in requests of at most the per-request file limit."""
    size = promises.MAX_FILES_PER_REQUEST
    return [list(parts[i : i + size]) for i in range(0, len(parts), size)]


@dataclass(frozen=True)
class Settled:
    """An accepted file after the pipeline ran: what was sent and how its workflow ended."""

    part: Part
    result: WatchResult

    @property
    def name(self) -> str:
        """The filename as sent."""
        return self.part[0]


def upload_all(session: ApiSession, watcher: WorkflowWatcher, parts: Sequence[Part]) -> list[Settled]:
    """Upload every part (batched), insist each was accepted, wait for each workflow to end, and hold
    the owner's API view of each settled one against its document."""
    ids: dict[str, str] = {}
    for batch in chunks(parts):
        response = session.upload(batch)
        no_server_error(response)
        assert response.status_code == 201, f"answered {response.status_code}: {response.text[:300]}"
        accepted = accepted_ids(response)
        refused = refusals(response)
        assert not refused, f"refused though the contract accepts them: {refused}"
        assert set(accepted) == {p[0] for p in batch}, (
            f"accepted {sorted(accepted)} of {[p[0] for p in batch]}"
        )
        ids.update(accepted)
    settled = [Settled(p, watcher.watch(ids[p[0]])) for p in parts]
    for item in settled:
        if item.result.reached:
            api_agrees(item.result, session)
    return settled


def all_completed_once(settled: Sequence[Settled], manifest: Manifest) -> None:
    """Every workflow completed, each agent having done its work exactly once; all failures named."""
    not_completed = {s.name: s.result.message for s in settled if not s.result.completed}
    assert not not_completed, f"{len(not_completed)} of {len(settled)} did not complete: {not_completed}"
    for item in settled:
        every_agent_once(item.result, manifest)


def _pixels(data: bytes) -> tuple[str, int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return FORMAT_NAMES.get(image.format or "", image.format or ""), image.width, image.height


CompletedUploads = Callable[[Sequence[Part]], list[Settled]]


@pytest.fixture
def completed_uploads(
    new_user: TestUser, api_session: ApiFor, workflow_watcher: WorkflowWatcher, pipeline_manifest: Manifest
) -> CompletedUploads:
    """completed_uploads(parts): the test user's upload of parts, every one completed with each agent once."""

    def upload(parts: Sequence[Part]) -> list[Settled]:
        settled = upload_all(api_session(new_user), workflow_watcher, parts)
        all_completed_once(settled, pipeline_manifest)
        return settled

    return upload


def validator_saw_what_was_sent(settled: Sequence[Settled]) -> None:
    """The validator's format and size are those of the file sent (read here from the bytes)."""
    wrong = {}
    for item in settled:
        output = item.result.output("validator")
        fmt, width, height = _pixels(item.part[1])
        expected = {"format": fmt, "width": width, "height": height, "bytes": len(item.part[1])}
        found = {key: output.get(key) for key in expected}
        if found != expected:
            wrong[item.name] = (found, expected)
    assert not wrong, f"validator facts (recorded, from the bytes): {wrong}"


# --- every accepted format, under every name and declared type the contract allows ---------------


def accepted_presentations() -> list[Part]:
    """Each accepted extension and declared type at least once, and each format once untyped."""
    samples = {"JPEG": "plain_jpeg", "PNG": "tiny_png", "WebP": "webp", "GIF": "gif"}
    untyped = itertools.cycle(promises.UNTYPED_CONTENT_TYPES)
    parts: list[Part] = []
    for fmt in promises.ACCEPTED_FORMATS:
        kind, name = samples[fmt.name], fmt.name.lower()
        for index in range(max(len(fmt.extensions), len(fmt.content_types))):
            extension = fmt.extensions[index % len(fmt.extensions)]
            declared = fmt.content_types[index % len(fmt.content_types)]
            parts.append(part(kind, f"{name}-{index}.{extension}", declared))
        # The client did not know the type: the extension decides (in any case), the validator the bytes.
        parts.append(part(kind, f"{name}-untyped.{fmt.extensions[-1].upper()}", next(untyped)))
    return parts


@labels("Contract", "Every accepted format completes under every promised name and type", Severity.BLOCKER)
def test_every_accepted_format_completes_under_every_promised_name_and_type(
    completed_uploads: CompletedUploads,
) -> None:
    parts = accepted_presentations()
    settled = completed_uploads(parts)
    validator_saw_what_was_sent(settled)
    canonical = {ext: fmt.content_types[0] for fmt in promises.ACCEPTED_FORMATS for ext in fmt.extensions}
    stored_types = {s.name: (s.result.document or {})["image"]["content_type"] for s in settled}
    expected = {s.name: canonical[s.name.rsplit(".", 1)[1].lower()] for s in settled}
    assert stored_types == expected, "the stored content type is the format's canonical type"


# --- legal images that are easy to get wrong, and real photographs -------------------------------

VARIANTS = [
    *(f"jpeg_orientation_{n}" for n in range(1, 9)),
    "cmyk_jpeg",
    "png_16bit",
    "palette_png_transparent",
    "gif",
    "animated_webp",
    "progressive_jpeg",
    "greyscale_alpha_png",
]
PHOTOGRAPHS = ["photo_grace_hopper", "photo_matplotlib_logo", "photo_minduka"]


@pytest.mark.agent("thumbnailer")
@labels(
    "Contract",
    "Orientations 1-8, CMYK, 16-bit, palette, animated, progressive, LA complete",
    Severity.CRITICAL,
)
def test_every_legal_variant_completes_and_is_thumbnailed_upright(
    completed_uploads: CompletedUploads,
) -> None:
    settled = completed_uploads([part(kind) for kind in VARIANTS])
    validator_saw_what_was_sent(settled)
    with allure.step("Each orientation is recorded and applied: 5 to 8 swap width and height"):
        oriented = {s.name: s for s in settled if s.name.startswith("oriented-")}
        found = {
            name: (
                s.result.output("exif").get("orientation"),
                s.result.output("thumbnailer").get("width"),
                s.result.output("thumbnailer").get("height"),
            )
            for name, s in oriented.items()
        }
        expected = {}
        for name, s in oriented.items():
            n = int(name.removeprefix("oriented-").removesuffix(".jpg"))
            _, width, height = _pixels(s.part[1])
            expected[name] = (n, *((width, height) if n < 5 else (height, width)))
        assert found == expected, (
            f"(orientation, thumbnail width, height) recorded vs promised: {found} != {expected}"
        )


@labels("Contract", "Real photographs shipped in a package complete", Severity.CRITICAL)
def test_real_photographs_from_matplotlib_complete(completed_uploads: CompletedUploads) -> None:
    settled = completed_uploads([part(kind) for kind in PHOTOGRAPHS])
    validator_saw_what_was_sent(settled)


# --- every common format outside the allow-list ----------------------------------------------------

# The extra refusals that are not image formats, with the reason each is given at upload.
NOT_IMAGES = [("zero_bytes", promises.EMPTY), ("html", promises.NOT_ACCEPTED)]


def _refused_presentations() -> list[tuple[str, list[Part]]]:
    """Each refused format: as itself, under its name with a JPEG type, under a .jpg name with its type."""

    def own(kind: str) -> Part:
        return part(kind)

    def jpeg_type(kind: str) -> Part:
        return part(kind, content_type="image/jpeg")

    def jpg_name(kind: str) -> Part:
        return part(kind, f"{kind}-renamed.jpg")

    kinds = [f.kind for f in promises.REFUSED_FORMATS]
    return [
        ("as itself", [own(k) for k in kinds]),
        ("typed as JPEG", [jpeg_type(k) for k in kinds]),
        ("named .jpg", [jpg_name(k) for k in kinds]),
    ]


@pytest.mark.parametrize(
    ("presentation", "bad"), _refused_presentations(), ids=[name for name, _ in _refused_presentations()]
)
@labels(
    "Contract",
    "Every common format outside the allow-list is refused at upload, nothing stored",
    Severity.CRITICAL,
)
def test_every_refused_format_is_refused_at_upload_with_its_reason_and_nothing_stored(
    presentation: str,
    bad: list[Part],
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    only_stored: OnlyStored,
) -> None:
    session = api_session(new_user)
    good = part("tiny_png", "the-good-one.png")
    # The good file rides with the first request's refused ones; a request of refused files only is a 400.
    first = promises.MAX_FILES_PER_REQUEST - 1
    refused: dict[str, str] = {}
    accepted: dict[str, str] = {}
    for batch in [[*bad[:first], good], *chunks(bad[first:])]:
        response = session.upload(batch)
        no_server_error(response)
        status = 201 if good in batch else 400
        assert response.status_code == status, (
            f"{presentation}: answered {response.status_code}: {response.text[:300]}"
        )
        refused.update(refusals(response))
        accepted.update(accepted_ids(response))
    expected = {name: promises.NOT_ACCEPTED.format(name=name) for name, _, _ in bad}
    assert refused == expected, f"{presentation}: refusals differ from the contract"
    assert list(accepted) == [good[0]], f"{presentation}: accepted {sorted(accepted)}"
    result = workflow_watcher.watch(accepted[good[0]])
    assert result.completed, result.message
    only_stored(accepted.values())


@labels("Contract", "Empty and non-image files are refused at upload, nothing stored", Severity.NORMAL)
def test_empty_and_non_image_files_are_refused_at_upload_and_nothing_stored(
    new_user: TestUser, api_session: ApiFor, only_stored: OnlyStored
) -> None:
    response = api_session(new_user).upload([part(kind) for kind, _ in NOT_IMAGES])
    no_server_error(response)
    assert response.status_code == 400, f"answered {response.status_code}: {response.text[:300]}"
    expected = {
        SAMPLES[kind].filename: reason.format(name=SAMPLES[kind].filename) for kind, reason in NOT_IMAGES
    }
    assert refusals(response) == expected
    only_stored([])


def rejected_by_content(
    session: ApiSession, watcher: WorkflowWatcher, manifest: Manifest, files: Mapping[str, tuple[bytes, str]]
) -> None:
    """Upload each file (name: bytes, promised reason) as a JPEG: the validator alone rejects each."""
    parts = [(name, data, "image/jpeg") for name, (data, _) in files.items()]
    ids: dict[str, str] = {}
    for batch in chunks(parts):
        response = session.upload(batch)
        no_server_error(response)
        assert response.status_code == 201, f"answered {response.status_code}: {response.text[:300]}"
        ids.update(accepted_ids(response))
    assert set(ids) == set(files), f"named and typed as JPEG, the upload check lets them by: {sorted(ids)}"
    reasons: dict[str, object] = {}
    wrong_steps: dict[str, object] = {}
    for name, workflow_id in ids.items():
        result = watcher.watch(workflow_id)
        assert result.reached, result.message
        api_agrees(result, session)
        document = result.document or {}
        reasons[name] = (result.status, document.get("reason"))
        steps = {
            agent: (result.step(agent).get("status"), result.step(agent).get("attempts"))
            for agent in manifest.agent_names
        }
        expected_steps = {
            agent: ("rejected", 1) if agent == "validator" else ("skipped", 0)
            for agent in manifest.agent_names
        }
        if steps != expected_steps:
            wrong_steps[name] = steps
    assert reasons == {name: ("rejected", reason) for name, (_, reason) in files.items()}
    assert not wrong_steps, f"a rejection is the validator's alone, every other step skipped: {wrong_steps}"


@pytest.mark.agent("validator")
@labels(
    "Contract",
    "A refused format disguised as a JPEG is rejected by content with its reason",
    Severity.CRITICAL,
)
def test_every_refused_format_disguised_as_jpeg_is_rejected_by_the_validator_with_its_reason(
    pipeline_scene: PipelineScene,
) -> None:
    scene = pipeline_scene
    disguised = {
        f"{f.kind}-disguised.jpg": (SAMPLES[f.kind].generate(), f.validator_reason)
        for f in promises.REFUSED_FORMATS
    }
    rejected_by_content(scene.session, scene.watcher, scene.manifest, disguised)
    with allure.step("A rejected upload has no thumbnail or any derived object"):
        stored = stored_for(scene.user, scene.bucket, scene.target)
        assert not stored.thumbnails, f"thumbnails of rejected uploads: {sorted(stored.thumbnails)}"


@pytest.mark.agent("validator")
@labels(
    "Contract",
    "SVG, HTML and PDF in every shape real files take are rejected by content with their reason",
    Severity.CRITICAL,
)
def test_every_shape_of_svg_html_and_pdf_is_rejected_by_the_validator_with_its_reason(
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> None:
    variants = {v.name: (v.generate(), v.reason) for v in REFUSED_VARIANTS}
    rejected_by_content(api_session(new_user), workflow_watcher, pipeline_manifest, variants)


# --- limits: at the limit accepted, one past refused ------------------------------------------------


def _name_of_length(length: int, extension: str = "png") -> str:
    stem = "n" * (length - len(extension) - 1)
    return f"{stem}.{extension}"


@pytest.mark.agent("validator")
@labels(
    "Contract",
    "Every limit at the limit is accepted: bytes, pixels, name, files per request",
    Severity.CRITICAL,
)
def test_every_limit_at_the_limit_is_accepted_and_completes(completed_uploads: CompletedUploads) -> None:
    at_limit = [
        part("jpeg_at_size_limit"),
        part("png_at_pixel_limit"),
        part("tiny_png", _name_of_length(promises.MAX_NAME_LENGTH)),
    ]
    fill = [part("tiny_png", f"fill-{i}.png") for i in range(promises.MAX_FILES_PER_REQUEST - len(at_limit))]
    parts = [*at_limit, *fill]
    assert len(parts) == promises.MAX_FILES_PER_REQUEST
    assert len(parts[0][1]) == promises.MAX_FILE_BYTES
    settled = completed_uploads(parts)
    validator_saw_what_was_sent(settled[:2])
    names = [(s.result.document or {})["image"]["filename"] for s in settled]
    assert names == [p[0] for p in parts], "a name at the length limit is kept as sent"


@pytest.mark.agent("validator")
@labels(
    "Contract", "Every limit one past is refused: bytes, pixels; a long name is shortened", Severity.CRITICAL
)
def test_every_limit_one_past_is_refused_or_shortened_as_promised(
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    only_stored: OnlyStored,
) -> None:
    too_long = _name_of_length(promises.MAX_NAME_LENGTH + 1)
    over_size, over_pixels = part("jpeg_over_size_limit"), part("png_over_pixel_limit")
    response = api_session(new_user).upload([over_size, over_pixels, part("tiny_png", too_long)])
    no_server_error(response)
    assert response.status_code == 201, f"answered {response.status_code}: {response.text[:300]}"
    assert refusals(response) == {over_size[0]: promises.TOO_LARGE.format(name=over_size[0])}
    ids = accepted_ids(response)
    shortened = [name for name in ids if name != over_pixels[0]]
    assert len(shortened) == 1, f"accepted: {sorted(ids)}"
    [name] = shortened
    assert len(name) == promises.MAX_NAME_LENGTH, f"a {len(too_long)}-char name became {len(name)} chars"
    assert name.endswith(".png"), f"the extension is kept: {name}"
    assert too_long.startswith(name.removesuffix(".png")), name
    assert workflow_watcher.watch(ids[name]).completed
    rejected = workflow_watcher.watch(ids[over_pixels[0]])
    assert rejected.status == "rejected", rejected.message
    _, width, height = _pixels(over_pixels[1])
    pixels = width * height
    assert pixels == promises.MAX_PIXELS + 1
    assert (rejected.document or {}).get("reason") == promises.VALIDATOR_OVER_PIXELS.format(pixels=pixels)
    only_stored(ids.values())


@labels("Contract", "One file past the per-request count refuses the request whole", Severity.CRITICAL)
def test_one_file_past_the_per_request_count_is_refused_whole_and_nothing_stored(
    new_user: TestUser, api_session: ApiFor, only_stored: OnlyStored
) -> None:
    parts = [part("tiny_png", f"many-{i}.png") for i in range(promises.MAX_FILES_PER_REQUEST + 1)]
    response = api_session(new_user).upload(parts)
    no_server_error(response)
    assert response.status_code == 400, f"answered {response.status_code}: {response.text[:300]}"
    assert refusals(response) == {name: promises.TOO_MANY_FILES.format(name=name) for name, _, _ in parts}
    only_stored([])


@labels(
    "Contract", "A request at the byte limit is read; one byte past is refused with 413", Severity.CRITICAL
)
def test_request_at_the_byte_limit_is_read_and_one_byte_past_is_refused_with_413(
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    only_stored: OnlyStored,
) -> None:
    session = api_session(new_user)
    good = FilePart("small.png", SAMPLES["tiny_png"].generate(), "image/png")

    def request_of(size: int) -> list[FilePart]:
        # A padding file fills the body to the exact size; it is itself refused for its own size.
        bare = len(_body([good, FilePart("padding.jpg", b"", "image/jpeg")]))
        return [good, FilePart("padding.jpg", b"\x00" * (size - bare), "image/jpeg")]

    past = upload_parts(session, request_of(promises.MAX_REQUEST_BYTES + 1))
    no_server_error(past)
    assert past.status_code == 413, f"one byte past the request limit answered {past.status_code}"
    assert past.json().get("error") == promises.REQUEST_TOO_LARGE
    only_stored([])

    at = upload_parts(session, request_of(promises.MAX_REQUEST_BYTES))
    no_server_error(at)
    assert at.status_code == 201, f"a request at the limit answered {at.status_code}: {at.text[:300]}"
    assert refusals(at) == {"padding.jpg": promises.TOO_LARGE.format(name="padding.jpg")}
    ids = accepted_ids(at)
    assert workflow_watcher.watch(ids["small.png"]).completed
    only_stored(ids.values())


def _body(parts: Sequence[FilePart]) -> bytes:
    return multipart({}, parts)[0]


# --- metadata in each container: kept or removed as promised, location never -------------------------


def _location_found(data: bytes) -> list[str]:
    """Where the fixtures' position remains in an image: the independent privacy oracle's findings."""
    return privacy.blob_leaks(data, POSITION)


@pytest.mark.agent("thumbnailer")
@labels(
    "Contract", "Metadata in each container survives or is removed as promised; GPS never", Severity.CRITICAL
)
def test_metadata_in_every_container_is_kept_or_removed_as_promised_and_location_never_kept(
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
    upload_bucket: storage.Bucket,
) -> None:
    promised = {SAMPLES[p.kind].filename: p for p in promises.METADATA_PROMISES}
    settled = upload_all(
        api_session(new_user), workflow_watcher, [part(p.kind) for p in promises.METADATA_PROMISES]
    )
    all_completed_once(settled, pipeline_manifest)
    wrong: dict[str, str] = {}
    for item in settled:
        promise = promised[item.name]
        document = item.result.document or {}
        original = upload_bucket.blob(document["image"]["object"]).download_as_bytes()
        thumbnail = upload_bucket.blob(item.result.output("thumbnailer")["object"]).download_as_bytes()
        assert promise.marker in item.part[1], f"the {promise.container} sample lacks its own marker"
        if (promise.marker in original) != promise.kept:
            wrong[f"{promise.container}: original"] = "kept" if promise.marker in original else "removed"
        if promise.marker in thumbnail:
            wrong[f"{promise.container}: thumbnail"] = "carries the metadata"
        for where, data in (("original", original), ("thumbnail", thumbnail)):
            if located := _location_found(data):
                wrong[f"{promise.container}: {where}"] = f"location left: {located}"
        ids = (new_user.uid, item.result.workflow_id)
        if leaks := privacy.document_leaks(document, POSITION, identifiers=ids):
            wrong[f"{promise.container}: document"] = f"location left: {leaks}"
        if _location_found(item.part[1]) and document["image"].get("gps_removed") is not True:
            wrong[f"{promise.container}: gps_removed"] = str(document["image"].get("gps_removed"))
    assert not wrong, f"metadata not as promised: {wrong}"


# --- every rule the pages enforce, held against the server over plain HTTP (no browser) ------------


def _field_errors(body: str) -> dict[str, str]:
    """{field: message} of the per-field errors a form page shows."""
    return {
        field: element_text(body, f"{field}-error")
        for field in ("email", "password", "confirm")
        if f'data-testid="{field}-error"' in body
    }


def _email_of_length(length: int) -> str:
    """A unique, well-formed address of exactly length characters."""
    domain = "@example.test"
    return unique_name("e2e").ljust(length - len(domain), "x") + domain


# Each case's email is built per run (unique, so no two runs share a rate-limit counter).
EMAILS: dict[str, Callable[[], str]] = {
    "malformed": lambda: unique_name("not-an-email"),
    "no-domain": lambda: unique_name("e2e") + "@",
    "no-local-part": lambda: "@" + unique_name("e2e") + ".test",
    "two-ats": lambda: unique_name("e2e") + "@@example.test",
    "one-past-length": lambda: _email_of_length(promises.MAX_EMAIL_LENGTH + 1),
    "at-length": lambda: _email_of_length(promises.MAX_EMAIL_LENGTH),
}


@labels("Contract", "The pages state the table's rules (accept=, size hint, password hint)", Severity.NORMAL)
def test_pages_state_the_rules_of_the_table(new_user: TestUser, api_session: ApiFor, target: Target) -> None:
    visitor = ApiSession(target)
    register_page, _ = form_with_token(visitor.http, visitor.base, "/register")
    visitor.close()
    assert promises.PASSWORD_HINT in register_page, "the registration page states the password rule"
    dashboard = api_session(new_user).http.get(f"{target.dashboard_url}/", timeout=HTTP_TIMEOUT_SECONDS)
    assert f'accept="{promises.PAGE_ACCEPT}"' in dashboard.text, "the file input offers the allow-list"
    assert promises.file_hint() in dashboard.text, "the upload form states the per-file limit"


REGISTRATION_CASES = [
    # (email kind, password, confirmation differs) -> the fields the server must refuse
    pytest.param("malformed", "Ab1", True, {"email", "password", "confirm"}, id="malformed-weak-differs"),
    pytest.param("no-domain", "onlyletters", False, {"email", "password"}, id="no-domain-no-digit"),
    pytest.param("no-local-part", "1234567890", False, {"email", "password"}, id="no-local-part-no-letter"),
    pytest.param("two-ats", "abcdef1", False, {"email", "password"}, id="two-ats-one-char-short"),
    pytest.param("one-past-length", "Abcdefg1", False, {"email"}, id="email-one-past-length"),
    # At every limit: only the differing confirmation is refused, so nothing reaches Auth.
    pytest.param("at-length", "abcdefg1", True, {"confirm"}, id="at-the-limits"),
]


@pytest.mark.parametrize(("email_kind", "password", "differs", "refused"), REGISTRATION_CASES)
@labels("Contract", "Registration rules hold on the server, not only in the browser", Severity.CRITICAL)
def test_registration_rules_hold_over_plain_http(
    email_kind: str,
    password: str,
    differs: bool,
    refused: set[str],
    target: Target,
    identity_toolkit: IdentityToolkit,
) -> None:
    email = EMAILS[email_kind]()
    assert len(email) <= promises.MAX_EMAIL_LENGTH or email_kind == "one-past-length", email
    form = {"email": email, "password": password, "confirm_password": password + ("x" if differs else "")}
    response = post_form(target, "/register", form)
    no_server_error(response, "POST /register")
    assert response.status_code == 400, f"answered {response.status_code}, expected a refusal"
    messages = {
        "email": promises.INVALID_EMAIL,
        "password": promises.WEAK_PASSWORD,
        "confirm": promises.PASSWORDS_DIFFER,
    }
    assert _field_errors(response.text) == {field: messages[field] for field in refused}
    exists = identity_toolkit.account_exists(email)
    if exists is None:
        pytest.skip("the server refused the form; whether an account was made is seen only on the emulator")
    assert exists is False, "a refused registration made an account"


@labels("Contract", "Login rules hold on the server, not only in the browser", Severity.NORMAL)
def test_login_rules_hold_over_plain_http(target: Target) -> None:
    response = post_form(target, "/login", {"email": "not-an-email", "password": "", "next": "/"})
    no_server_error(response, "POST /login")
    assert response.status_code == 400, f"answered {response.status_code}"
    assert _field_errors(response.text) == {
        "email": promises.INVALID_EMAIL,
        "password": promises.MISSING_PASSWORD,
    }


@labels(
    "Contract", "The upload form's own route refuses what the API refuses, over plain HTTP", Severity.CRITICAL
)
def test_the_upload_form_route_refuses_what_the_api_refuses(
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    only_stored: OnlyStored,
) -> None:
    session = api_session(new_user)
    _, token = form_with_token(session.http, session.base, "/")
    refused = [part("tiff"), part("jpeg_over_size_limit"), part("svg", "drawing.jpg", "image/svg+xml")]
    good = part("tiny_png", "form-good.png")
    response = session.http.post(
        f"{session.base}/",
        data={"csrf_token": token},
        files=[("files", p) for p in [*refused, good]],
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    no_server_error(response, "POST / (the upload form)")
    assert response.status_code == 200, f"the form's redirect ended at {response.status_code}"
    shown = re.findall(r'data-testid="upload-error">([^<]*)<', response.text)
    expected = [
        promises.NOT_ACCEPTED.format(name="scan.tif"),
        promises.TOO_LARGE.format(name=refused[1][0]),
        promises.NOT_ACCEPTED.format(name="drawing.jpg"),
    ]
    assert [html.unescape(s) for s in shown] == expected, "the page shows each refusal with its reason"
    [workflow_id] = ROW_PATTERN.findall(response.text)
    assert workflow_watcher.watch(workflow_id).completed
    only_stored([workflow_id])
