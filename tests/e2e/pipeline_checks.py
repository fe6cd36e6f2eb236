"""Verdicts about a whole pipeline run, shared by the upload, agent and concurrency scenarios.

Each check raises AssertionError with the watcher's or the taps' own account of what happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import allure
from playwright.sync_api import Page, expect

from fixtures.firestore import WatchResult, WorkflowWatcher
from fixtures.pubsub import Taps, output_topics
from imageflow.manifest import Manifest
from pages.workflow import WorkflowPage

# How long the browser may take to show what Firestore already says (the page polls every 500 ms).
UI_CATCH_UP_MS = 15_000


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
