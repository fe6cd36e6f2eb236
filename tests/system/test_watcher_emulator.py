"""The workflow watcher against the real Firestore emulator: listener and polling, give-up, revisions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import allure
import pytest
from google.cloud import firestore

from fixtures.firestore import WATCHER_MODES, Document, WorkflowWatcher, terminal, transient_retry
from fixtures.reporting import labels
from fixtures.target import unique_name
from imageflow.manifest import Manifest
from imageflow.workflow import new_document, workflow_ref

Write = Callable[[dict[str, Any]], str]


@pytest.fixture
def write_workflow(firestore_admin: firestore.Client, pipeline_manifest: Manifest) -> Iterator[Write]:
    """Factory: write a fresh workflow document (overrides applied); every one is deleted at teardown."""
    written: list[str] = []

    def write(fields: dict[str, Any]) -> str:
        workflow_id = unique_name("e2e-watch")
        written.append(workflow_id)  # cleanup registered before the write
        document = new_document(workflow_id, "watcher-test", {"filename": "w.jpg"}, pipeline_manifest)
        workflow_ref(firestore_admin, workflow_id).set({**document, **fields})
        return workflow_id

    yield write
    for workflow_id in written:
        transient_retry(workflow_ref(firestore_admin, workflow_id).delete)()


def _finish_all(client: firestore.Client, workflow_id: str, manifest: Manifest, revision: str) -> None:
    """Write what a healthy run leaves behind: every step done once with its outputs, published."""
    update: dict[str, Any] = {"status": "completed"}
    for name in manifest.agent_names:
        update.update(
            {
                f"steps.{name}.output": {key: "value" for key in manifest.agent(name).outputs},
                f"steps.{name}.status": "done",
                f"steps.{name}.attempts": 1,
                f"steps.{name}.published": True,
                f"steps.{name}.revision": f"{name}-{revision}",
            }
        )
    workflow_ref(client, workflow_id).update(update)


@pytest.mark.parametrize("mode", WATCHER_MODES)
@labels("Workflow watcher", "Sees a completion written while it waits", allure.severity_level.CRITICAL)
def test_watcher_sees_completion_written_while_waiting(
    mode: str,
    write_workflow: Write,
    firestore_admin: firestore.Client,
    pipeline_manifest: Manifest,
) -> None:
    workflow_id = write_workflow({})
    watcher = WorkflowWatcher(firestore_admin, pipeline_manifest, mode=mode, attach=False)
    started = threading.Event()

    def until(document: Document | None) -> bool:
        # The completion is written only once the watcher has seen the pending document: no sleeps.
        if document is not None and document["status"] == "pending" and not started.is_set():
            started.set()
            threading.Thread(
                target=_finish_all, args=(firestore_admin, workflow_id, pipeline_manifest, "1")
            ).start()
        return terminal(document)

    result = watcher.watch(workflow_id, until=until, timeout=20)

    assert result.completed, result.message
    assert result.mode == mode
    assert not result.diagnosis.problems, result.message


@pytest.mark.parametrize("mode", WATCHER_MODES)
@labels("Workflow watcher", "Gives up on time and says what never happened", allure.severity_level.CRITICAL)
def test_watcher_gives_up_at_deadline_naming_agents_that_never_fired(
    mode: str, write_workflow: Write, firestore_admin: firestore.Client, pipeline_manifest: Manifest
) -> None:
    first, *rest = pipeline_manifest.agent_names
    workflow_id = write_workflow(
        {
            "status": "processing",
            "steps": {
                **new_document("x", "o", {}, pipeline_manifest)["steps"],
                first: {"status": "done", "attempts": 2, "revision": f"{first}-1", "deliveries": 2},
            },
        }
    )
    watcher = WorkflowWatcher(firestore_admin, pipeline_manifest, mode=mode, attach=True)

    result = watcher.watch(workflow_id, timeout=1.0)

    assert not result.reached
    assert 1.0 <= result.elapsed < 5.0, result.elapsed
    assert result.message.startswith(f"workflow {workflow_id} did not complete within 1s"), result.message
    assert f"never fired: {', '.join(rest)}" in result.message
    assert f"fired twice: {first} (attempts=2)" in result.message


@labels(
    "Workflow watcher", "Steps run by another revision than expected are named", allure.severity_level.NORMAL
)
def test_watcher_names_steps_run_by_unexpected_revisions(
    write_workflow: Write, firestore_admin: firestore.Client, pipeline_manifest: Manifest
) -> None:
    workflow_id = write_workflow({})
    _finish_all(firestore_admin, workflow_id, pipeline_manifest, "old")
    expected = {name: f"{name}-new" for name in pipeline_manifest.agent_names}
    watcher = WorkflowWatcher(firestore_admin, pipeline_manifest, expected_revisions=expected, attach=False)

    result = watcher.watch(workflow_id, timeout=10)

    assert result.completed
    assert [name for name, _, _ in result.diagnosis.wrong_revision] == list(pipeline_manifest.agent_names)
    assert "wrong revision: " in result.message
