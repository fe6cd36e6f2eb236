"""Isolation between users: B sees none of A's uploads and is refused A's workflow on every path."""

from __future__ import annotations

from collections.abc import Callable

import allure
import pytest
import requests
from pipeline_checks import completed
from playwright.sync_api import expect

from fixtures.firestore import WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.reporting import labels
from fixtures.target import Target
from fixtures.users import TestUser
from pages.dashboard import DashboardPage
from pages.workflow import NotFoundPage

HTTP_TIMEOUT_SECONDS = 15


def _client_read(target: Target, workflow_id: str, id_token: str) -> requests.Response:
    """GET the workflow document through Firestore REST with a user's ID token (firestore.rules apply)."""
    with allure.step(f"Read workflows/{workflow_id} through Firestore REST with a user's ID token"):
        return requests.get(
            f"{target.firestore_rest_url}/workflows/{workflow_id}",
            headers={"Authorization": f"Bearer {id_token}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )


@pytest.mark.e2e
@labels(
    "Isolation",
    "Another user sees none of the uploads and is refused the workflow",
    allure.severity_level.BLOCKER,
)
def test_other_user_sees_no_upload_and_is_refused_the_workflow_everywhere(
    new_user_page: Callable[[], tuple[TestUser, DashboardPage]],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    id_token_for: Callable[[TestUser], str],
    target: Target,
) -> None:
    owner, owner_dashboard = new_user_page()
    image = make_image("plain_jpeg")
    owner_dashboard.upload([image.path])
    workflow_id = owner_dashboard.workflow_id_of(image.filename)
    completed(workflow_watcher, workflow_id)  # the thumbnail exists too: every path has something to leak

    stranger, stranger_dashboard = new_user_page()
    with allure.step("The other user's dashboard lists nothing"):
        expect(stranger_dashboard.no_uploads).to_be_visible()
        expect(stranger_dashboard.upload_rows).to_have_count(0)
        expect(stranger_dashboard.row_for(workflow_id)).to_have_count(0)

    NotFoundPage.open(stranger_dashboard.page, f"/workflows/{workflow_id}")
    with allure.step("The other user gets 404 from the API and the thumbnail URL"):
        request = stranger_dashboard.page.request
        assert request.get(f"/api/workflows/{workflow_id}").status == 404
        assert request.get(f"/workflows/{workflow_id}/thumbnail").status == 404

    refused = _client_read(target, workflow_id, id_token_for(stranger))
    assert refused.status_code == 403, f"another user's token read the document: {refused.status_code}"
    allowed = _client_read(target, workflow_id, id_token_for(owner))
    assert allowed.status_code == 200, f"the owner's own token was refused: {allowed.status_code}"
    assert allowed.json()["fields"]["owner"]["stringValue"] == owner.uid


@pytest.mark.e2e
@labels("Isolation", "Anonymous clients cannot read workflow documents", allure.severity_level.CRITICAL)
def test_anonymous_client_is_refused_the_workflow_document(
    logged_in_page: DashboardPage, make_image: MakeImage, target: Target
) -> None:
    image = make_image("tiny_png")
    logged_in_page.upload([image.path])
    workflow_id = logged_in_page.workflow_id_of(image.filename)
    with allure.step("Read the document through Firestore REST without a token"):
        response = requests.get(
            f"{target.firestore_rest_url}/workflows/{workflow_id}", timeout=HTTP_TIMEOUT_SECONDS
        )
    assert response.status_code == 403, f"an anonymous read answered {response.status_code}"
