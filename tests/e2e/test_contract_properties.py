"""Property-based contract scenarios: generated images complete, malformed files and pushes are refused.

Hypothesis draws the inputs (profiles in fixtures/hypothesis_profiles.py: a fixed small budget in
the gate, a larger random one in `nox -s fuzz`). Whatever is drawn, the system answers on purpose:
never a 5xx, every refusal one line, every accepted upload ends completed or rejected (never failed,
never stuck), and what was stored before is still there, unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import random
import re
from collections.abc import Callable
from typing import Any

import allure
import pytest
import requests
from contract_checks import PipelineScene, no_server_error, one_line, refusals
from google.cloud import storage
from hypothesis import given
from hypothesis import strategies as st
from PIL import ExifTags, Image
from pipeline_checks import completed, every_agent_once

from fixtures import promises
from fixtures.firestore import WatchResult, WorkflowWatcher
from fixtures.images import PDF_MAX_JUNK, SAMPLES, VARIANT_SHAPES, RefusedVariant
from fixtures.reporting import labels
from fixtures.scrubber import register_secret
from fixtures.target import Target, stack_push_token
from fixtures.uploads import HTTP_TIMEOUT_SECONDS, ApiSession, accepted_ids
from fixtures.users import TestUser
from imageflow.config import PUSH_TOKEN_PARAM
from imageflow.manifest import Manifest

Part = tuple[str, bytes, str]
ApiFor = Callable[[TestUser], ApiSession]
Severity = allure.severity_level

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
# The modes each format really stores (Pillow converts anything else on save).
MODES = {
    "JPEG": ("RGB", "L", "CMYK"),
    "PNG": ("RGB", "RGBA", "L", "LA", "P", "I;16", "1"),
    "WEBP": ("RGB", "RGBA"),
    "GIF": ("P", "L"),
}


# --- strategies ---------------------------------------------------------------------------------------


def _pixels(size: tuple[int, int], seed: int, mode: str) -> Image.Image:
    """Seeded noise over a gradient (reproducible for a given draw), in the wanted mode."""
    noise = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(gradient, noise, 0.4)
    if mode == "I;16":
        return image.convert("L").convert("I").point(lambda value: value * 257).convert("I;16")
    if mode == "P":
        return image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return image.convert(mode)


@st.composite
def legal_images(draw: st.DrawFn) -> tuple[Part, tuple[str, int, int]]:
    """A valid image of a drawn format, mode, size, EXIF orientation and camera make; and its facts."""
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    size = (draw(st.integers(1, 320)), draw(st.integers(1, 320)))
    image = _pixels(size, draw(st.integers(0, 2**16)), mode)
    params: dict[str, Any] = {}
    if fmt != "GIF":
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = draw(st.integers(1, 8))
        make = draw(st.none() | st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=24))
        if make:
            exif[ExifTags.Base.Make] = make
        params["exif"] = exif.tobytes()
    if fmt == "GIF" and draw(st.booleans()):
        frames = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
        params.update(save_all=True, append_images=frames[1:], duration=100)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    name = f"generated-{fmt.lower()}-{mode.replace(';', '')}-{size[0]}x{size[1]}.{EXTENSIONS[fmt]}"
    return (name, buffer.getvalue(), TYPES[fmt]), (fmt, *size)


BASES = ["plain_jpeg", "tiny_png", "png_with_alpha", "webp", "gif", "progressive_jpeg", "jpeg_with_exif_gps"]
MAGICS = [
    b"\xff\xd8\xff\xe0",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"GIF89a",
    b"II*\x00",
    b"%PDF-1.7",
]
# What a hostile file appends to a real image, so one file reads as two things.
TRAILERS = [
    b"<script>alert(document.domain)</script>",
    b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(20),
    b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    b"<?php echo 1; ?>",
]


@st.composite
def malformed_files(draw: st.DrawFn) -> Part:
    """A real image broken on purpose (truncated, wrong magic, bits flipped, polyglot) or random bytes."""
    data = SAMPLES[draw(st.sampled_from(BASES))].generate()
    how = draw(st.sampled_from(["truncated", "wrong-magic", "flipped", "polyglot", "random"]))
    if how == "truncated":
        data = data[: draw(st.integers(1, len(data) - 1))]
    elif how == "wrong-magic":
        magic = draw(st.sampled_from(MAGICS))
        data = magic + data[len(magic) :]
    elif how == "flipped":
        mutable = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            mutable[position] ^= draw(st.integers(1, 255))
        data = bytes(mutable)
    elif how == "polyglot":
        trailer = draw(st.sampled_from(TRAILERS))
        data = trailer + data if draw(st.booleans()) else data + trailer
    else:
        data = draw(st.binary(min_size=1, max_size=4096))
    fmt = draw(st.sampled_from(sorted(EXTENSIONS)))
    declared = draw(st.sampled_from([TYPES[fmt], *promises.UNTYPED_CONTENT_TYPES]))
    return f"fuzz-{how}.{EXTENSIONS[fmt]}", data, declared


# Filler up to past the largest window a sniffer might use for what precedes the root (8 KiB and more).
MAX_FILLER = 10 * 1024


@st.composite
def refused_variants(draw: st.DrawFn) -> RefusedVariant:
    """A legal SVG, HTML or PDF file of a drawn shape and filler length (the PDF's within its 1024 bytes)."""
    fmt = draw(st.sampled_from(sorted(VARIANT_SHAPES)))
    shape = draw(st.sampled_from(VARIANT_SHAPES[fmt]))
    return RefusedVariant(fmt, shape, draw(st.integers(0, PDF_MAX_JUNK if fmt == "PDF" else MAX_FILLER)))


def _numbered(parts: list[Part]) -> list[Part]:
    """The parts with unique names, so each answer can be matched to its file."""
    return [(f"{i}-{name}", data, declared) for i, (name, data, declared) in enumerate(parts)]


# --- the two ways in: the JSON API and the page's upload form --------------------------------------

Answered = tuple[dict[str, str], dict[str, str]]
FLASHED = re.compile(r'data-testid="(flash|upload-error)">([^<]*)<')


def _through_api(session: ApiSession, parts: list[Part]) -> Answered:
    """POST /api/uploads: ({name: workflow id} accepted, {name: reason} refused) from its JSON answer."""
    response = session.post_files(parts)
    no_server_error(response)
    assert response.status_code in (201, 400), f"answered {response.status_code}: {response.text[:300]}"
    return accepted_ids(response), refusals(response)


def _through_form(session: ApiSession, parts: list[Part]) -> Answered:
    """POST / as the page's form does; what was accepted and refused, read from the page it leads to.

    Accepted: the uploads the list gained, each also flashed "Uploaded NAME"; refused: the upload
    errors, each naming its file first (the same reasons the API gives).
    """
    before = {str(row["workflow_id"]) for row in session.uploads().json()}
    response = session.http.post(
        f"{session.base}/",
        data={"csrf_token": session.csrf_token},
        files=[("files", p) for p in parts],
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    no_server_error(response, "POST / (the upload form)")
    assert response.status_code == 200, f"the form's redirect ended at {response.status_code}"
    flashed = [(kind, html.unescape(text)) for kind, text in FLASHED.findall(response.text)]
    gained = {
        str(row["filename"]): str(row["workflow_id"])
        for row in session.uploads().json()
        if str(row["workflow_id"]) not in before
    }
    uploaded = sorted(text.removeprefix("Uploaded ") for kind, text in flashed if kind == "flash")
    assert uploaded == sorted(gained), (
        f"the page says it uploaded {uploaded}, the list gained {sorted(gained)}"
    )
    refused: dict[str, str] = {}
    for text in (text for kind, text in flashed if kind == "upload-error"):
        named = [p[0] for p in parts if text.startswith(p[0])]
        assert len(named) == 1, f"the upload error {text!r} names none of the files (or several): {named}"
        refused[named[0]] = text
    return gained, refused


CHANNELS: dict[str, Callable[[ApiSession, list[Part]], Answered]] = {
    "POST /api/uploads": _through_api,
    "POST /": _through_form,
}


# --- the sentinel: an upload made before the hostile ones, that must come out of them untouched ----


def _settled_state(result: WatchResult, bucket: storage.Bucket) -> dict[str, Any]:
    document = result.document or {}
    steps = document.get("steps") or {}
    blob = bucket.blob(document["image"]["object"])
    return {
        "status": document.get("status"),
        "outputs": {name: step.get("output") for name, step in steps.items()},
        "attempts": {name: step.get("attempts") for name, step in steps.items()},
        "original": hashlib.sha256(blob.download_as_bytes()).hexdigest(),
    }


def _sentinel(session: ApiSession, watcher: WorkflowWatcher, manifest: Manifest) -> WatchResult:
    image = SAMPLES["plain_jpeg"]
    response = session.upload([("sentinel.jpg", image.generate(), image.content_type)])
    assert response.status_code == 201, f"the sentinel upload answered {response.status_code}"
    result = completed(watcher, accepted_ids(response)["sentinel.jpg"])
    every_agent_once(result, manifest)
    return result


def _unchanged(
    before: dict[str, Any], watcher: WorkflowWatcher, workflow_id: str, bucket: storage.Bucket
) -> None:
    with allure.step("The upload stored before the hostile input is unchanged"):
        after = _settled_state(watcher.watch(workflow_id), bucket)
        assert after == before, f"the earlier upload changed: {before} -> {after}"


# --- uploads --------------------------------------------------------------------------------------------


@labels(
    "Contract",
    "Generated legal images (format, mode, size, orientation, EXIF) all complete",
    Severity.CRITICAL,
)
def test_generated_legal_images_complete_with_the_facts_they_were_made_with(
    new_user: TestUser, api_session: ApiFor, workflow_watcher: WorkflowWatcher, pipeline_manifest: Manifest
) -> None:
    session = api_session(new_user)

    @given(st.lists(legal_images(), min_size=1, max_size=3))
    def uploads_complete(drawn: list[tuple[Part, tuple[str, int, int]]]) -> None:
        parts = _numbered([p for p, _ in drawn])
        response = session.post_files(parts)
        no_server_error(response)
        assert response.status_code == 201, f"answered {response.status_code}: {response.text[:300]}"
        ids = accepted_ids(response)
        assert set(ids) == {p[0] for p in parts}, f"refused: {refusals(response)}"
        for (name, data, _), (fmt, width, height) in zip(parts, [f for _, f in drawn], strict=True):
            result = completed(workflow_watcher, ids[name])
            every_agent_once(result, pipeline_manifest)
            output = result.output("validator")
            found = (output.get("format"), output.get("width"), output.get("height"), output.get("bytes"))
            assert found == (fmt, width, height, len(data)), f"{name}: validator recorded {found}"

    uploads_complete()


@labels(
    "Contract",
    "Malformed files: never a 5xx, a one-line reason, never failed, nothing lost",
    Severity.CRITICAL,
)
def test_malformed_files_are_refused_or_rejected_on_purpose_and_nothing_stored_is_lost(
    new_user: TestUser,
    api_session: ApiFor,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
    upload_bucket: storage.Bucket,
) -> None:
    session = api_session(new_user)
    sentinel = _sentinel(session, workflow_watcher, pipeline_manifest)
    before = _settled_state(sentinel, upload_bucket)

    @given(st.sampled_from(sorted(CHANNELS)), st.lists(malformed_files(), min_size=1, max_size=4))
    def answered_on_purpose(channel: str, drawn: list[Part]) -> None:
        parts = _numbered(drawn)
        ids, refused = CHANNELS[channel](session, parts)
        answered = {"accepted": sorted(ids), "refused": sorted(refused)}
        assert set(ids) | set(refused) == {p[0] for p in parts}, (
            f"{channel}: not every file answered: {answered}"
        )
        for name, reason in refused.items():
            one_line(reason, f"the refusal of {name}")
        for name, workflow_id in ids.items():
            result = workflow_watcher.watch(workflow_id)
            assert result.reached, result.message
            assert result.status in ("completed", "rejected"), (
                f"{name} ended {result.status}: {result.message}"
            )
            if result.status == "rejected":
                one_line((result.document or {}).get("reason"), f"the rejection of {name}")
            else:
                every_agent_once(result, pipeline_manifest)

    answered_on_purpose()
    _unchanged(before, workflow_watcher, sentinel.workflow_id, upload_bucket)


@pytest.mark.agent("validator")
@labels(
    "Contract",
    "Generated SVG, HTML and PDF shapes disguised as JPEG are rejected with their reason",
    Severity.CRITICAL,
)
def test_generated_svg_html_and_pdf_shapes_are_rejected_by_the_validator_with_their_reason(
    new_user: TestUser, api_session: ApiFor, workflow_watcher: WorkflowWatcher
) -> None:
    session = api_session(new_user)

    @given(st.lists(refused_variants(), min_size=1, max_size=3))
    def rejected_with_their_reason(drawn: list[RefusedVariant]) -> None:
        parts = _numbered([(v.name, v.generate(), "image/jpeg") for v in drawn])
        response = session.post_files(parts)
        no_server_error(response)
        assert response.status_code == 201, f"answered {response.status_code}: {response.text[:300]}"
        ids = accepted_ids(response)
        assert set(ids) == {p[0] for p in parts}, f"typed as JPEG, refused at upload: {refusals(response)}"
        for (name, _, _), variant in zip(parts, drawn, strict=True):
            result = workflow_watcher.watch(ids[name])
            assert result.reached, result.message
            found = (
                result.status,
                (result.document or {}).get("reason"),
                result.step("validator").get("status"),
            )
            assert found == ("rejected", variant.reason, "rejected"), f"{name}: {found}"

    rejected_with_their_reason()


# --- push endpoints ---------------------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=24)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _b64_json(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def push_bodies(known_ids: list[str]) -> st.SearchStrategy[bytes]:
    """Push request bodies: envelopes broken at every step parse_envelope takes, and raw garbage."""
    workflow_ids = (
        st.sampled_from(known_ids) | st.from_regex(r"[0-9a-f]{32}", fullmatch=True) | st.text(max_size=140)
    )
    payloads = st.fixed_dictionaries(
        {"workflow_id": workflow_ids | json_values},
        optional={"owner": _json_scalars, "bucket": _json_scalars, "object": _json_scalars},
    )
    data = st.one_of(
        payloads.map(_b64_json),
        json_values.map(_b64_json),
        st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()),
        st.text(max_size=40),
        json_values,
    )
    message = st.fixed_dictionaries(
        {},
        optional={
            "data": data,
            "attributes": st.dictionaries(st.sampled_from(["lane", "workflow_id", "x"]), st.text(max_size=30))
            | json_values,
            "messageId": _json_scalars,
        },
    )
    envelopes = st.fixed_dictionaries(
        {"message": message | json_values},
        optional={"subscription": _json_scalars, "deliveryAttempt": _json_scalars},
    )
    return (envelopes | json_values).map(lambda value: json.dumps(value).encode()) | st.binary(max_size=256)


def _push_token(target: Target) -> str:
    """The local stack's push verification token ("" when the agents require none or it is not ours)."""
    token = stack_push_token() if target.is_local else ""
    if token:
        register_secret(token, "the local push verification token")
    return token


@labels(
    "Contract",
    "Malformed pushes at every agent: a 4xx with a one-line reason, nothing changed",
    Severity.CRITICAL,
)
def test_malformed_pushes_at_every_agent_are_refused_with_a_one_line_reason_and_change_nothing(
    pipeline_scene: PipelineScene,
) -> None:
    scene = pipeline_scene
    pipeline_manifest, target, workflow_watcher = scene.manifest, scene.target, scene.watcher
    urls = target.agent_urls(pipeline_manifest.agent_names)
    unknown = sorted(set(pipeline_manifest.agent_names) - set(urls))
    if unknown:
        pytest.skip(f"the target names no URL for agents {unknown}")
    token = _push_token(target)
    if not token:
        # Without the push identity every push is refused before its envelope is read: nothing to judge.
        pytest.skip("no push token for this target's agents (on Cloud Run only the push identity may push)")
    query = {PUSH_TOKEN_PARAM: token}
    sentinel = _sentinel(scene.session, workflow_watcher, pipeline_manifest)
    before = _settled_state(sentinel, scene.bucket)
    http = requests.Session()

    @given(st.sampled_from(sorted(urls)), push_bodies([sentinel.workflow_id]), st.booleans())
    def refused_on_purpose(agent: str, body: bytes, as_json: bool) -> None:
        headers = {"Content-Type": "application/json" if as_json else "application/octet-stream"}
        response = http.post(
            urls[agent] + "/",
            params=query,
            data=body,
            headers=headers,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        no_server_error(response, f"a push at {agent}")
        # A refusal at the token check would pass every envelope unread.
        assert response.status_code not in (401, 403), f"{agent} refused the stack's push token"
        try:
            answer = response.json()
        except ValueError:
            answer = None
        assert isinstance(answer, dict), f"{agent} answered {response.status_code} without a JSON object"
        if response.status_code >= 400:
            one_line(answer.get("error"), f"{agent}'s {response.status_code}")
        else:
            # Only a well-formed push naming a real workflow may succeed: a duplicate of done work.
            assert sentinel.workflow_id.encode() in base64.b64decode(json.loads(body)["message"]["data"]), (
                f"{agent} accepted a push for no known workflow: {answer}"
            )
            assert answer.get("outcome") == "duplicate", f"{agent} redid done work: {answer}"

    try:
        refused_on_purpose()
    finally:
        http.close()
    _unchanged(before, workflow_watcher, sentinel.workflow_id, scene.bucket)
