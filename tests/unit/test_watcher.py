"""The workflow watcher's diagnosis on synthetic documents: never fired, failed, fired twice, revisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import allure
import pytest

from fixtures.firestore import (
    WorkflowWatcher,
    critical_path_seconds,
    diagnose,
    explain,
    status_is,
    terminal,
)
from fixtures.reporting import EPIC
from fixtures.timeline import timeline_json, timeline_png
from imageflow import manifest as manifest_module
from imageflow.workflow import new_document

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Workflow watcher"),
    allure.severity(allure.severity_level.CRITICAL),
]

MANIFEST = manifest_module.default()
AGENTS = MANIFEST.agent_names
T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)


def _document(**steps: dict[str, Any]) -> dict[str, Any]:
    """A workflow document from the real factory, with the given steps overridden."""
    doc = new_document("wf-1", "uid-1", {"filename": "a.jpg"}, MANIFEST)
    doc["created_at"] = T0
    doc["events"] = [{"at": T0, "agent": "dashboard", "event": "created"}]
    for offset, (name, fields) in enumerate(steps.items(), start=1):
        doc["steps"][name].update(fields)
        if fields.get("attempts"):
            started = T0 + timedelta(seconds=offset)
            doc["steps"][name].setdefault("started_at", started)
            doc["events"].append(
                {"at": started, "agent": name, "event": "started", "revision": fields.get("revision")}
            )
    return doc


def _done(revision: str, attempts: int = 1) -> dict[str, Any]:
    return {
        "status": "done",
        "attempts": attempts,
        "deliveries": attempts,
        "revision": revision,
        "published": True,
    }


def _healthy() -> dict[str, Any]:
    doc = _document(**{name: _done(f"{name}-00001-abc") for name in AGENTS})
    doc["status"] = "completed"
    return doc


@allure.story("A healthy workflow has no findings")
def test_completed_workflow_with_one_attempt_each_has_no_problems() -> None:
    diagnosis = diagnose(_healthy(), AGENTS)
    assert not diagnosis.problems, diagnosis.summary()
    assert dict(diagnosis.revisions) == {name: f"{name}-00001-abc" for name in AGENTS}


@allure.story("Agents that never fired are named")
def test_agents_that_never_fired_are_named_in_manifest_order() -> None:
    fired = {name: _done(f"{name}-1") for name in AGENTS if name not in ("thumbnailer", "finalizer")}
    diagnosis = diagnose(_document(**fired), AGENTS)
    assert diagnosis.never_fired == ("thumbnailer", "finalizer")
    assert "never fired: thumbnailer, finalizer" in diagnosis.summary()


@allure.story("A failed agent is named with its error")
def test_failed_agent_is_named_with_its_error() -> None:
    doc = _document(
        validator=_done("v-1"), exif={"status": "failed", "attempts": 1, "error": "EXIF IFD unreadable"}
    )
    diagnosis = diagnose(doc, AGENTS)
    assert diagnosis.failed == (("exif", "EXIF IFD unreadable"),)
    assert "failed: exif (error: EXIF IFD unreadable)" in diagnosis.summary()


@allure.story("An agent that did its work twice is named with its attempts")
def test_agent_that_fired_twice_is_named_with_attempts() -> None:
    doc = _healthy()
    doc["steps"]["analysis"]["attempts"] = 2
    diagnosis = diagnose(doc, AGENTS)
    assert diagnosis.problems
    assert diagnosis.fired_twice == (("analysis", 2),)
    assert "fired twice: analysis (attempts=2)" in diagnosis.summary()


@allure.story("Redeliveries alone are not a second firing")
def test_redelivery_without_second_attempt_is_not_fired_twice() -> None:
    doc = _healthy()
    doc["steps"]["finalizer"]["deliveries"] = 3
    assert not diagnose(doc, AGENTS).problems


@allure.story("The expectation is the manifest, not the document's own agent list")
def test_agent_missing_from_document_is_reported_against_the_manifest() -> None:
    doc = _healthy()
    del doc["steps"]["analysis"]
    doc["agents"] = [name for name in AGENTS if name != "analysis"]
    diagnosis = diagnose(doc, AGENTS)
    assert diagnosis.missing_steps == ("analysis",)
    assert "no step in the document for: analysis" in diagnosis.summary()


@allure.story("Steps run by another revision than the candidate are named")
def test_step_run_by_unexpected_revision_is_named() -> None:
    expected = {name: f"{name}-00001-abc" for name in AGENTS}
    expected["thumbnailer"] = "thumbnailer-00002-new"
    diagnosis = diagnose(_healthy(), AGENTS, expected)
    assert diagnosis.wrong_revision == (("thumbnailer", "thumbnailer-00001-abc", "thumbnailer-00002-new"),)
    assert "thumbnailer ran thumbnailer-00001-abc (expected thumbnailer-00002-new)" in diagnosis.summary()


@allure.story("Skipped steps of a rejected upload are not failures")
def test_rejected_workflow_with_skipped_steps_has_no_problems() -> None:
    skipped = {name: {"status": "skipped"} for name in AGENTS if name != "validator"}
    doc = _document(validator={"status": "rejected", "attempts": 1, "revision": "v-1"}, **skipped)
    doc["status"] = "rejected"
    doc["reason"] = "not a decodable image"
    diagnosis = diagnose(doc, AGENTS)
    assert not diagnosis.problems, diagnosis.summary()
    assert diagnosis.skipped == tuple(name for name in AGENTS if name != "validator")


@allure.story("The give-up message says what never happened")
def test_timeout_message_names_workflow_deadline_and_findings() -> None:
    doc = _document(
        validator=_done("v-1"),
        exif={"status": "failed", "attempts": 1, "error": "boom", "revision": "e-1"},
        analysis=_done("a-1", attempts=2),
    )
    message = explain("wf-1", doc, diagnose(doc, AGENTS), 25.0, reached=False)
    assert message.startswith("workflow wf-1 did not complete within 25s")
    for part in (
        "never fired: thumbnailer, finalizer",
        "failed: exif (error: boom)",
        "fired twice: analysis (attempts=2)",
        "revisions: validator=v-1, exif=e-1, analysis=a-1",
    ):
        assert part in message


@allure.story("A workflow never written is reported as such")
def test_absent_document_is_reported_as_never_written() -> None:
    message = explain("wf-9", None, diagnose(None, AGENTS), 5.0, reached=False)
    assert message.startswith("workflow wf-9 was never written within 5s")
    assert "never fired: " + ", ".join(AGENTS) in message


@allure.story("The wait is bounded by the manifest's critical path")
def test_deadline_is_critical_path_capped_by_workflow_deadline() -> None:
    by_name = {a.name: a.deadline_seconds for a in MANIFEST.agents}
    parallel = max(by_name[a.name] for a in MANIFEST.agents if a.depends_on == ("validator",))
    chain = by_name["validator"] + parallel + by_name["finalizer"]
    assert critical_path_seconds(MANIFEST) == min(chain, MANIFEST.workflow_deadline_seconds)


def test_deadline_follows_the_longest_dependency_chain() -> None:
    data: dict[str, Any] = {
        "pipeline": {
            "name": "p",
            "upload_topic": "up",
            "dead_letter_topic": "dl",
            "workflow_deadline_seconds": 100,
        },
        "services": {"dashboard": {"module": "m"}},
        "agents": [
            {"name": "a", "module": "m", "triggers": ["up"], "output_topic": "a-out", "deadline_seconds": 3},
            {
                "name": "b",
                "module": "m",
                "triggers": ["a-out"],
                "output_topic": "b-out",
                "depends_on": ["a"],
                "deadline_seconds": 5,
            },
            {
                "name": "c",
                "module": "m",
                "triggers": ["a-out"],
                "output_topic": "c-out",
                "depends_on": ["a"],
                "deadline_seconds": 11,
            },
            {
                "name": "d",
                "module": "m",
                "triggers": ["b-out", "c-out"],
                "output_topic": "d-out",
                "depends_on": ["b", "c"],
                "deadline_seconds": 2,
            },
        ],
    }
    assert critical_path_seconds(manifest_module.parse(data)) == 16
    data["pipeline"]["workflow_deadline_seconds"] = 9
    assert critical_path_seconds(manifest_module.parse(data)) == 9


def test_until_conditions_read_the_status() -> None:
    assert not terminal(None)
    assert not terminal({"status": "processing"})
    assert terminal({"status": "rejected"})
    assert status_is("processing")({"status": "processing"})


@allure.story("The timeline is attached as JSON and PNG")
def test_timeline_json_is_in_time_order_and_png_renders() -> None:
    doc = _healthy()
    doc["events"].reverse()  # ArrayUnion order is not time order
    data = json.loads(timeline_json(doc))
    stamps = [e["at"] for e in data["events"]]
    assert stamps == sorted(stamps)
    assert data["steps"]["validator"]["attempts"] == 1
    assert timeline_png(doc, AGENTS).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("doc", [{}, {"workflow_id": "x", "events": [{"at": "not a time"}]}])
def test_timeline_png_survives_sparse_documents(doc: dict[str, Any]) -> None:
    assert timeline_png(doc).startswith(b"\x89PNG")


@allure.story("A workflow that ended badly is reported with its own duration and reason")
def test_ended_message_gives_workflow_duration_reason_and_findings() -> None:
    doc = _document(exif={"status": "failed", "attempts": 1, "error": "boom", "revision": "e-1"})
    doc.update(status="failed", reason="exif failed: boom", updated_at=T0 + timedelta(seconds=2.5))
    message = explain("wf-1", doc, diagnose(doc, AGENTS), 0.04, reached=True)
    assert message.startswith(
        "workflow wf-1 ended failed 2.5s after the upload (watched 0.0s) (reason: exif failed: boom)"
    )
    assert "failed: exif (error: boom)" in message


def _finished_on_time() -> dict[str, Any]:
    """A completed document whose steps finished one second apart, each with its manifest outputs."""
    doc = _healthy()
    for offset, agent in enumerate(MANIFEST.agents, start=1):
        doc["steps"][agent.name]["finished_at"] = T0 + timedelta(seconds=offset)
        doc["steps"][agent.name]["output"] = {key: "value" for key in agent.outputs}
    return doc


def test_on_time_steps_with_every_output_are_no_problem() -> None:
    assert not diagnose(_finished_on_time(), AGENTS, manifest=MANIFEST).problems


def test_agent_finishing_past_its_deadline_is_named_with_the_time_it_took() -> None:
    doc = _finished_on_time()
    last = MANIFEST.agents[-1]
    ready = max(doc["steps"][d]["finished_at"] for d in last.depends_on)
    doc["steps"][last.name]["finished_at"] = ready + timedelta(seconds=last.deadline_seconds + 5)
    diagnosis = diagnose(doc, AGENTS, manifest=MANIFEST)
    assert diagnosis.over_deadline == ((last.name, last.deadline_seconds + 5, last.deadline_seconds),)
    assert f"deadline exceeded: {last.name} ({last.deadline_seconds + 5:.1f}s" in diagnosis.summary()


def test_done_step_without_its_manifest_outputs_is_named_with_the_missing_keys() -> None:
    doc = _finished_on_time()
    last = MANIFEST.agents[-1]
    doc["steps"][last.name]["output"] = {}
    diagnosis = diagnose(doc, AGENTS, manifest=MANIFEST)
    assert diagnosis.missing_outputs == ((last.name, last.outputs),)
    assert diagnosis.problems
    assert f"output missing: {last.name} (no {', '.join(last.outputs)})" in diagnosis.summary()


def test_completed_workflow_is_not_settled_until_every_done_step_published() -> None:
    doc = _healthy()
    last = AGENTS[-1]
    doc["steps"][last]["published"] = False
    assert not terminal(doc), "a step still writing after the status turned terminal was read too early"
    diagnosis = diagnose(doc, AGENTS)
    assert diagnosis.never_published == (last,)
    assert f"done but output never published: {last}" in diagnosis.summary()
    doc["steps"][last]["published"] = True
    assert terminal(doc)


def test_ended_workflow_is_not_settled_while_a_step_still_runs() -> None:
    """A sibling of a failed step may still finish after the status turned failed: wait for it."""
    doc = _document(validator=_done("v-1"), exif={"status": "failed", "attempts": 1, "error": "boom"})
    doc["status"] = "failed"
    doc["steps"]["analysis"].update(status="running", attempts=1, deliveries=1)
    assert not terminal(doc), "a failed workflow was read while one of its steps was still running"
    doc["steps"]["analysis"].update(_done("a-1"))
    assert terminal(doc)


class _SilentListener:
    """A live listener stream that never delivers a snapshot (seen once after a cold emulator start)."""

    is_active = True

    def unsubscribe(self) -> None:
        """Nothing to stop."""


class _SilentReference:
    """A document reference whose listener stays silent; reads go through the watcher's read()."""

    def on_snapshot(self, _callback: object) -> _SilentListener:
        return _SilentListener()


