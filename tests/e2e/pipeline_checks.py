"""Verdicts about a whole pipeline run, shared by the upload, agent and concurrency scenarios.

Each check raises AssertionError with the watcher's or the taps' own account of what happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import allure
from playwright.sync_api import Page, expect
from requests import Response

from fixtures import promises
from fixtures.firestore import WatchResult, WorkflowWatcher
from fixtures.invariants import api_view_rules, describe
from fixtures.pubsub import Taps, output_topics
from fixtures.uploads import ApiSession
from imageflow.manifest import Manifest
from pages.workflow import WorkflowPage

# How long the browser may take to show what Firestore already says (the page polls every 500 ms).
UI_CATCH_UP_MS = 15_000


def refused_to_anonymous(response: Response, path: str) -> None:
    """The answer to an unauthenticated request: 401 on the API, else a redirect to the login page."""
    if path.startswith("/api/"):
        assert response.status_code == 401, f"{path} answered {response.status_code}, not 401"
        return
    assert response.status_code in (302, 303), f"{path} answered {response.status_code}, not a redirect"
    location = urlsplit(response.headers.get("Location", ""))
    assert location.path == "/login", f"{path} redirected to {location.path!r}, not /login"


def completed(watcher: WorkflowWatcher, workflow_id: str) -> WatchResult:
    """Wait for the workflow and insist it completed."""
    result = watcher.watch(workflow_id)
    assert result.completed, result.message
    return result


def every_agent_once(result: WatchResult, manifest: Manifest) -> None:
    """Every agent of the manifest finished its step, having done the work exactly once."""
    with allure.step(f"Every manifest agent ran exactly once for {result.workflow_id}"):
        wrong = {
            name: (result.step(name).get("status"), result.step(name).get("attempts"))
            for name in manifest.agent_names
            if result.step(name).get("status") != "done" or result.step(name).get("attempts") != 1
        }
        assert not wrong, f"steps not done exactly once (status, attempts): {wrong}; {result.message}"
        assert not result.diagnosis.problems, result.message


def published_once(taps: Taps, manifest: Manifest, workflow_ids: Sequence[str], timeout: float = 30) -> None:
    """The upload and every agent's output reached their topics exactly once per workflow."""
    expected_topics = [manifest.upload_topic, *output_topics(manifest).values()]
    with allure.step("Each pipeline topic carried exactly one message per upload"):
        for topic in expected_topics:
            for workflow_id in workflow_ids:
                taps.wait_for(topic, workflow_id, count=1, timeout=timeout)
        counts = taps.counts(workflow_ids)
        wrong = {
            f"{taps.topics[topic]}/{workflow_id}": counts[topic][workflow_id]
            for topic in expected_topics
            for workflow_id in workflow_ids
            if counts[topic][workflow_id] != 1
        }
        assert not wrong, f"messages per topic/workflow (expected 1 each): {wrong}"


def no_dead_letters(taps: Taps, manifest: Manifest, workflow_ids: Iterable[str]) -> None:
    """The dead-letter topic holds nothing from these workflows."""
    ids = list(workflow_ids)
    with allure.step("The dead-letter topic holds nothing from this test's uploads"):
        taps.drain([manifest.dead_letter_topic])
        dead = [m for m in taps.messages(manifest.dead_letter_topic) if m.workflow_id in ids]
        assert not dead, "dead-lettered: " + ", ".join(
            f"{m.workflow_id} ({dict(m.attributes)})" for m in dead
        )


def page_shows_completed(page: Page, workflow_id: str, manifest: Manifest) -> WorkflowPage:
    """The workflow page says completed, every agent's row is done, and the thumbnail loads."""
    workflow = WorkflowPage.open(page, workflow_id)
    with allure.step(f"The workflow page of {workflow_id} shows completion"):
        expect(workflow.status).to_have_text("completed", timeout=UI_CATCH_UP_MS)
        for name in manifest.agent_names:
            expect(workflow.step(name)).to_have_attribute("data-status", "done", timeout=UI_CATCH_UP_MS)
        expect(workflow.thumbnail).to_be_visible(timeout=UI_CATCH_UP_MS)
        assert workflow.thumbnail_response_status() == 200
    return workflow


# What the page shows of each step, by the test id of its cell, and how the document holds it.
STEP_CELLS = {
    "step-status": lambda step: str(step.get("status") or ""),
    "step-attempts": lambda step: str(step.get("attempts") or 0),
    "step-revision": lambda step: str(step.get("revision") or ""),
    "step-error": lambda step: str(step.get("error") or ""),
}


