"""The Allure report's inputs: categories over the suite's real failure messages, executor, history."""

from __future__ import annotations

import importlib
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from google.api_core import exceptions as google_exceptions

from deploy import cli, verify
from deploy.record import RunRecord
from deploy.shell import Shell
from deploy.steps import StepFailed
from fixtures import invariants, stack
from fixtures.allure_report import (
    DEFAULT_BROKEN,
    DEFAULT_FAILED,
    carry_history,
    categories,
    classify,
    executor,
    next_build_order,
    prepare_results,
)
from fixtures.diagnosis import diagnose, explain, explain_late, lateness
from fixtures.firestore import InvariantViolation, WatchResult
from imageflow.manifest import default as default_manifest
from oracles import privacy
from stack import processes, runner

E2E = Path(__file__).parents[2] / "tests" / "e2e"
MANIFEST = default_manifest()
AGENTS = MANIFEST.agent_names
CATEGORIES = categories(AGENTS)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def e2e_module(name: str) -> Any:
    """A module of tests/e2e, imported as pytest imports it there (its folder on sys.path)."""
    if str(E2E) not in sys.path:
        sys.path.insert(0, str(E2E))
    return importlib.import_module(name)


def exconly(error: BaseException) -> str:
    """What allure-pytest records as the status message of a test that raised (pytest's exconly)."""
    with pytest.raises(type(error)) as caught:
        raise error
    return caught.exconly()


def failure_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """Call a real check or builder that raises; its (status, exconly) as allure-pytest records them."""
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - each caller's own exception type
        call(*args, **kwargs)
    failed = isinstance(caught.value, AssertionError | pytest.fail.Exception)
    return ("failed" if failed else "broken"), caught.exconly()


def step(status: str, at: float, attempts: int = 1, **more: Any) -> dict[str, Any]:
    """A workflow step as the agents record it."""
    return {
        "status": status,
        "attempts": attempts,
        "revision": "r1",
        "started_at": T0 + timedelta(seconds=at),
        "finished_at": T0 + timedelta(seconds=at + 0.5),
        "published": True,
        **more,
    }


def done(agent: str, at: float) -> dict[str, Any]:
    """A done step of agent with every output its manifest entry promises."""
    return step("done", at, output=dict.fromkeys(MANIFEST.agent(agent).outputs, 1))


def document(**steps: dict[str, Any]) -> dict[str, Any]:
    """A workflow document with the given steps (the others pending, never attempted)."""
    pending = {name: {"status": "pending", "attempts": 0} for name in AGENTS}
    return {"status": "processing", "created_at": T0, "updated_at": T0, "steps": {**pending, **steps}}


class Watcher:
    """A workflow watcher that reports one finished watch."""

    def __init__(self, result: WatchResult) -> None:
        self.result = result

    def watch(self, workflow_id: str) -> WatchResult:
        """The watch's outcome."""
        return self.result


def watch_failure(doc: dict[str, Any] | None, reached: bool = False) -> tuple[str, str]:
    """The failure of pipeline_checks.completed() on a watch that saw doc."""
    diagnosis = diagnose(doc, AGENTS, manifest=MANIFEST)
    message = explain("wf-1", doc, diagnosis, 25.0, reached)
    result = WatchResult("wf-1", doc, reached, 25.0, "listener", diagnosis, message)
    return failure_of(e2e_module("pipeline_checks").completed, Watcher(result), "wf-1")


def only(status: str, message: str, trace: str | None = None) -> str:
    """The one category the result lands in (fails when it lands in none or several)."""
    found = classify(CATEGORIES, status, message, trace)
    assert len(found) == 1, f"{message!r} lands in {found}"
    return found[0]


def test_never_fired_is_the_first_agent_that_did_not_run() -> None:
    """A watch that timed out with the thumbnailer pending: that agent never fired, nothing else."""
    doc = document(validator=done("validator", 0))
    assert only(*watch_failure(doc)) == "Product defect: thumbnailer never fired"


def test_an_agent_that_failed_explains_the_ones_that_never_fired_after_it() -> None:
    """The validator failed, so the rest never fired: the report blames the validator only."""
    doc = document(validator=step("failed", 0, error="decoder crashed"))
    doc["status"] = "failed"
    assert only(*watch_failure(doc, reached=True)) == "Product defect: validator failed"


def test_a_late_agent_is_late_and_a_not_started_one_never_fired() -> None:
    """The watcher's early end on a deadline: started and unfinished is late, not started never fired."""
    now = T0 + timedelta(seconds=MANIFEST.agent("thumbnailer").deadline_seconds + 30)
    running = {"status": "running", "attempts": 1, "revision": "r1", "started_at": T0 + timedelta(seconds=1)}
    cases = {"never fired": {}, "late": {"thumbnailer": running}}
    for expected, more in cases.items():
        others = {name: done(name, 1) for name in ("validator", "exif", "analysis")}
        doc = document(**{**others, "validator": done("validator", 0), **more})
        found = lateness(doc, MANIFEST, now)
        assert [item.agent for item in found.late] == ["thumbnailer"]
        message = explain_late("wf-1", doc, found, diagnose(doc, AGENTS, manifest=MANIFEST), AGENTS)
        assert only("failed", f"AssertionError: {message}") == f"Product defect: thumbnailer {expected}"