class _StoredWatcher(WorkflowWatcher):
    """A watcher whose listener is silent while direct reads return the stored document."""

    stored: dict[str, Any] | None = None
    reads: int = 0

    def reference(self, workflow_id: str) -> Any:
        return _SilentReference()

    def read(self, workflow_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.stored


def test_a_silent_listener_cannot_hide_a_completed_workflow() -> None:
    """The workflow is stored completed but the stream says nothing: a direct read finds it in time."""
    watcher = _StoredWatcher(client=None, manifest=MANIFEST, attach=False)  # type: ignore[arg-type]
    watcher.stored = _healthy()
    result = watcher.watch("wf-1", timeout=5)
    assert result.completed, result.message
    assert result.elapsed < 5, "the watch waited for its deadline instead of reading the document"
    assert watcher.reads >= 1


def test_a_silent_listener_reads_once_more_at_the_deadline() -> None:
    """Nothing stored: the watch ends at its deadline with the document as read then (never written)."""
    watcher = _StoredWatcher(client=None, manifest=MANIFEST, attach=False)  # type: ignore[arg-type]
    result = watcher.watch("wf-1", timeout=1.5)
    assert not result.reached
    assert "never written" in result.message
    assert watcher.reads >= 2


INNER_FAILURE_PROBE = """
import pytest

seen = []


@pytest.fixture
def probe(request):
    yield
    report = getattr(request.node, "rep_call", None)
    seen.append(report is not None and report.failed)


def test_fails(probe):
    assert False


def test_passes(probe):
    pass


def test_zz_the_probe_saw_both():
    assert seen == [True, False]
"""


def test_a_fixture_tells_at_teardown_whether_its_test_failed(pytester: pytest.Pytester) -> None:
    """The watcher attaches timelines only to a failed test, from the rep_call pytest-playwright keeps."""
    pytester.makepyfile(test_inner=INNER_FAILURE_PROBE)
    # In a process of its own: pytest-playwright's soft assertions allow one run per process.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=2)
