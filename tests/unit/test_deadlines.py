"""Each agent held to its own deadline on synthetic documents: who is late now, and when to look again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import allure
import pytest

from fixtures.diagnosis import CLOCK_SKEW_ALLOWANCE_SECONDS, diagnose, explain_late, lateness
from fixtures.firestore import WorkflowWatcher
from fixtures.reporting import EPIC
from imageflow import manifest as manifest_module
from imageflow.workflow import new_document, now

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Workflow watcher"),
    allure.story("Time to red within each agent's own deadline"),
    allure.severity(allure.severity_level.CRITICAL),
]

MANIFEST = manifest_module.default()
AGENTS = MANIFEST.agent_names
T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
DEADLINE = MANIFEST.agent("thumbnailer").deadline_seconds
# The moment an agent whose inputs were ready at `ready` becomes late, on the watcher's clock.
GRACE = DEADLINE + CLOCK_SKEW_ALLOWANCE_SECONDS


def at(seconds: float) -> datetime:
    """T0 plus seconds."""
    return T0 + timedelta(seconds=seconds)


def document(created: datetime = T0, **steps: dict[str, Any]) -> dict[str, Any]:
    """A processing workflow document from the real factory, created at created, steps overridden."""
    doc = new_document("wf-1", "uid-1", {"filename": "a.jpg"}, MANIFEST)
    doc["created_at"] = doc["updated_at"] = created
    doc["status"] = "processing" if steps else "pending"
    for name, fields in steps.items():
        doc["steps"][name].update(fields)
    return doc


def done(started: float, finished: float, *, published: bool = True) -> dict[str, Any]:
    """A step done between T0+started and T0+finished."""
    return {
        "status": "done",
        "attempts": 1,
        "started_at": at(started),
        "finished_at": at(finished),
        "published": published,
        "revision": "r-1",
    }


def running(started: float) -> dict[str, Any]:
    """A step claimed at T0+started and not finished."""
    return {"status": "running", "attempts": 1, "started_at": at(started), "revision": "r-1"}


def test_root_agent_never_started_is_late_once_the_upload_waited_past_its_deadline() -> None:
    found = lateness(document(), MANIFEST, at(GRACE + 0.5))
    (late,) = found.late
    assert (late.agent, late.inputs, late.ready_at, late.started_at) == ("validator", (), T0, None)
    text = late.describe()
    for part in (
        "validator is late: not started",
        "its inputs (the upload) were ready at 10:00:00.000Z (21.5s ago)",
        f"its deadline is {DEADLINE:g}s",
    ):
        assert part in text, text


def test_root_agent_inside_its_deadline_is_not_late_and_says_when_to_look_again() -> None:
    found = lateness(document(), MANIFEST, at(DEADLINE - 0.5))
    assert found.late == ()
    assert found.next_check == at(GRACE)


def test_exactly_at_the_deadline_is_not_late_and_a_moment_after_is() -> None:
    doc = document(validator=done(0.5, 1.0), thumbnailer=running(2.0))
    assert lateness(doc, MANIFEST, at(1.0 + GRACE)).late == ()
    late = lateness(doc, MANIFEST, at(1.0 + GRACE + 0.001)).late
    assert {item.agent for item in late} == {"thumbnailer", "exif", "analysis"}


def test_agent_started_and_never_finished_is_named_with_its_start_and_its_input() -> None:
    doc = document(
        validator=done(0.5, 1.0), thumbnailer=running(2.0), exif=done(1.5, 3.0), analysis=done(1.5, 3.0)
    )
    (late,) = lateness(doc, MANIFEST, at(1.0 + GRACE + 0.5)).late
    assert late.agent == "thumbnailer"
    text = late.describe()
    assert "thumbnailer is late: started at 10:00:02.000Z (20.5s ago) and not finished" in text, text
    assert "its inputs (validator) were ready at 10:00:01.000Z (21.5s ago)" in text, text


def test_released_step_given_back_after_an_error_counts_as_started() -> None:
    step = {"status": "pending", "attempts": 1, "started_at": at(0.5), "lease_until": None}
    (late,) = lateness(document(validator=step), MANIFEST, at(GRACE + 1)).late
    assert late.started_at == at(0.5)
    assert "started at 10:00:00.500Z" in late.describe()


def test_dependant_of_a_slow_but_in_time_agent_is_not_blamed() -> None:
    """The validator took 19 s of its 20: its dependants' clocks start at its finish, not at the upload."""
    doc = document(validator=done(0.5, DEADLINE - 1.0))
    found = lateness(doc, MANIFEST, at(DEADLINE + 5.0))
    assert found.late == (), [item.describe() for item in found.late]
    assert found.next_check == at(DEADLINE - 1.0 + GRACE)


