"""The workflow invariants on documents written the way the system writes them, and each rule broken once.

The documents are built by replaying the system's writes (new document, claim, finish, publish,
finalize, reject, fail: imageflow/workflow.py) on plain dicts, so a healthy run is exactly what a
healthy pipeline stores; each broken document changes one thing and must be named by its rule.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import allure
import pytest

from fixtures.firestore import (
    InvariantTally,
    InvariantViolation,
    WorkflowWatcher,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_testnodedown,
    status_is,
    tally,
)
from fixtures.invariants import Violation, api_view_rules, check, describe
from fixtures.reporting import EPIC
from imageflow import manifest as manifest_module
from imageflow.workflow import new_document

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Workflow invariants"),
    allure.severity(allure.severity_level.CRITICAL),
]

MANIFEST = manifest_module.default()
AGENTS = MANIFEST.agent_names
DASHBOARD = MANIFEST.dashboard.name
REVISIONS = {service.name: f"{service.name}-00001-abc" for service in MANIFEST.services}
WORKFLOW_ID = "wf-0123456789abcdef"
T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
# The upload's first agent (it judges the upload) and the ones it fans out to.
JUDGE = next(a.name for a in MANIFEST.agents if not a.depends_on)
FINALIZER = next(
    a.name for a in MANIFEST.agents if a.name not in {d for b in MANIFEST.agents for d in b.depends_on}
)
FAN_OUT = [a.name for a in MANIFEST.agents if a.depends_on and a.name != FINALIZER]

Document = dict[str, Any]


class Flow:
    """A workflow document from imageflow/workflow.py's factory, moved by the same writes at chosen times."""

    def __init__(self) -> None:
        self.clock = T0
        image = {"bucket": "b", "object": f"originals/uid-1/{WORKFLOW_ID}/a.jpg", "filename": "a.jpg"}
        self.doc: Document = new_document(WORKFLOW_ID, "uid-1", image, MANIFEST)
        self.doc["created_at"] = self.doc["updated_at"] = T0
        self.doc["events"] = [{"at": T0, "agent": DASHBOARD, "event": "created"}]

    def tick(self) -> datetime:
        """The next moment (a millisecond later)."""
        self.clock += timedelta(milliseconds=1)
        return self.clock

    def event(self, agent: str, kind: str, at: datetime | None = None, **extra: object) -> None:
        """Append a timeline event by agent's revision, at the next moment unless given."""
        self.doc["events"].append(
            {"at": at or self.tick(), "agent": agent, "event": kind, "revision": REVISIONS[agent], **extra}
        )

    def claim(self, agent: str) -> Flow:
        """workflow.claim: the step is running for this delivery."""
        step, at = self.doc["steps"][agent], self.tick()
        step.update(status="running", started_at=at, revision=REVISIONS[agent])
        step["deliveries"] += 1
        step["attempts"] += 1
        if self.doc["status"] != "completed":
            self.doc["status"] = "processing"
        self.doc["updated_at"] = at
        self.event(agent, "started")
        return self

    def finish(self, agent: str, status: str, **fields: object) -> datetime:
        """workflow._finish: the event is made first, then the step's finish is written."""
        self.event(agent, status, **{k: v for k, v in fields.items() if k in ("error", "reason")})
        at = self.tick()
        self.doc["steps"][agent].update(status=status, finished_at=at, revision=REVISIONS[agent])
        self.doc["updated_at"] = at
        return at

    def done(self, agent: str) -> Flow:
        """A delivery's whole life: claim, then complete."""
        return self.claim(agent).complete(agent)

    def complete(self, agent: str) -> Flow:
        """complete_step, then mark_published once the output message went out."""
        self.doc["steps"][agent].update(output={key: 1 for key in MANIFEST.agent(agent).outputs}, error=None)
        self.finish(agent, "done")
        self.doc["steps"][agent]["published"] = True
        return self

    def finalize(self) -> Flow:
        """workflow.finalize after one push per dependency (count_delivery each)."""
        step, at = self.doc["steps"][FINALIZER], self.tick()
        step["deliveries"] += len(MANIFEST.agent(FINALIZER).depends_on)
        step["attempts"] += 1
        step.update(
            status="done",
            started_at=at,
            finished_at=at,
            revision=REVISIONS[FINALIZER],
            output={"completed_steps": list(MANIFEST.agent(FINALIZER).depends_on)},
            published=True,
        )
        self.doc.update(status="completed", updated_at=at, completed_at=at)
        for kind in ("started", "done"):
            self.event(FINALIZER, kind, at)
        return self

    def fail(self, agent: str, error: str) -> Flow:
        """fail_step (after the claim): the step and the workflow end failed, naming both."""
        self.doc["steps"][agent]["error"] = error
        self.doc.update(status="failed", failed_agent=agent, reason=f"{agent} failed: {error}")
        self.finish(agent, "failed", error=error)
        return self

    def reject(self, agent: str, reason: str) -> Flow:
        """reject: the judge's step rejected, every other step skipped, completed at the finish."""
        self.claim(agent)
        self.doc["steps"][agent].update(output={}, error=reason)
        for name in AGENTS:
            if name != agent:
                self.doc["steps"][name]["status"] = "skipped"
        self.doc.update(status="rejected", reason=reason)
        self.doc["completed_at"] = self.finish(agent, "rejected", reason=reason)
        return self

    def dashboard_fails(self, reason: str) -> Flow:
        """The dashboard's own failure (upload not stored or not queued)."""
        at = self.tick()
        self.doc.update(
            status="failed", reason=reason, failed_agent=DASHBOARD, updated_at=at, completed_at=at
        )
        self.event(DASHBOARD, "failed", at, reason=reason)
        return self


