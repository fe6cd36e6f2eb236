"""Dashboard uploads in-process against the real emulators: accepted, refused, stored, queued, isolated."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from PIL import ExifTags, Image

from fixtures import images, promises
from fixtures.dashboard import FilePart, SignedIn, element_text, picked_up, text
from fixtures.firestore import WorkflowWatcher
from fixtures.reporting import labels
from imageflow import clients
from imageflow.manifest import Manifest
from imageflow.workflow import COLLECTION
from stack.state import StackState

ONLY_IMAGES = ": only JPEG, PNG, WebP and GIF images are accepted."


def workflows_of(stack: StackState, uid: str) -> list[dict[str, Any]]:
    """Every workflow document owned by uid (admin read)."""
    query = (
        clients.firestore_client(stack.project)
        .collection(COLLECTION)
        .where(filter=FieldFilter("owner", "==", uid))
    )
    return [snapshot.to_dict() or {} for snapshot in query.stream()]


def objects_of(stack: StackState, uid: str) -> list[str]:
    """Every stored object of uid (originals and thumbnails)."""
    bucket = clients.storage_client(stack.project).bucket(stack.bucket)
    return [
        blob.name
        for prefix in (promises.ORIGINALS_PREFIX, promises.THUMBNAILS_PREFIX)
        for blob in bucket.list_blobs(prefix=f"{prefix}/{uid}/")
    ]


def stored_bytes(stack: StackState, name: str) -> bytes:
    """The bytes of a stored object."""
    return bytes(clients.storage_client(stack.project).bucket(stack.bucket).blob(name).download_as_bytes())


def jpeg(name: str = "photo.jpg") -> FilePart:
    """A real JPEG with camera EXIF and a GPS position."""
    return FilePart(name, images.jpeg_with_exif_gps(), "image/jpeg")


@labels("dashboard", "uploads")
def test_upload_jpeg_creates_workflow_stores_original_without_gps(
    signed_in: SignedIn,
    local_stack: StackState,
    pipeline_manifest: Manifest,
    workflow_watcher: WorkflowWatcher,
) -> None:
    response = signed_in.client.upload_api([jpeg("holiday.jpg")])
    assert response.status_code == 201, text(response)
    body = response.get_json()
    assert body["rejected"] == []
    assert [a["filename"] for a in body["accepted"]] == ["holiday.jpg"]
    workflow_id = body["accepted"][0]["workflow_id"]
    [doc] = workflows_of(local_stack, signed_in.user.uid)
    assert doc["workflow_id"] == workflow_id
    assert doc["agents"] == list(pipeline_manifest.agent_names)
    image = doc["image"]
    assert image["object"] == f"originals/{signed_in.user.uid}/{workflow_id}/holiday.jpg"
    assert image["bucket"] == local_stack.bucket
    assert image["filename"] == "holiday.jpg"
    assert image["content_type"] == "image/jpeg"
    assert image["gps_removed"] is True
    original = stored_bytes(local_stack, image["object"])
    assert image["bytes"] == len(original)
    exif = Image.open(io.BytesIO(original)).getexif()
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo), "the stored original still has a GPS position"
    assert exif.get(ExifTags.Base.Make) == images.CAMERA_MAKE, "stripping GPS lost the rest of the EXIF"
    # Queued: the stack's agents pick the message up (completion is the pipeline's tests' business).
    result = workflow_watcher.watch(workflow_id, until=picked_up(pipeline_manifest))
    assert result.reached, f"no agent took the upload: {result}"


@labels("dashboard", "uploads")
def test_upload_several_files_at_once(signed_in: SignedIn, local_stack: StackState) -> None:
    files = [
        jpeg("one.jpg"),
        FilePart("two.png", images.png_with_alpha(), "image/png"),
        FilePart("three.webp", images.webp(), "image/webp"),
        FilePart("four.gif", images.gif(), "image/gif"),
    ]
    response = signed_in.client.upload_api(files)
    assert response.status_code == 201, text(response)
    accepted = response.get_json()["accepted"]
    assert [a["filename"] for a in accepted] == ["one.jpg", "two.png", "three.webp", "four.gif"]
    assert len({a["workflow_id"] for a in accepted}) == 4
    assert len(workflows_of(local_stack, signed_in.user.uid)) == 4
    listed = signed_in.client.http.get("/api/uploads").get_json()
    assert [row["filename"] for row in listed] == ["four.gif", "three.webp", "two.png", "one.jpg"], (
        "not newest first"
    )


@labels("dashboard", "uploads")
def test_upload_form_flashes_each_file(signed_in: SignedIn) -> None:
    page = signed_in.client.upload_form([jpeg("good.jpg"), FilePart("empty.png", b"", "image/png")])
    assert page.status_code == 200
    body = text(page)
    assert element_text(body, "flash") == "Uploaded good.jpg"
    assert 'role="status" data-testid="flash"' in body
    assert element_text(body, "upload-error") == "empty.png is empty."
    assert 'role="alert" data-testid="upload-error"' in body
    rows = signed_in.client.listed_ids()
    assert len(rows) == 1
    assert 'data-testid="workflow-status"' in text(signed_in.client.http.get("/"))


REFUSALS: list[tuple[str, Callable[[], FilePart], str]] = [
    (
        "zero-byte",
        lambda: FilePart("nothing.jpg", images.zero_bytes(), "image/jpeg"),
        "nothing.jpg is empty.",
    ),
    (
        "oversize",
        lambda: FilePart("huge.jpg", images.oversize_file(), "image/jpeg"),
        "huge.jpg is larger than 10 MiB.",
    ),
    ("svg", lambda: FilePart("vector.svg", images.svg(), "image/svg+xml"), "vector.svg" + ONLY_IMAGES),
    (
        "svg-as-octets",
        lambda: FilePart("vector.svg", images.svg(), "application/octet-stream"),
        "vector.svg" + ONLY_IMAGES,
    ),
    ("html", lambda: FilePart("page.html", images.html(), "text/html"), "page.html" + ONLY_IMAGES),
    ("html-named-jpg", lambda: FilePart("page.jpg", images.html(), "text/html"), "page.jpg" + ONLY_IMAGES),
    ("no-extension", lambda: FilePart("photo", images.plain_jpeg(), "image/jpeg"), "photo" + ONLY_IMAGES),
]


@labels("dashboard", "uploads refused")
@pytest.mark.parametrize(("kind", "make", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_upload_refused_and_nothing_stored(
    signed_in: SignedIn, local_stack: StackState, kind: str, make: Callable[[], FilePart], reason: str
) -> None:
    part = make()
    response = signed_in.client.upload_api([part])
    assert response.status_code == 400, f"{kind}: {response.status_code} {text(response)[:200]}"
    body = response.get_json()
    assert body["accepted"] == []
    assert body["rejected"] == [{"filename": part.filename, "reason": reason}]
    assert workflows_of(local_stack, signed_in.user.uid) == [], f"{kind}: a workflow was created"
    assert objects_of(local_stack, signed_in.user.uid) == [], f"{kind}: an object was stored"


@labels("dashboard", "uploads refused")
def test_refused_file_does_not_block_the_good_one(signed_in: SignedIn, local_stack: StackState) -> None:
    response = signed_in.client.upload_api([FilePart("x.svg", images.svg(), "image/svg+xml"), jpeg("ok.jpg")])
    assert response.status_code == 201
    body = response.get_json()
    assert [a["filename"] for a in body["accepted"]] == ["ok.jpg"]
    assert [r["filename"] for r in body["rejected"]] == ["x.svg"]
    assert len(objects_of(local_stack, signed_in.user.uid)) == 1


@labels("dashboard", "uploads refused")
@pytest.mark.parametrize(
    ("sent", "shown", "stored"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg", "passwd.jpg"),
        # The multipart quoted-string unescapes backslashes: what is left has no path in it either.
        ("..\\..\\windows\\win.ini.jpg", None, None),
        ("/abs/path/pic.jpg", "pic.jpg", "pic.jpg"),
        ("my holiday (1).JPG", "my holiday (1).JPG", "my_holiday_1.jpg"),
        ("фото.jpg", "фото.jpg", "upload.jpg"),
    ],
)
def test_filename_sanitised(
    signed_in: SignedIn, local_stack: StackState, sent: str, shown: str | None, stored: str | None
) -> None:
    response = signed_in.client.upload_api([FilePart(sent, images.plain_jpeg(), "image/jpeg")])
    assert response.status_code == 201, text(response)
    accepted = response.get_json()["accepted"][0]
    [name] = objects_of(local_stack, signed_in.user.uid)
    folder = f"originals/{signed_in.user.uid}/{accepted['workflow_id']}/"
    assert name.startswith(folder)
    if shown is None:
        for forbidden in ("/", "\\", ".."):
            assert forbidden not in accepted["filename"], f"{sent!r} shown as {accepted['filename']!r}"
        assert "/" not in name.removeprefix(folder)
    else:
        assert accepted["filename"] == shown
        assert name == folder + str(stored)


@labels("dashboard", "uploads refused")
def test_name_without_anything_but_dots_refused_not_500(signed_in: SignedIn) -> None:
    response = signed_in.client.upload_api([FilePart("..", images.plain_jpeg(), "image/jpeg")])
    assert response.status_code == 400
    assert response.get_json()["rejected"][0]["reason"].endswith(ONLY_IMAGES)


@labels("dashboard", "uploads refused")
def test_non_utf8_filename_never_a_500(signed_in: SignedIn, local_stack: StackState) -> None:
    response = signed_in.client.upload_api(
        [FilePart(b"caf\xe9 \xff\xfe.jpg", images.plain_jpeg(), "image/jpeg")]
    )
    assert response.status_code == 201, text(response)
    [accepted] = response.get_json()["accepted"]
    assert accepted["filename"].endswith(".jpg")
    accepted["filename"].encode("utf-8")  # valid UTF-8 all the way to the JSON
    [name] = objects_of(local_stack, signed_in.user.uid)
    assert name.isascii()


@labels("dashboard", "uploads refused")
def test_request_over_the_limit_is_413(
    signed_in_factory: Callable[..., SignedIn], local_stack: StackState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dashboard reads its per-file limit from the process environment when the app is built.
    monkeypatch.setenv("IMAGEFLOW_MAX_UPLOAD_BYTES", "1024")
    session = signed_in_factory()
    # 10 files x 1 KiB + 1 MiB overhead is the request limit: one 2 MiB body is over it.
    response = session.client.upload_api([FilePart("big.jpg", b"\xff" * (2 * 1024 * 1024), "image/jpeg")])
    assert response.status_code == 413
    assert "too large" in response.get_json()["error"]
    assert objects_of(local_stack, session.user.uid) == []


@labels("dashboard", "uploads")
def test_no_files_is_400(signed_in: SignedIn) -> None:
    response = signed_in.client.upload_api([])
    assert response.status_code == 400
    assert response.get_json()["accepted"] == []


@labels("dashboard", "uploads refused")
def test_form_upload_over_the_limit_is_a_413_page(
    signed_in_factory: Callable[..., SignedIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEFLOW_MAX_UPLOAD_BYTES", "1024")
    session = signed_in_factory()
    page = session.client.upload_form([FilePart("big.jpg", b"\xff" * (2 * 1024 * 1024), "image/jpeg")])
    assert page.status_code == 413
    assert "<h1>Upload too large</h1>" in text(page)
    assert "at most 1 KiB per file" in text(page)