def test_a_completed_workflow_past_a_deadline_or_missing_outputs() -> None:
    """Over the deadline is late; an output summary without the manifest's keys is wrong output."""
    finishing = {
        name: step("done", 0, output={key: 1 for key in MANIFEST.agent(name).outputs}) for name in AGENTS
    }
    slow = MANIFEST.agent("exif")
    finishing["exif"] = {
        **finishing["exif"],
        "finished_at": T0 + timedelta(seconds=slow.deadline_seconds + 5),
    }
    doc = {**document(**finishing), "status": "completed"}
    result = WatchResult("wf-1", doc, True, 1.0, "listener", diagnose(doc, AGENTS, manifest=MANIFEST), "")
    message = explain("wf-1", doc, result.diagnosis, 1.0, True)
    assert only("failed", f"AssertionError: {message}") == "Product defect: exif late"

    finishing["exif"] = step("done", 0, output={})
    doc = {**document(**finishing), "status": "completed"}
    message = explain("wf-1", doc, diagnose(doc, AGENTS, manifest=MANIFEST), 1.0, True)
    assert only("failed", f"AssertionError: {message}") == "Product defect: exif wrong output"


def processed(kind: str = "jpeg") -> Any:
    """The parts of a processed upload that the agents' verdict names."""
    return SimpleNamespace(workflow_id="wf-7", image=SimpleNamespace(kind=kind))


def test_an_oracle_difference_is_the_agents_wrong_output_and_a_location_is_privacy() -> None:
    """test_agents' verdict: an agent's output untrue to the upload, or the position left somewhere."""
    problems = ["width 320 != 160"]
    assert only(*failure_of(e2e_module("test_agents")._verdict, processed(), "thumbnailer", problems)) == (
        "Product defect: thumbnailer wrong output"
    )
    position = e2e_module("test_agents").POSITION
    leaks = privacy.document_leaks(
        {"gps": {"lat": position.degrees[0], "lon": position.degrees[1]}}, position
    )
    assert leaks, "the planted position should be found"
    assert only(
        *failure_of(e2e_module("test_agents")._verdict, processed(), "dashboard (location privacy)", leaks)
    ) == ("Product defect: privacy (location left in an output)")


def test_a_broken_invariant_and_a_workflow_never_written() -> None:
    """The watcher's InvariantViolation, and an upload whose workflow never appeared."""
    violation = invariants.Violation("thumbnailer", "finished-after-start", "finished before it started")
    message = exconly(InvariantViolation(invariants.describe("wf-1", [violation])))
    assert only("failed", message) == "Product defect: workflow invariant broken"
    assert only(*watch_failure(None)) == "Product defect: upload never became a workflow"


def test_a_failed_assertion_in_a_security_test_is_a_security_defect() -> None:
    """Security is told by the test's file in the trace (its assertions have messages of their own)."""
    trace = (
        "tests/e2e/test_security.py:88: in test_logout_ends_the_session\n    assert ...\nE   AssertionError"
    )
    assert (Path(__file__).parents[2] / "tests/e2e/test_security.py").exists()
    assert only("failed", "AssertionError: /api/images answered 200 after logout", trace) == (
        "Product defect: security"
    )


def test_stack_and_emulator_failures_are_infrastructure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An emulator not ready, a stack that did not start: infrastructure, never a product defect."""
    message = exconly(_readiness("firestore emulator on 127.0.0.1:8080"))
    assert only("broken", message) == "Infrastructure: emulator"
    assert (
        only("broken", exconly(_readiness("dashboard revision r2 /readyz"))) == "Infrastructure: local stack"
    )

    def fail_to_start(*args: object, **kwargs: object) -> bool:
        raise runner.StackError("service failed to start: dashboard: address in use")

    monkeypatch.setattr(runner, "start", fail_to_start)
    monkeypatch.setattr(runner, "healthy", lambda path: False)
    status, message = failure_of(stack._ensure_started, tmp_path / "state.json")
    assert only(status, message) == "Infrastructure: local stack"


def _readiness(what: str) -> processes.ReadinessError:
    try:
        processes.wait_until(lambda: False, what, timeout=0)
    except processes.ReadinessError as exc:
        return exc
    raise AssertionError("wait_until returned on a check that is never true")


def test_cloud_commands_and_api_errors_are_infrastructure(tmp_path: Path) -> None:
    """A gcloud the deploy tool cannot run and a Google API's 503 are infrastructure."""
    record = RunRecord(session="s", environment="staging", kind="gcp", commit="", run_id="")
    shell = Shell(record, out=io.StringIO())
    status, message = failure_of(
        shell.run, ["gcloud", "run", "services", "list"], env={"PATH": str(tmp_path)}
    )
    assert StepFailed.__name__ in message
    assert only(status, message) == "Infrastructure: cloud command or API"
    message = exconly(google_exceptions.ServiceUnavailable("firestore.googleapis.com is unavailable"))
    assert only("broken", message) == "Infrastructure: cloud command or API"