def completed() -> Document:
    """A healthy completed workflow: the judge, the fan-out, then the finalizer."""
    flow = Flow().done(JUDGE)
    for name in FAN_OUT:
        flow.done(name)
    return flow.finalize().doc


def rejected() -> Document:
    """A healthy rejection by the judge."""
    return Flow().reject(JUDGE, "not a decodable image").doc


def failed() -> Document:
    """A healthy failure of one fan-out agent while its siblings finish."""
    flow = Flow().done(JUDGE)
    for name in FAN_OUT:
        flow.claim(name)
    flow.complete(FAN_OUT[0]).fail(FAN_OUT[1], "RuntimeError: boom")
    for name in FAN_OUT[2:]:
        flow.complete(name)
    return flow.doc


def failed_by_dashboard() -> Document:
    """An upload the dashboard could not queue."""
    return Flow().dashboard_fails("upload could not be queued").doc


def rules_of(document: Document, revisions: dict[str, str] | None = None) -> set[tuple[str, str]]:
    """(step, rule) of every violation."""
    expected = REVISIONS if revisions is None else revisions
    return {(v.step, v.rule) for v in check(document, MANIFEST, expected, WORKFLOW_ID)}


# --- correct documents stay quiet --------------------------------------------------------------------


@allure.story("A correct document of every final status breaks nothing")
@pytest.mark.parametrize("build", [completed, rejected, failed, failed_by_dashboard])
def test_correct_documents_hold_every_invariant(build: Callable[[], Document]) -> None:
    document = build()
    assert check(document, MANIFEST, REVISIONS, WORKFLOW_ID) == []