def _recorded_thumbnail(document: Mapping[str, Any]) -> str:
    """The thumbnail object some step recorded under the owner's thumbnails/ ("" if none did)."""
    prefix = f"{promises.THUMBNAILS_PREFIX}/{document.get('owner')}/"
    for step in (document.get("steps") or {}).values():
        output = step.get("output") if isinstance(step, Mapping) else None
        if isinstance(output, Mapping) and str(output.get("object", "")).startswith(prefix):
            return str(output["object"])
    return ""


def _api_document(workflow_id: str, api: ApiSession | None, page: Page | None = None) -> dict[str, Any]:
    """GET /api/workflows/ID as the owner: through api, or else through the page's own session."""
    if api is not None:
        response = api.workflow(workflow_id)
        status, body = response.status_code, response.json() if response.ok else response.text[:200]
    else:
        assert page is not None, "the API is read through an ApiSession or a page, and neither was given"
        answer = page.request.get(f"/api/workflows/{workflow_id}")
        status, body = answer.status, answer.json() if answer.ok else answer.text()[:200]
    assert status == 200, f"GET /api/workflows/{workflow_id} answered {status}: {body}"
    assert isinstance(body, dict), f"GET /api/workflows/{workflow_id} is not a JSON object: {body!r:.200}"
    return body


def api_agrees(result: WatchResult, api: ApiSession) -> None:
    """The owner's GET /api/workflows/ID says what the settled document says, field by field."""
    document = result.document
    assert document is not None, f"no document to hold the API against: {result}"
    with allure.step(f"The API and the document of {result.workflow_id} agree"):
        differ = list(api_view_rules(document, _api_document(result.workflow_id, api)))
        assert not differ, describe(result.workflow_id, differ)


def views_agree(page: Page, result: WatchResult, api: ApiSession | None = None) -> WorkflowPage:
    """The workflow page, the JSON API and the settled document say the same about one workflow.

    For any final status (completed, failed, rejected): the same overall status, reason and failed
    agent; one page row per step of the document, each with the document's status, attempts, revision
    and error, and the API's steps equal to the document's; a thumbnail shown, and served, exactly
    when the document is completed and records one (the thumbnail URL serves nothing the document
    does not record). page: a page logged in as the workflow's owner (it is navigated to the
    workflow page); result: the watcher's settled result; api: an ApiSession of the owner, else the
    API is read through the page's own session. Returns the workflow page, loaded.
    """
    document = result.document
    assert result.reached, f"no settled document to hold the views against: {result}"
    assert document is not None, f"no document to hold the views against: {result}"
    workflow_id = result.workflow_id
    status = str(document.get("status"))
    steps: Mapping[str, Any] = document.get("steps") or {}
    with allure.step(f"The page, the API and the document of {workflow_id} agree ({status})"):
        differ = list(api_view_rules(document, _api_document(workflow_id, api, page)))
        assert not differ, describe(workflow_id, differ)

        workflow = WorkflowPage.open(page, workflow_id)
        expect(workflow.status).to_have_text(status, timeout=UI_CATCH_UP_MS)
        reason = document.get("reason")
        if reason:
            expect(workflow.reason).to_have_text(str(reason), timeout=UI_CATCH_UP_MS)
        else:
            expect(workflow.reason).to_be_hidden(timeout=UI_CATCH_UP_MS)
        expect(workflow.steps.locator("tbody tr")).to_have_count(len(steps), timeout=UI_CATCH_UP_MS)
        for name, step in steps.items():
            row = workflow.step(name)
            expect(row).to_have_attribute("data-status", str(step.get("status")), timeout=UI_CATCH_UP_MS)
            for cell, shown in STEP_CELLS.items():
                expect(row.get_by_test_id(cell)).to_have_text(shown(step), timeout=UI_CATCH_UP_MS)

        recorded = _recorded_thumbnail(document)
        served = page.request.get(f"/workflows/{workflow_id}/thumbnail").status
        if status == "completed":
            assert recorded, f"completed workflow {workflow_id} records no thumbnail object"
            expect(workflow.thumbnail).to_be_visible(timeout=UI_CATCH_UP_MS)
            assert workflow.thumbnail_response_status() == 200
        else:
            expect(workflow.thumbnail).to_have_count(0)
        if not recorded:
            assert served == 404, f"thumbnail URL of {workflow_id}: {served}, but the document records none"
    return workflow
