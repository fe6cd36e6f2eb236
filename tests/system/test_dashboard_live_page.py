"""The workflow page in a real browser: its script follows the workflow live, without a reload."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from fixtures import images
from fixtures.dashboard import DashboardFactory
from fixtures.firestore import WorkflowWatcher
from fixtures.reporting import labels
from fixtures.users import TestUser, UserFactory, login_through_ui
from imageflow import clients
from imageflow.dashboard import faults
from imageflow.manifest import Manifest
from stack.state import StackState


@pytest.fixture
def held_dashboard_url(make_dashboard: DashboardFactory) -> Iterator[str]:
    """A dashboard that stores uploads but does not queue them (the test queues them), over real HTTP."""
    app = make_dashboard(IMAGEFLOW_FAULTS=faults.UPLOAD_NOT_PUBLISHED)
    # werkzeug's server stops its loop before closing the socket (waitress closed it under select: EBADF).
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="held-dashboard", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any], held_dashboard_url: str) -> dict[str, Any]:
    """Pages of these tests talk to the held dashboard."""
    return {**browser_context_args, "base_url": held_dashboard_url}


@labels("dashboard", "workflow page")
def test_workflow_page_updates_live_to_completed_with_thumbnail(
    page: Page,
    user_factory: UserFactory,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
    local_stack: StackState,
) -> None:
    user: TestUser = user_factory()
    dashboard = login_through_ui(page, user)
    dashboard.upload([{"name": "live.jpg", "mimeType": "image/jpeg", "buffer": images.jpeg_with_exif_gps()}])
    workflow_page = dashboard.open_workflow("live.jpg")
    workflow_id = workflow_page.workflow_id
    expect(workflow_page.status).to_have_text("pending")
    expect(workflow_page.thumbnail).to_have_count(0)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    # Queue it now, as the dashboard would have: the agents run while the page is open.
    doc = workflow_watcher.read(workflow_id)
    assert doc is not None
    message = {
        "workflow_id": workflow_id,
        "owner": user.uid,
        "bucket": local_stack.bucket,
        "object": doc["image"]["object"],
    }
    clients.publish(
        local_stack.project,
        pipeline_manifest.upload_topic,
        json.dumps(message).encode(),
        workflow_id=workflow_id,
    )
    deadline_ms = workflow_watcher.deadline_seconds * 1000
    expect(workflow_page.status).to_have_text("completed", timeout=deadline_ms)
    for agent in pipeline_manifest.agent_names:
        expect(workflow_page.step(agent)).to_have_attribute("data-status", "done")
        expect(workflow_page.step_status(agent)).to_have_text("done")
    expect(workflow_page.thumbnail).to_be_visible()
    expect(workflow_page.reason).to_be_hidden()
    assert workflow_page.thumbnail_response_status() == 200
    assert navigations == [], f"the page reloaded instead of updating in place: {navigations}"


@labels("dashboard", "workflow page")
def test_workflow_page_shows_the_reason_of_a_rejection_live(
    page: Page,
    user_factory: UserFactory,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
    local_stack: StackState,
) -> None:
    user: TestUser = user_factory()
    dashboard = login_through_ui(page, user)
    # Named .jpg and sent as JPEG, but truncated: the dashboard accepts it, the validator rejects it.
    dashboard.upload([{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": images.corrupt_jpeg()}])
    workflow_page = dashboard.open_workflow("broken.jpg")
    workflow_id = workflow_page.workflow_id
    doc = workflow_watcher.read(workflow_id)
    assert doc is not None
    message = {
        "workflow_id": workflow_id,
        "owner": user.uid,
        "bucket": local_stack.bucket,
        "object": doc["image"]["object"],
    }
    clients.publish(
        local_stack.project,
        pipeline_manifest.upload_topic,
        json.dumps(message).encode(),
        workflow_id=workflow_id,
    )
    expect(workflow_page.status).to_have_text("rejected", timeout=workflow_watcher.deadline_seconds * 1000)
    expect(workflow_page.reason).to_be_visible()
    expect(workflow_page.reason).not_to_be_empty()
    expect(workflow_page.thumbnail).to_have_count(0)