def test_fan_in_waits_for_the_last_input_and_blames_only_the_one_still_running() -> None:
    doc = document(
        validator=done(0.5, 1.0), thumbnailer=done(1.5, 2.0), exif=done(1.5, 3.0), analysis=running(1.5)
    )
    late = lateness(doc, MANIFEST, at(40.0)).late
    assert [item.agent for item in late] == ["analysis"], "the finalizer's inputs are not all ready yet"
    doc["steps"]["analysis"].update(done(1.5, 15.0))
    assert lateness(doc, MANIFEST, at(15.0 + GRACE)).late == ()
    (late_finalizer,) = lateness(doc, MANIFEST, at(15.0 + GRACE + 0.5)).late
    assert late_finalizer.agent == "finalizer"
    assert late_finalizer.inputs == ("thumbnailer", "exif", "analysis")
    assert late_finalizer.ready_at == at(15.0)


def test_done_but_unpublished_agent_is_late_and_its_dependants_are_not_blamed() -> None:
    doc = document(validator=done(0.5, 1.0, published=False))
    (late,) = lateness(doc, MANIFEST, at(GRACE + 5)).late
    assert late.agent == "validator"
    assert "finished at 10:00:01.000Z but its output is not published" in late.describe()


def test_next_check_is_the_earliest_deadline_still_to_come() -> None:
    doc = document(
        validator=done(0.5, 1.0), thumbnailer=done(1.5, 4.0), exif=done(1.5, 6.0), analysis=running(1.5)
    )
    assert lateness(doc, MANIFEST, at(7.0)).next_check == at(1.0 + GRACE)
    doc["steps"]["analysis"].update(done(1.5, 8.0))
    assert lateness(doc, MANIFEST, at(9.0)).next_check == at(8.0 + GRACE)
    # An agent already late does not hold the next look back.
    assert lateness(doc, MANIFEST, at(8.0 + GRACE + 1)).next_check is None


@pytest.mark.parametrize("status", ["completed", "failed", "rejected"])
def test_ended_workflow_keeps_its_own_verdict_and_has_no_late_agent(status: str) -> None:
    doc = document(validator=done(0.5, 1.0))
    doc["status"] = status
    assert lateness(doc, MANIFEST, at(300.0)) == lateness(None, MANIFEST, at(300.0))
    assert lateness(doc, MANIFEST, at(300.0)).late == ()


def test_late_message_names_the_agent_and_every_step_in_the_diagnosis_style() -> None:
    doc = document(
        validator=done(0.5, 1.0), thumbnailer=running(2.0), exif=done(1.5, 3.0), analysis=done(1.5, 3.0)
    )
    found = lateness(doc, MANIFEST, at(1.0 + GRACE + 0.5))
    message = explain_late("wf-1", doc, found, diagnose(doc, AGENTS, manifest=MANIFEST), AGENTS)
    assert message.startswith("workflow wf-1 (status processing): thumbnailer is late: started at"), message
    assert (
        "steps: validator done at 10:00:01.000Z, thumbnailer running since 10:00:02.000Z, "
        "exif done at 10:00:03.000Z, analysis done at 10:00:03.000Z, finalizer pending" in message
    ), message
    assert "still running: thumbnailer" in message, message
    assert "never fired: finalizer" in message, message


class _Snapshot:
    """A stored document as a listener snapshot."""

    exists = True

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


class _Listener:
    """A live stream that delivered its first snapshot and then stays quiet."""

    is_active = True

    def unsubscribe(self) -> None:
        """Nothing to stop."""


