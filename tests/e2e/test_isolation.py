"""Isolation between users: B sees none of A's uploads and is refused A's workflow on every path."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import allure
import pytest
import requests
from pipeline_checks import completed, refused_to_anonymous
from playwright.sync_api import expect

from fixtures.firestore import WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.reporting import labels
from fixtures.sessions import LoggedInUser
from fixtures.target import Target
from fixtures.uploads import ApiSession
from fixtures.users import TestUser
from pages.workflow import NotFoundPage

HTTP_TIMEOUT_SECONDS = 15


# The original is never served back (no route exposes it); these are every URL of one upload.
def object_urls(workflow_id: str) -> list[tuple[str, str]]:
    """(path, content type the owner gets) for every URL that serves one upload's data."""
    return [
        (f"/workflows/{workflow_id}", "text/html"),
        (f"/api/workflows/{workflow_id}", "application/json"),
        (f"/workflows/{workflow_id}/thumbnail", "image/"),
    ]


def _client_read(target: Target, workflow_id: str, id_token: str) -> requests.Response:
    """GET the workflow document through Firestore REST with a user's ID token (firestore.rules apply)."""
    with allure.step(f"Read workflows/{workflow_id} through Firestore REST with a user's ID token"):
        return requests.get(
            f"{target.firestore_rest_url}/workflows/{workflow_id}",
            headers={"Authorization": f"Bearer {id_token}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )


@pytest.mark.security
@labels(
    "Isolation",
    "Another user sees none of the uploads and is refused the workflow",
    allure.severity_level.BLOCKER,
)
def test_other_user_sees_no_upload_and_is_refused_the_workflow_everywhere(
    new_user_page: Callable[[], LoggedInUser],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    id_token_for: Callable[[TestUser], str],
    target: Target,
) -> None:
    owner_in = new_user_page()
    owner, owner_dashboard = owner_in.user, owner_in.dashboard
    workflow_id = owner_in.api.upload_one(make_image("plain_jpeg").multipart())
    completed(workflow_watcher, workflow_id)  # the thumbnail exists too: every path has something to leak

    stranger_in = new_user_page()
    stranger, stranger_dashboard = stranger_in.user, stranger_in.dashboard
    with allure.step("The other user's dashboard lists nothing"):
        expect(stranger_dashboard.no_uploads).to_be_visible()
        expect(stranger_dashboard.upload_rows).to_have_count(0)
        expect(stranger_dashboard.row_for(workflow_id)).to_have_count(0)

    NotFoundPage.open(stranger_dashboard.page, f"/workflows/{workflow_id}")
    # Each refusal beside the owner's success on the same URL, so a mistyped route cannot pass.
    owner_request = owner_dashboard.page.request
    stranger_request = stranger_dashboard.page.request
    with requests.Session() as anonymous:
        for path, kind in object_urls(workflow_id):
            with allure.step(f"{path}: the owner gets it, the other user 404, anonymous is refused"):
                mine = owner_request.get(path, max_redirects=0)
                assert mine.status == 200, f"the owner got {mine.status} on {path}"
                assert mine.headers["content-type"].startswith(kind), (
                    f"{path} is {mine.headers['content-type']}"
                )
                theirs = stranger_request.get(path, max_redirects=0)
                assert theirs.status == 404, f"another user got {theirs.status} on {path}, not 404"
                assert owner.uid not in theirs.text(), f"{path} named the owner to another user"
                nobody = anonymous.get(
                    f"{target.dashboard_url}{path}", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS
                )
                refused_to_anonymous(nobody, path)

    refused = _client_read(target, workflow_id, id_token_for(stranger))
    assert refused.status_code == 403, f"another user's token read the document: {refused.status_code}"
    allowed = _client_read(target, workflow_id, id_token_for(owner))
    assert allowed.status_code == 200, f"the owner's own token was refused: {allowed.status_code}"
    assert allowed.json()["fields"]["owner"]["stringValue"] == owner.uid


@labels("Isolation", "Anonymous clients cannot read workflow documents", allure.severity_level.CRITICAL)
def test_anonymous_client_is_refused_the_workflow_document(
    logged_in_session: ApiSession, make_image: MakeImage, target: Target
) -> None:
    workflow_id = logged_in_session.upload_one(make_image("tiny_png").multipart())
    with allure.step("Read the document through Firestore REST without a token"):
        response = requests.get(
            f"{target.firestore_rest_url}/workflows/{workflow_id}", timeout=HTTP_TIMEOUT_SECONDS
        )
    assert response.status_code == 403, f"an anonymous read answered {response.status_code}"


# Google Cloud Storage's public endpoints: the XML API and the JSON API (object, metadata, listing).
STORAGE_PUBLIC = "https://storage.googleapis.com"


@pytest.mark.security
@labels(
    "Isolation",
    "Stored originals and thumbnails are not readable without credentials",
    allure.severity_level.BLOCKER,
)
def test_stored_objects_are_not_readable_from_storage_without_credentials(
    request: pytest.FixtureRequest, target: Target
) -> None:
    if target.is_local:
        pytest.skip(
            "the storage emulator has no access control, so an anonymous read there proves nothing; "
            "checked on Google Cloud targets"
        )
    session: ApiSession = request.getfixturevalue("logged_in_session")
    watcher: WorkflowWatcher = request.getfixturevalue("workflow_watcher")
    make_image: MakeImage = request.getfixturevalue("make_image")
    result = completed(watcher, session.upload_one(make_image("plain_jpeg").multipart()))
    names = [str(result.document["image"]["object"]), str(result.output("thumbnailer")["object"])]
    bucket = quote(target.bucket, safe="")
    urls = [f"{STORAGE_PUBLIC}/storage/v1/b/{bucket}/o"]
    for name in names:
        urls += [
            f"{STORAGE_PUBLIC}/{bucket}/{quote(name)}",
            f"{STORAGE_PUBLIC}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
            f"{STORAGE_PUBLIC}/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media",
        ]
    with requests.Session() as anonymous:
        for url in urls:
            with allure.step(f"GET {url} without credentials is refused"):
                answer = anonymous.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)
                assert answer.status_code in (401, 403), (
                    f"an anonymous GET {url} answered {answer.status_code}: the bucket is readable by anyone"
                )
