"""The workflow page, its JSON API, the thumbnail and isolation between users, in-process."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from fixtures import images
from fixtures.dashboard import FilePart, SignedIn, element_text, text
from fixtures.firestore import WorkflowWatcher
from fixtures.reporting import labels
from imageflow.dashboard.firestore_rest import FirestoreReader, NotFound
from imageflow.manifest import Manifest
from stack.state import StackState


def upload_one(session: SignedIn, name: str = "sunset.jpg") -> str:
    """Upload one real JPEG; its workflow id."""
    response = session.client.upload_api([FilePart(name, images.jpeg_with_exif_gps(), "image/jpeg")])
    assert response.status_code == 201, text(response)
    return str(response.get_json()["accepted"][0]["workflow_id"])


@labels("dashboard", "workflow page")
def test_workflow_page_shows_every_agent_and_the_thumbnail_when_completed(
    signed_in: SignedIn, workflow_watcher: WorkflowWatcher, pipeline_manifest: Manifest
) -> None:
    workflow_id = upload_one(signed_in)
    result = workflow_watcher.watch(workflow_id)
    assert result.completed, str(result)
    page = signed_in.client.http.get(f"/workflows/{workflow_id}")
    assert page.status_code == 200
    body = text(page)
    assert "<h1>sunset.jpg</h1>" in body
    assert element_text(body, "workflow-status") == "completed"
    assert 'data-testid="steps"' in body
    for agent in pipeline_manifest.agent_names:
        assert f'<tr data-testid="step-{agent}" data-agent="{agent}" data-status="done">' in body, agent
    assert '<img alt="Thumbnail" src="/workflows/' + workflow_id + '/thumbnail">' in body
    thumbnail = signed_in.client.http.get(f"/workflows/{workflow_id}/thumbnail")
    assert thumbnail.status_code == 200
    assert thumbnail.mimetype == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.data)).size) == 256


@labels("dashboard", "workflow page")
def test_workflow_api_returns_the_document(signed_in: SignedIn, pipeline_manifest: Manifest) -> None:
    workflow_id = upload_one(signed_in, "api.jpg")
    response = signed_in.client.http.get(f"/api/workflows/{workflow_id}")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["workflow_id"] == workflow_id
    assert doc["owner"] == signed_in.user.uid
    assert doc["image"]["filename"] == "api.jpg"
    assert set(doc["steps"]) == set(pipeline_manifest.agent_names)
    assert isinstance(doc["created_at"], str)
    assert doc["created_at"][:4].isdigit()


@labels("dashboard", "workflow page")
def test_pending_workflow_page_polls_the_api(signed_in_factory: Callable[..., SignedIn]) -> None:
    # Unpublished, the workflow stays pending: the page must carry its live-update script.
    session = signed_in_factory(IMAGEFLOW_FAULTS="dashboard.upload_not_published")
    workflow_id = upload_one(session)
    body = text(session.client.http.get(f"/workflows/{workflow_id}"))
    assert element_text(body, "workflow-status") == "pending"
    assert f'data-api-url="/api/workflows/{workflow_id}"' in body
    assert 'data-terminal="false"' in body
    assert "/static/workflow.js" in body
    assert 'alt="Thumbnail"' not in body
    with session.client.http.get("/static/workflow.js") as script:
        assert script.status_code == 200
        assert b"INTERVAL_MS = 500" in script.data


@labels("dashboard", "isolation")
def test_other_users_workflow_is_not_found(
    signed_in_factory: Callable[..., SignedIn], workflow_watcher: WorkflowWatcher
) -> None:
    alice, bob = signed_in_factory(), signed_in_factory()
    workflow_id = upload_one(alice)
    workflow_watcher.watch(workflow_id)
    page = bob.client.http.get(f"/workflows/{workflow_id}")
    assert page.status_code == 404
    assert "<h1>Upload not found</h1>" in text(page)
    assert bob.client.http.get(f"/api/workflows/{workflow_id}").status_code == 404
    assert bob.client.http.get(f"/workflows/{workflow_id}/thumbnail").status_code == 404
    assert workflow_id not in text(bob.client.http.get("/"))
    assert bob.client.http.get("/api/uploads").get_json() == []
    assert alice.client.http.get(f"/api/workflows/{workflow_id}").status_code == 200


@labels("dashboard", "isolation")
def test_reads_go_through_the_rules_with_the_users_token(
    signed_in_factory: Callable[..., SignedIn], local_stack: StackState
) -> None:
    alice, bob = signed_in_factory(), signed_in_factory()
    workflow_id = upload_one(alice)
    reader = FirestoreReader(local_stack.project)
    alice_token = alice.client.server_session()[1].id_token
    bob_token = bob.client.server_session()[1].id_token
    assert reader.get_workflow(alice_token, workflow_id)["owner"] == alice.user.uid
    with pytest.raises(NotFound):
        reader.get_workflow(bob_token, workflow_id)
    with pytest.raises(NotFound):
        reader.list_workflows(bob_token, None)  # an unfiltered list is refused by the rules
    assert [d["workflow_id"] for d in reader.list_workflows(alice_token, alice.user.uid)] == [workflow_id]


@labels("dashboard", "isolation")
@pytest.mark.parametrize(
    "workflow_id", ["0" * 32, "no-such-id", "..%2F..%2Fusers", "a%00b", "%E9t%E9", "x" * 600]
)
def test_unknown_or_malformed_id_is_404_never_500(signed_in: SignedIn, workflow_id: str) -> None:
    for path in (
        f"/workflows/{workflow_id}",
        f"/api/workflows/{workflow_id}",
        f"/workflows/{workflow_id}/thumbnail",
    ):
        response = signed_in.client.http.get(path)
        assert response.status_code == 404, f"{path} -> {response.status_code}"


@labels("dashboard", "uploads")
def test_upload_list_shows_own_uploads_newest_first(signed_in: SignedIn) -> None:
    first = upload_one(signed_in, "first.jpg")
    second = upload_one(signed_in, "second.jpg")
    body = text(signed_in.client.http.get("/"))
    assert signed_in.client.listed_ids() == [second, first]
    assert 'data-testid="upload-list"' in body
    assert f'<a href="/workflows/{second}">second.jpg</a>' in body
    assert "No images yet." not in body