class _Reference:
    """A document reference whose listener delivers the stored document once, at subscription."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def on_snapshot(self, callback: Callable[..., None]) -> _Listener:
        callback([_Snapshot(self.data)], [], now())
        return _Listener()


class _StoredWatcher(WorkflowWatcher):
    """A watcher over one stored document, through a listener that goes quiet and direct reads."""

    stored: dict[str, Any] = {}  # noqa: RUF012 # set per test before the watch

    def reference(self, workflow_id: str) -> Any:
        return _Reference(self.stored)

    def read(self, workflow_id: str) -> dict[str, Any] | None:
        return dict(self.stored)


class _QuietStreamWatcher(_StoredWatcher):
    """A watcher whose listener delivered an old snapshot and went quiet, while reads see the stored one."""

    snapshot: dict[str, Any] = {}  # noqa: RUF012 # set per test before the watch

    def reference(self, workflow_id: str) -> Any:
        return _Reference(self.snapshot)


def _watcher(stored: dict[str, Any], mode: str = "listener") -> _StoredWatcher:
    watcher = _StoredWatcher(client=None, manifest=MANIFEST, attach=False, mode=mode)  # type: ignore[arg-type]
    watcher.stored = stored
    return watcher


@pytest.mark.parametrize("mode", ["listener", "polling"])
def test_watch_ends_at_once_when_an_agent_is_already_late(mode: str) -> None:
    result = _watcher(document(created=now() - timedelta(seconds=GRACE + 5)), mode).watch("wf-1")
    assert not result.reached, result.message
    assert result.late is not None, result.message
    assert result.elapsed < 1.0, f"a late validator took {result.elapsed:.1f}s to report"
    assert "validator is late: not started" in result.message, result.message


def test_watch_wakes_at_the_next_deadline_not_at_its_next_quiet_check() -> None:
    """The only snapshot says the validator's deadline passes in 0.3 s: the watch reports it then."""
    result = _watcher(document(created=now() - timedelta(seconds=GRACE - 0.3))).watch("wf-1")
    assert result.late is not None, result.message
    assert 0.25 <= result.elapsed < 0.9, f"reported after {result.elapsed:.2f}s, not at the deadline"


def test_watch_with_a_timeout_of_its_own_waits_it_out() -> None:
    """A caller that expects redeliveries past an agent's deadline sets its own timeout."""
    result = _watcher(document(created=now() - timedelta(seconds=GRACE + 5))).watch("wf-1", timeout=0.5)
    assert result.late is None, result.message
    assert not result.reached, result.message
    assert result.elapsed >= 0.5
    assert "did not complete within 0.5s" in result.message, result.message


def test_a_quiet_stream_s_old_snapshot_is_not_judged_after_a_newer_read() -> None:
    """The stream's only snapshot has the validator not started, due in 0.3 s; the stored document has it
    done and its dependants running: the watch blames a dependant when its own deadline passes, never the
    validator on the old snapshot."""
    created = now() - timedelta(seconds=GRACE - 0.3)
    stale = document(created=created)
    stored = document(
        created=created,
        validator={
            **done(1, 2),
            "started_at": created + timedelta(seconds=1),
            "finished_at": created + timedelta(seconds=2),
        },
        **{
            name: {**running(3), "started_at": created + timedelta(seconds=3)}
            for name in AGENTS
            if MANIFEST.agent(name).depends_on == ("validator",)
        },
    )
    watcher = _QuietStreamWatcher(client=None, manifest=MANIFEST, attach=False)  # type: ignore[arg-type]
    watcher.stored, watcher.snapshot = stored, stale
    result = watcher.watch("wf-1")
    assert result.late is not None, result.message
    assert "validator is late" not in result.message, result.message
    dependants = [n for n in AGENTS if MANIFEST.agent(n).depends_on == ("validator",)]
    assert any(f"{n} is late: started at" in result.message for n in dependants), result.message
    assert result.elapsed >= 2.0, f"reported after {result.elapsed:.2f}s, on the stream's old snapshot"