def test_the_suites_own_errors_are_test_defects_and_the_rest_keeps_allures_defaults() -> None:
    """A TypeError in a test is a test defect; an unclaimed failure or error keeps Allure's bucket."""
    status, message = failure_of(lambda: len(cast(Any, 3)))
    assert only(status, message) == "Test defect: the suite's own code raised"
    assert only("failed", "AssertionError: upload answered 500: boom") == DEFAULT_FAILED
    assert only("broken", "RuntimeError: something else") == DEFAULT_BROKEN
    assert classify(CATEGORIES, "passed", None) == []


def test_categories_json_is_what_allure_reads(tmp_path: Path) -> None:
    """prepare_results writes categories (every agent of the manifest), executor and the history."""
    old = tmp_path / "report"
    (old / "history").mkdir(parents=True)
    trend = [{"buildOrder": 4, "data": {}}, {"buildOrder": 3, "data": {}}]
    (old / "history" / "history-trend.json").write_text(json.dumps(trend))
    results = tmp_path / "results"
    (results / "history").mkdir(parents=True)
    (results / "history" / "stale.json").write_text("[]")
    prepare_results(results, old, "staging", "run1", AGENTS, {})
    written = json.loads((results / "categories.json").read_text())
    names = [entry["name"] for entry in written]
    assert all(f"Product defect: {agent} never fired" in names for agent in AGENTS)
    assert all(set(entry["matchedStatuses"]) <= {"failed", "broken"} for entry in written)
    assert sorted(p.name for p in (results / "history").iterdir()) == ["history-trend.json"]
    assert json.loads((results / "executor.json").read_text())["buildOrder"] == 5


def test_history_of_no_previous_report() -> None:
    """No earlier report: nothing carried, the first build."""
    missing = Path("/nonexistent-report")
    assert carry_history(missing, Path("/nonexistent-results")) == 0
    assert next_build_order(missing) == 1


def test_executor_from_github_actions_variables() -> None:
    """The run's link, its number as the build order, the branch and commit in the name."""
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/imageflow",
        "GITHUB_RUN_ID": "123456789",
        "GITHUB_RUN_NUMBER": "42",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_WORKFLOW": "release",
        "GITHUB_SHA": "0123456789abcdef0123",
        "GITHUB_REF_NAME": "v1.2.0",
    }
    assert executor(env, "staging", "run1", 7) == {
        "name": "GitHub Actions",
        "type": "github",
        "url": "https://github.com/acme/imageflow",
        "buildOrder": 42,
        "buildName": "release #42 on staging: v1.2.0 @ 0123456789ab",
        "buildUrl": "https://github.com/acme/imageflow/actions/runs/123456789/attempts/2",
        "reportName": "imageflow staging",
    }


def test_executor_of_a_local_run_names_no_host() -> None:
    """Off CI: this run, the branch and commit from git, and no machine name."""
    found = executor({}, "local", "12011000ab12", 3)
    assert found["name"] == "local run"
    assert found["buildOrder"] == 3
    assert found["buildName"].startswith("run 12011000ab12 on local: ")
    assert "buildUrl" not in found
    assert __import__("socket").gethostname() not in json.dumps(found)


@pytest.mark.parametrize("session", ["e2e", "staging_e2e", "production_gate"])
def test_every_gate_generates_the_report_of_its_target(monkeypatch: pytest.MonkeyPatch, session: str) -> None:
    """The suite command of each gate, local or remote, asks for the HTML report."""
    monkeypatch.delenv("IMAGEFLOW_VERIFY_COMMAND", raising=False)
    ctx = cli.context(cli.parse([session])[0], [])
    assert "--allure-html" in verify.suite_command(ctx)


def test_a_run_without_the_html_report_still_writes_categories_and_executor(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results generated elsewhere (the verification container's) carry the categories and executor."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[2]))
    monkeypatch.setenv("IMAGEFLOW_TARGET", "local")
    pytester.makepyfile("def test_passes():\n    pass\n")
    plugins = ["-p", "fixtures.target", "-p", "fixtures.reporting", "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*plugins, "--alluredir=reports/allure-results")
    assert result.ret == 0, result.outlines[-5:]
    results = pytester.path / "reports" / "allure-results"
    names = [entry["name"] for entry in json.loads((results / "categories.json").read_text())]
    assert "Infrastructure: emulator" in names
    assert json.loads((results / "executor.json").read_text())["reportName"] == "imageflow local"
    assert not (pytester.path / "reports" / "allure").exists(), "no HTML report was asked for"