@allure.story("Timestamps as the REST API and the JSON view carry them (ISO text) are read too")
def test_iso_text_timestamps_are_checked_like_datetimes() -> None:
    def as_text(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat().replace("+00:00", "Z")
        if isinstance(value, dict):
            return {k: as_text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_text(v) for v in value]
        return value

    document = as_text(completed())
    assert check(document, MANIFEST, REVISIONS) == []
    document["steps"][FAN_OUT[0]]["finished_at"] = as_text(T0 - timedelta(seconds=1))
    assert (FAN_OUT[0], "step-times-ordered") in rules_of(document)


# --- each rule, broken once --------------------------------------------------------------------------

Mutation = Callable[[Document], None]


def _set_step(name: str, **fields: object) -> Mutation:
    return lambda doc: doc["steps"][name].update(fields)


def _shift(name: str, field: str, seconds: float) -> Mutation:
    def mutate(doc: Document) -> None:
        doc["steps"][name][field] = doc["steps"][name][field] + timedelta(seconds=seconds)

    return mutate


def _early_finalizer(doc: Document) -> None:
    """The finalizer completed before the last sibling finished (the 'early' bug)."""
    last = FAN_OUT[-1]
    doc["steps"][last]["finished_at"] = doc["completed_at"] + timedelta(seconds=1)
    doc["updated_at"] = doc["steps"][last]["finished_at"]


def _drop_events(agent: str, kind: str) -> Mutation:
    return lambda doc: doc.update(
        events=[e for e in doc["events"] if (e["agent"], e["event"]) != (agent, kind)]
    )


def _stray_event(agent: str, kind: str, revision: str | None = None) -> Mutation:
    """An event no step accounts for, at the document's last write (by revision when given)."""
    extra = {"revision": revision} if revision else {}
    return lambda doc: doc["events"].append({"at": doc["updated_at"], "agent": agent, "event": kind, **extra})


def _swap_first_events(doc: Document) -> None:
    doc["events"][0], doc["events"][1] = doc["events"][1], doc["events"][0]


def _dependent_started_first(doc: Document) -> None:
    """The fan-out agent's started event written before the judge's done event."""
    events = doc["events"]
    start = next(i for i, e in enumerate(events) if (e["agent"], e["event"]) == (FAN_OUT[0], "started"))
    done = next(i for i, e in enumerate(events) if (e["agent"], e["event"]) == (JUDGE, "done"))
    events.insert(done, events.pop(start))


def _event_out_of_agent_order(doc: Document) -> None:
    """An agent's done event earlier in time than its own started event."""
    done = next(e for e in doc["events"] if (e["agent"], e["event"]) == (FAN_OUT[1], "done"))
    done["at"] = doc["steps"][FAN_OUT[1]]["started_at"] - timedelta(microseconds=10)


COMPLETED_BREAKS: list[Any] = [
    pytest.param(
        _set_step(FAN_OUT[0], status="pending", finished_at=None),
        (FAN_OUT[0], "completed-all-done"),
        id="completed-with-a-pending-step",
    ),
    pytest.param(
        lambda d: d.update(reason="late", failed_agent=FAN_OUT[0]),
        ("workflow", "completed-all-done"),
        id="completed-with-a-failure-reason",
    ),
    pytest.param(
        _set_step(FAN_OUT[1], status="running"), (FAN_OUT[1], "no-step-running"), id="step-left-running"
    ),
    pytest.param(
        _set_step(FAN_OUT[1], status="finished"), (FAN_OUT[1], "step-status-known"), id="unknown-step-status"
    ),
    pytest.param(
        lambda d: d["steps"].pop(FAN_OUT[2]),
        (FAN_OUT[2], "steps-match-manifest"),
        id="manifest-agent-without-step",
    ),
    pytest.param(
        lambda d: d["steps"].update(resizer=dict(d["steps"][JUDGE])),
        ("resizer", "steps-match-manifest"),
        id="step-outside-the-manifest",
    ),
    pytest.param(
        lambda d: d.update(agents=list(AGENTS[:-1])),
        ("workflow", "steps-match-manifest"),
        id="agents-recorded-differ",
    ),
    pytest.param(
        lambda d: d.update(workflow_id="wf-another"),
        ("workflow", "identity"),
        id="document-of-another-workflow",
    ),
    pytest.param(
        lambda d: d.update(status="processing"), ("workflow", "status-final"), id="processing-reported-final"
    ),
    pytest.param(
        lambda d: d.update(status="pending"), ("workflow", "status-final"), id="pending-reported-final"
    ),
    pytest.param(
        _shift(FAN_OUT[0], "finished_at", -60),
        (FAN_OUT[0], "step-times-ordered"),
        id="finished-before-started",
    ),
    pytest.param(
        _set_step(FAN_OUT[0], started_at=None),
        (FAN_OUT[0], "step-times-ordered"),
        id="finished-never-started",
    ),
    pytest.param(
        _set_step(FAN_OUT[0], finished_at=None),
        (FAN_OUT[0], "step-times-ordered"),
        id="done-without-finish-time",
    ),
    pytest.param(
        _early_finalizer, (FAN_OUT[-1], "finished-before-completed"), id="step-finished-after-completion"
    ),
    pytest.param(
        _shift(JUDGE, "started_at", -3600), (JUDGE, "created-first"), id="started-before-the-upload"
    ),
    pytest.param(
        lambda d: d.update(updated_at=T0), (FINALIZER, "updated-last"), id="updated-before-the-last-finish"
    ),
    pytest.param(
        lambda d: d.update(completed_at=None),
        ("workflow", "completed-at-set"),
        id="completed-without-completed-at",
    ),
    pytest.param(
        _shift(FAN_OUT[0], "started_at", -0.0015),
        (FAN_OUT[0], "dependency-order"),
        id="started-before-dependency-finished",
    ),
    pytest.param(
        _set_step(JUDGE, status="failed"),
        (FAN_OUT[0], "dependency-order"),
        id="started-though-dependency-not-done",
    ),
    pytest.param(
        _set_step(FAN_OUT[2], revision="analysis-00000-old"),
        (FAN_OUT[2], "revision-expected"),
        id="done-by-another-revision",
    ),
    pytest.param(
        _set_step(JUDGE, attempts=0, deliveries=0), (JUDGE, "attempts-counted"), id="done-without-an-attempt"
    ),
    pytest.param(
        _set_step(FAN_OUT[0], attempts=2),
        (FAN_OUT[0], "deliveries-cover-attempts"),
        id="more-attempts-than-deliveries",
    ),
    pytest.param(
        _set_step(FAN_OUT[1], published=False), (FAN_OUT[1], "published"), id="done-never-published"
    ),
    pytest.param(
        _swap_first_events, ("workflow", "events-ordered"), id="timeline-not-starting-with-the-upload"
    ),
    pytest.param(
        _event_out_of_agent_order, (FAN_OUT[1], "events-ordered"), id="agent-events-out-of-time-order"
    ),
    pytest.param(
        _dependent_started_first,
        (FAN_OUT[0], "events-ordered"),
        id="dependent-started-before-dependency-done",
    ),
    pytest.param(
        _drop_events(FAN_OUT[0], "done"),
        (FAN_OUT[0], "events-match-steps"),
        id="done-step-without-done-event",
    ),
    pytest.param(
        _drop_events(FINALIZER, "started"),
        (FINALIZER, "events-match-steps"),
        id="started-step-without-started-event",
    ),
    pytest.param(
        lambda d: d["events"][-1].update(revision="finalizer-00009-new"),
        (FINALIZER, "events-match-steps"),
        id="event-by-another-revision-than-the-step",
    ),
    pytest.param(
        _stray_event("resizer", "done"),
        ("resizer", "events-in-manifest"),
        id="event-of-an-agent-outside-the-manifest",
    ),
    pytest.param(
        _stray_event(JUDGE, "exploded"),
        (JUDGE, "events-in-manifest"),
        id="unknown-event-kind",
    ),
]


@allure.story("Each invariant fires on a completed workflow broken in exactly that way")
@pytest.mark.parametrize(("mutate", "expected"), COMPLETED_BREAKS)
def test_broken_completed_workflow_is_named_by_step_and_rule(
    mutate: Mutation, expected: tuple[str, str]
) -> None:
    document = completed()
    mutate(document)
    found = rules_of(document)
    assert expected in found, f"expected {expected}, found {sorted(found)}"


@allure.story("Each invariant fires on a failed or rejected workflow broken in exactly that way")
@pytest.mark.parametrize(
    ("build", "mutate", "expected"),
    [
        pytest.param(
            failed,
            lambda d: d.update(failed_agent=None),
            ("workflow", "failed-names-agent"),
            id="failed-naming-no-agent",
        ),
        pytest.param(
            failed,
            lambda d: d.update(failed_agent="resizer"),
            ("workflow", "failed-names-agent"),
            id="failed-naming-an-unknown-agent",
        ),
        pytest.param(
            failed,
            lambda d: d.update(failed_agent=FAN_OUT[0]),
            (FAN_OUT[0], "failed-names-agent"),
            id="failed-naming-a-done-step",
        ),
        pytest.param(
            failed,
            _set_step(FAN_OUT[1], error=None),
            (FAN_OUT[1], "failed-names-agent"),
            id="failed-step-without-error",
        ),
        pytest.param(
            failed,
            lambda d: d.update(reason=None),
            ("workflow", "failed-names-agent"),
            id="failed-without-reason",
        ),
        pytest.param(
            failed,
            _set_step(FAN_OUT[1], revision="exif-00000-old"),
            (FAN_OUT[1], "revision-expected"),
            id="failed-by-another-revision",
        ),
        pytest.param(
            failed,
            _set_step(FINALIZER, status="done", started_at=T0 + timedelta(hours=1)),
            (FINALIZER, "dependency-order"),
            id="finalizer-ran-past-a-failure",
        ),
        pytest.param(
            failed_by_dashboard,
            _drop_events(DASHBOARD, "failed"),
            ("workflow", "failed-names-agent"),
            id="dashboard-failure-without-its-event",
        ),
        pytest.param(
            failed_by_dashboard,
            lambda d: d["events"][-1].update(revision="dashboard-00009-new"),
            (DASHBOARD, "revision-expected"),
            id="dashboard-failure-by-another-revision",
        ),
        pytest.param(
            rejected,
            _set_step(FAN_OUT[0], status="pending"),
            (FAN_OUT[0], "rejected-judge-rest-skipped"),
            id="rejected-with-a-step-not-skipped",
        ),
        pytest.param(
            rejected,
            _set_step(JUDGE, error=None),
            (JUDGE, "rejected-judge-rest-skipped"),
            id="rejected-without-the-judges-reason",
        ),
        pytest.param(
            rejected,
            lambda d: d.update(reason=None),
            ("workflow", "rejected-judge-rest-skipped"),
            id="rejected-without-reason",
        ),
        pytest.param(
            rejected,
            lambda d: d.update(failed_agent=JUDGE),
            ("workflow", "rejected-judge-rest-skipped"),
            id="rejected-naming-a-failed-agent",
        ),
        pytest.param(
            rejected,
            lambda d: (
                d["steps"][JUDGE].update(status="skipped"),
                d["steps"][FAN_OUT[0]].update(status="rejected", error="x"),
            ),
            ("workflow", "rejected-judge-rest-skipped"),
            id="rejected-by-an-agent-that-is-not-the-judge",
        ),
        pytest.param(
            rejected,
            lambda d: d.update(completed_at=d["steps"][JUDGE]["finished_at"] - timedelta(microseconds=50)),
            (JUDGE, "finished-before-completed"),
            id="rejection-completed-before-the-judge-finished",
        ),
        pytest.param(
            rejected,
            _stray_event(FAN_OUT[0], "started", REVISIONS[FAN_OUT[0]]),
            (FAN_OUT[0], "events-match-steps"),
            id="skipped-step-with-events",
        ),
        pytest.param(
            rejected,
            _stray_event(FAN_OUT[0], "done", REVISIONS[FAN_OUT[0]]),
            (FAN_OUT[0], "events-match-steps"),
            id="done-event-for-a-step-not-done",
        ),
    ],
)
def test_broken_failed_or_rejected_workflow_is_named(
    build: Callable[[], Document], mutate: Mutation, expected: tuple[str, str]
) -> None:
    document = build()
    mutate(document)
    found = rules_of(document)
    assert expected in found, f"expected {expected}, found {sorted(found)}"


# --- revisions are never unchecked ---------------------------------------------------------------------


@allure.story("A step whose expected revision is unknown is a violation, never a pass")
def test_unknown_expected_revision_is_a_violation_not_a_pass() -> None:
    partial = {name: rev for name, rev in REVISIONS.items() if name != FAN_OUT[0]}
    violations = check(completed(), MANIFEST, partial)
    assert [(v.step, v.rule) for v in violations] == [(FAN_OUT[0], "revision-expected")]
    assert "no expected revision is known" in violations[0].detail
    assert {(v.step, v.rule) for v in check(completed(), MANIFEST, {})} == {
        (name, "revision-expected") for name in AGENTS
    }


@allure.story("Steps that never ran need no revision")
def test_skipped_and_pending_steps_need_no_revision() -> None:
    only_judge = {JUDGE: REVISIONS[JUDGE]}
    assert check(rejected(), MANIFEST, only_judge) == []


# --- the message ----------------------------------------------------------------------------------------


@allure.story("The failure names the workflow, the step and the rule")
def test_description_names_workflow_step_and_rule() -> None:
    document = completed()
    document["steps"][FAN_OUT[0]]["revision"] = "thumbnailer-00000-old"
    line = describe(WORKFLOW_ID, check(document, MANIFEST, REVISIONS))
    assert line.startswith(f"workflow {WORKFLOW_ID} breaks ")
    assert f"{FAN_OUT[0]}: [revision-expected] ran as revision 'thumbnailer-00000-old'" in line
    assert str(Violation("workflow", "identity", "x")) == "workflow: [identity] x"


@allure.story("An unfinished workflow is named as such, without a cascade of other findings")
def test_unfinished_workflow_reports_only_that_it_is_not_final() -> None:
    document = Flow().done(JUDGE).claim(FAN_OUT[0]).doc
    assert [(v.step, v.rule) for v in check(document, MANIFEST, REVISIONS)] == [("workflow", "status-final")]


@allure.story("Checking never changes the document")
def test_check_leaves_the_document_unchanged() -> None:
    document = failed()
    before = copy.deepcopy(document)
    check(document, MANIFEST, REVISIONS, WORKFLOW_ID)
    assert document == before


# --- the owner's API view is held against the document ---------------------------------------------


def _api_view(document: Document) -> Document:
    """What an honest GET /api/workflows/ID answers: the document as JSON (timestamps as text)."""
    return cast(Document, json.loads(json.dumps(document, default=str)))


@allure.story("An honest API view of every final status agrees with its document")
@pytest.mark.parametrize("build", [completed, rejected, failed, failed_by_dashboard])
def test_api_view_that_says_what_the_document_says_agrees(build: Callable[[], Document]) -> None:
    document = build()
    assert list(api_view_rules(document, _api_view(document))) == []
    later = _api_view(document)
    later["steps"][JUDGE]["deliveries"] = 2  # a duplicate push counted after the document was read
    assert list(api_view_rules(document, later)) == []


API_VIEW_BREAKS: list[tuple[str, Callable[[Document], None], tuple[str, str]]] = [
    ("another status", lambda v: v.update(status="running"), ("workflow", "api-says-document")),
    ("another owner", lambda v: v.update(owner="someone-else"), ("workflow", "api-says-document")),
    ("a step missing", lambda v: v["steps"].pop(FAN_OUT[0]), ("workflow", "api-says-document")),
    ("an older revision", lambda v: v["steps"][JUDGE].update(revision="old"), (JUDGE, "api-says-document")),
    (
        "another output",
        lambda v: v["steps"][FAN_OUT[1]]["output"].update(x=1),
        (FAN_OUT[1], "api-says-document"),
    ),
    ("fewer deliveries", lambda v: v["steps"][JUDGE].update(deliveries=0), (JUDGE, "api-says-document")),
]


@allure.story("An API view that says otherwise than the document is named by step")
@pytest.mark.parametrize(
    ("label", "change", "expected"), API_VIEW_BREAKS, ids=[c[0] for c in API_VIEW_BREAKS]
)
def test_api_view_that_says_otherwise_is_named(
    label: str, change: Callable[[Document], None], expected: tuple[str, str]
) -> None:
    document = completed()
    view = _api_view(document)
    change(view)
    found = {(v.step, v.rule) for v in api_view_rules(document, view)}
    assert found == {expected}, f"{label}: {found}"


# --- the watcher holds every settled document to them, once, and counts it --------------------------


class _StoredWatcher(WorkflowWatcher):
    """A polling watcher whose reads return a stored document (no Firestore)."""

    stored: Document | None = None

    def read(self, workflow_id: str) -> Document | None:  # type: ignore[override]
        return copy.deepcopy(self.stored)


def _watcher(document: Document, tally: InvariantTally | None) -> _StoredWatcher:
    watcher = _StoredWatcher(
        client=None,  # type: ignore[arg-type]
        manifest=MANIFEST,
        expected_revisions=REVISIONS,
        mode="polling",
        attach=False,
        invariants=tally,
    )
    watcher.stored = document
    return watcher


@allure.story("The watcher checks a settled document and counts it")
def test_watcher_counts_a_settled_workflow_that_holds_every_invariant() -> None:
    tally = InvariantTally()
    result = _watcher(completed(), tally).watch(WORKFLOW_ID, timeout=5)
    assert result.completed, result.message
    assert tally.checked == {WORKFLOW_ID}
    assert tally.broken == set()


@allure.story("A broken settled document fails the watch naming the workflow, the step and the rule")
def test_watcher_fails_the_test_on_a_broken_settled_workflow() -> None:
    tally = InvariantTally()
    document = completed()
    document["steps"][FAN_OUT[0]]["revision"] = "thumbnailer-00000-old"
    with pytest.raises(InvariantViolation) as raised:
        _watcher(document, tally).watch(WORKFLOW_ID, timeout=5)
    message = str(raised.value)
    assert message.startswith(f"workflow {WORKFLOW_ID} breaks 3 invariant(s):"), message
    assert f"{FAN_OUT[0]}: [revision-expected]" in message
    assert f"{FAN_OUT[0]}: [events-match-steps]" in message
    assert tally.broken == {WORKFLOW_ID}
    assert tally.rules == {"revision-expected": 1, "events-match-steps": 2}


@allure.story("A document that has not settled is not held to the final invariants")
def test_watcher_leaves_unsettled_documents_alone() -> None:
    tally = InvariantTally()
    running = Flow().done(JUDGE).claim(FAN_OUT[0]).doc
    result = _watcher(running, tally).watch(WORKFLOW_ID, until=status_is("processing"), timeout=5)
    assert result.reached
    assert tally.checked == set()


@allure.story("Without a tally (benchmarks, synthetic drills) the watcher only reports")
def test_watcher_without_invariants_never_raises() -> None:
    document = completed()
    document["steps"][FAN_OUT[0]]["published"] = True
    document["steps"][FAN_OUT[0]]["revision"] = "old"
    assert _watcher(document, None).watch(WORKFLOW_ID, timeout=5).completed


@allure.story("A test expecting other revisions keeps the same watched list and tally")
def test_expecting_other_revisions_shares_the_watch_list_and_the_tally() -> None:
    tally = InvariantTally()
    document = completed()
    document["steps"][FAN_OUT[0]]["revision"] = "candidate-7"
    for event in document["events"]:
        if event["agent"] == FAN_OUT[0]:
            event["revision"] = "candidate-7"
    watcher = _watcher(document, tally)
    with pytest.raises(InvariantViolation):
        watcher.watch(WORKFLOW_ID, timeout=5)
    candidate = watcher.expecting({FAN_OUT[0]: "candidate-7"})
    assert isinstance(candidate, _StoredWatcher)
    candidate.stored = document
    assert candidate.watch(WORKFLOW_ID, timeout=5).completed
    assert candidate.watched is watcher.watched
    assert watcher.watched == [WORKFLOW_ID, WORKFLOW_ID]
    assert candidate.invariants is tally
    assert watcher.expected_revisions[FAN_OUT[0]] == REVISIONS[FAN_OUT[0]]


class _Config:
    """What the report hooks read of a pytest config (a worker's has workeroutput)."""

    def __init__(self, rootpath: Path, worker: bool) -> None:
        self.stash = pytest.Stash()
        self.rootpath = rootpath
        if worker:
            self.workeroutput: dict[str, Any] = {}

    def getini(self, name: str) -> str:
        assert name == "reports_dir"
        return "reports"


@allure.story("The figure is aggregated across xdist workers and written to reports/invariants.json")
def test_counts_from_every_worker_are_merged_written_and_shown(tmp_path: Path) -> None:
    controller = _Config(tmp_path, worker=False)
    for name, ids in (("gw0", ["a", "b"]), ("gw1", ["c"])):
        worker = _Config(tmp_path, worker=True)
        for workflow_id in ids:
            tally(worker).record(workflow_id, [])  # type: ignore[arg-type]
        if name == "gw1":
            tally(worker).record("d", [Violation("exif", "published", "done with published=False")])  # type: ignore[arg-type]
        pytest_sessionfinish(SimpleNamespace(config=worker))  # type: ignore[arg-type]
        assert not (tmp_path / "reports").exists(), "a worker wrote the run's report"
        node = SimpleNamespace(
            config=controller, workeroutput=worker.workeroutput, gateway=SimpleNamespace(id=name)
        )
        pytest_testnodedown(node, None)

    pytest_sessionfinish(SimpleNamespace(config=controller))  # type: ignore[arg-type]

    report = json.loads((tmp_path / "reports" / "invariants.json").read_text(encoding="utf-8"))
    assert report["workflows_checked"] == 4
    assert report["workflows_broken"] == 1
    assert report["broken"] == ["d"]
    assert report["violations_by_rule"] == {"published": 1}
    assert report["checked_per_worker"] == {"gw0": 2, "gw1": 2}
    lines: list[str] = []
    pytest_terminal_summary(SimpleNamespace(write_line=lines.append), controller)  # type: ignore[arg-type]
    assert lines == ["invariants: 4 settled workflows checked, 1 broke one (reports/invariants.json)"]


@allure.story("A run that watched no workflow writes no figure")
def test_nothing_is_written_when_no_workflow_was_checked(tmp_path: Path) -> None:
    controller = _Config(tmp_path, worker=False)
    pytest_sessionfinish(SimpleNamespace(config=controller))  # type: ignore[arg-type]
    lines: list[str] = []
    pytest_terminal_summary(SimpleNamespace(write_line=lines.append), controller)  # type: ignore[arg-type]
    assert not (tmp_path / "reports").exists()
    assert lines == []
