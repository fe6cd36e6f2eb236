"""The fault drill's own logic: catalogue completeness, verdicts, table, report log, keep rules, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import allure
import pytest

from drills import fault_drill, report, suite
from drills.faults_catalogue import (
    BROKEN_RULES_DIR,
    FAULTS_ENV,
    PARTS,
    RULES_FAULT,
    build,
    covered_switches,
)
from drills.pytest_plugin import keeps
from drills.suite import CaseOutcome, SuiteRun
from imageflow import faults as agent_faults
from imageflow import manifest as manifest_module
from imageflow.dashboard import faults as dashboard_faults
from stack.localsecrets import REDACTED
from stack.state import REPO_ROOT

pytestmark = [
    allure.epic("Drills"),
    allure.feature("Fault drill"),
    allure.severity(allure.severity_level.CRITICAL),
]

MANIFEST = manifest_module.default()
CATALOGUE = build(MANIFEST)


def _run(results: dict[str, CaseOutcome], exit_code: int = 1, started: float = 100.0) -> SuiteRun:
    return SuiteRun(exit_code=exit_code, started_at=started, finished_at=started + 50, results=results)


def _failed(nodeid: str, at: float) -> CaseOutcome:
    return CaseOutcome(nodeid, "failed", at, "AssertionError: it broke")


def _passed(nodeid: str) -> CaseOutcome:
    return CaseOutcome(nodeid, "passed")


@allure.story("Catalogue")
def test_catalogue_has_at_least_20_distinct_faults_across_every_part() -> None:
    parts = {fault.part for fault in CATALOGUE.values()}
    assert len(CATALOGUE) >= 20
    assert parts == set(PARTS)


@allure.story("Catalogue")
def test_catalogue_gives_every_agent_the_six_generic_faults() -> None:
    for agent in MANIFEST.agent_names:
        for fault in agent_faults.GENERIC_FAULTS:
            assert f"{agent}.{fault}" in CATALOGUE, f"{agent}.{fault} missing from the drill"


@allure.story("Catalogue")
def test_catalogue_deploys_every_fault_switch_of_the_reference_system() -> None:
    switches = set(agent_faults.catalogue(MANIFEST.agent_names)) | set(dashboard_faults.FAULTS)
    assert switches - covered_switches(CATALOGUE) == set()


@allure.story("Catalogue")
def test_every_fault_is_deployable_as_a_revision_or_a_rules_file() -> None:
    services = {service.name for service in MANIFEST.services}
    for fault in CATALOGUE.values():
        if fault.rules_file is not None:
            assert fault.rules_file.is_file(), fault.name
            assert fault.service is None
        else:
            assert fault.service in services, fault.name
            assert fault.env.get(FAULTS_ENV), fault.name
        assert fault.selection.keep or fault.selection.keep_agents, f"{fault.name} selects the whole suite"
        assert fault.expected, f"{fault.name} names no test expected to catch it"


@allure.story("Catalogue")
def test_config_fault_removes_the_session_secret_from_the_revision() -> None:
    fault = CATALOGUE["config.secret_missing_but_ready"]
    assert fault.env["SESSION_SECRET"] == ""
    assert dashboard_faults.READY_WITHOUT_SECRET in fault.env[FAULTS_ENV]
    assert "SESSION_SECRET" in fault.deploy_summary


@allure.story("Catalogue")
def test_broken_rules_let_any_signed_in_user_read_any_workflow() -> None:
    broken = (BROKEN_RULES_DIR / "other_users_readable.rules").read_text(encoding="utf-8")
    good = (REPO_ROOT / "firestore.rules").read_text(encoding="utf-8")
    assert "resource.data.owner == request.auth.uid" in good
    assert "resource.data.owner" not in broken
    assert "allow get, list: if request.auth != null;" in broken
    assert CATALOGUE[RULES_FAULT].rules_file == BROKEN_RULES_DIR / "other_users_readable.rules"


@allure.story("Verdict")
def test_fault_is_caught_by_a_test_failing_only_under_it_with_seconds_from_deploy() -> None:
    under = _run({"t::a": _failed("t::a", 130.0), "t::b": _failed("t::b", 125.5), "t::c": _passed("t::c")})
    clean = _run({"t::a": _passed("t::a"), "t::b": _passed("t::b"), "t::c": _passed("t::c")}, exit_code=0)
    row = report.judge("x.errors", "agents", ["t::a"], 110.0, under, clean)
    assert row.caught is True
    assert row.tests == ["t::b", "t::a"]
    assert row.seconds_to_detect == 15.5
    assert row.clean_after is True


@allure.story("Verdict")
def test_failure_that_also_happens_on_the_clean_revision_is_no_evidence() -> None:
    under = _run({"t::a": _failed("t::a", 130.0)})
    clean = _run({"t::a": _failed("t::a", 160.0)})
    row = report.judge("x.errors", "agents", [], 110.0, under, clean)
    assert row.caught is False
    assert row.clean_after is False
    assert row.seconds_to_detect is None


@allure.story("Verdict")
def test_failure_already_red_in_the_baseline_is_no_evidence() -> None:
    under = _run({"t::a": _failed("t::a", 130.0)})
    clean = _run({"t::a": _passed("t::a")}, exit_code=0)
    row = report.judge("x.errors", "agents", [], 110.0, under, clean, baseline_failures=["t::a"])
    assert row.caught is False


@allure.story("Verdict")
def test_a_run_pytest_could_not_finish_catches_nothing() -> None:
    under = _run({"t::a": _failed("t::a", 130.0)}, exit_code=4)
    row = report.judge("x.errors", "agents", [], 110.0, under, None)
    assert row.caught is False
    assert "did not finish" in row.error


@allure.story("Verdict")
def test_no_selected_test_means_not_caught_and_says_so() -> None:
    row = report.judge("x.errors", "agents", [], 110.0, _run({}, exit_code=5), None)
    assert (row.caught, row.error) == (False, "no test was selected for this fault")


@allure.story("Verdict")
def test_drill_passes_only_with_green_baseline_every_fault_caught_and_green_after() -> None:
    good = report.DrillRow("a", "agents", True, ["t::a"], 3.0, clean_after=True)
    assert report.verdict([good], _run({"t::a": _passed("t::a")}, exit_code=0)) == (True, [])
    uncaught = report.DrillRow("b", "agents", False, clean_after=True)
    red_after = report.DrillRow(
        "c", "agents", True, ["t::a"], 3.0, clean_after=False, clean_failures=["t::a"]
    )
    ok, reasons = report.verdict([good, uncaught, red_after], _run({"t::x": _failed("t::x", 1.0)}))
    assert ok is False
    assert len(reasons) == 3
    assert "red on the clean revisions" in reasons[0]
    assert reasons[1] == "b was not caught"
    assert "not green: 1 failed" in reasons[2]


@allure.story("Report")
def test_table_has_a_header_and_one_line_per_fault_with_the_failed_test_names() -> None:
    rows = [
        report.DrillRow(
            "exif.errors",
            "agents",
            True,
            ["tests/e2e/t.py::test_exif_reads[chromium]"],
            4.2,
            clean_after=True,
        ),
        report.DrillRow(
            "rules.other_users_readable", "rules", False, error="no test was selected for this fault"
        ),
    ]
    lines = report.table(rows).splitlines()
    assert lines[0].split() == [
        "fault",
        "part",
        "caught",
        "detect",
        "s",
        "clean",
        "after",
        "tests",
        "that",
        "failed",
    ]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["exif.errors", "agents", "yes", "4.2", "yes", "test_exif_reads[chromium]"]
    assert lines[3].split()[:5] == ["rules.other_users_readable", "rules", "NO", "-", "-"]
    assert "no test was selected" in lines[3]


@allure.story("Report")
def test_report_json_has_one_row_per_fault_with_the_promised_fields(tmp_path: Path) -> None:
    rows = [report.DrillRow("exif.errors", "agents", True, ["t::a"], 4.2, clean_after=True)]
    path = report.write(tmp_path / "fault-drill.json", rows, None, True, [], {"complete": True})
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["ok"] is True
    assert (document["caught"], document["faults"]) == (1, 1)
    row = document["rows"][0]
    assert {k: row[k] for k in ("fault", "caught", "tests", "seconds_to_detect")} == {
        "fault": "exif.errors",
        "caught": True,
        "tests": ["t::a"],
        "seconds_to_detect": 4.2,
    }


@allure.story("Report log")
def test_report_log_folds_phases_into_one_outcome_per_test(tmp_path: Path) -> None:
    log = tmp_path / "reports.jsonl"
    lines = [
        {"nodeid": "t::a", "when": "setup", "outcome": "passed", "at": 1.0},
        {"nodeid": "t::a", "when": "call", "outcome": "passed", "at": 2.0},
        {"nodeid": "t::a", "when": "teardown", "outcome": "failed", "at": 3.0, "message": "cleanup broke"},
        {"nodeid": "t::b", "when": "setup", "outcome": "failed", "at": 4.0, "message": "setup broke"},
        {"nodeid": "t::c", "when": "call", "outcome": "passed", "at": 5.0},
        {"nodeid": "t::d", "when": "setup", "outcome": "skipped", "at": 6.0},
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n{truncated", encoding="utf-8")
    results = suite.read_log(log)
    assert {n: r.outcome for n, r in results.items()} == {
        "t::a": "failed",
        "t::b": "failed",
        "t::c": "passed",
        "t::d": "skipped",
    }
    assert results["t::a"].first_failed_at == 3.0
    assert results["t::a"].message == "cleanup broke"


@allure.story("Selection")
def test_keep_rules_match_node_id_substrings_or_agent_markers() -> None:
    assert keeps("tests/e2e/test_login.py::test_login_refuses", [], ["login"], [])
    assert keeps("tests/e2e/test_agents.py::test_x", ["exif"], [], ["exif"])
    assert not keeps("tests/e2e/test_agents.py::test_x", ["analysis"], ["login"], ["exif"])


@allure.story("Selection")
def test_plugin_deselects_unkept_tests_and_logs_every_report(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    agent(name): agent\n", encoding="utf-8")
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.agent("exif")
            def test_exif_output():
                assert False, "exif wrote nothing"

            def test_login_page():
                pass

            def test_unrelated():
                pass
            """
        ),
        encoding="utf-8",
    )
    log = tmp_path / "reports.jsonl"
    command = [sys.executable, "-m", "pytest", "-p", "drills.pytest_plugin", "-p", "no:cacheprovider"]
    command += ["--drill-log", str(log), "--drill-keep", "login", "--drill-keep-agent", "exif", "-q"]
    finished = subprocess.run(
        [*command, str(tmp_path)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "1 deselected" in finished.stdout
    results = suite.read_log(log)
    assert {n.split("::")[-1]: r.outcome for n, r in results.items()} == {
        "test_exif_output": "failed",
        "test_login_page": "passed",
    }
    failed = next(r for r in results.values() if r.outcome == "failed")
    assert "exif wrote nothing" in failed.message


def test_abort_on_failure_kills_the_run_once_the_first_failure_is_logged(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import threading
            import pytest

            @pytest.mark.xdist_group("red")
            def test_red():
                assert False, "the mutant broke it"

            @pytest.mark.xdist_group("slow")
            def test_waits_for_a_deadline():
                threading.Event().wait(90)
            """
        ),
        encoding="utf-8",
    )
    log = tmp_path / "reports.jsonl"
    command = [sys.executable, "-m", "pytest", "-p", "drills.pytest_plugin", "-p", "no:cacheprovider", "-q"]
    command += ["--drill-log", str(log), "--drill-abort-on-failure", "-n", "2", "--dist", "loadgroup"]
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    with subprocess.Popen([*command, str(tmp_path)], cwd=tmp_path, env=env, start_new_session=True) as run:
        try:
            exit_code = run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            pytest.fail("the run was not killed at its first failure: it was still waiting after 60 s")
    assert exit_code == -signal.SIGKILL
    results = suite.read_log(log)
    assert {n.split("::")[-1].split("@")[0]: r.outcome for n, r in results.items()} == {
        "test_red": "failed"
    }, "the waiting test must never report: the group died at the first failure"


def test_abort_on_failure_is_refused_without_a_group_of_its_own(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pytest", "-p", "drills.pytest_plugin", "-p", "no:cacheprovider"]
    command += ["--drill-log", str(tmp_path / "log.jsonl"), "--drill-abort-on-failure", str(tmp_path)]
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    finished = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == pytest.ExitCode.USAGE_ERROR
    assert "needs pytest to lead its own process group" in finished.stderr
    assert "Traceback" not in finished.stderr


@allure.story("Rollback")
def test_rollback_config_drops_fault_switches_and_never_resends_a_redacted_secret() -> None:
    env = {FAULTS_ENV: "exif.errors", "SESSION_SECRET": REDACTED, "IMAGEFLOW_MAX_UPLOAD_BYTES": "5"}
    assert fault_drill.clean_overrides(env) == {"IMAGEFLOW_MAX_UPLOAD_BYTES": "5"}


@allure.story("Command line")
def test_unknown_fault_is_refused_with_one_line_and_exit_2() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "drills.fault_drill", "--faults", "exif.errors,no.such_fault", "--list"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip() == "fault drill: unknown fault(s): no.such_fault (see --list)"


@allure.story("Command line")
def test_list_prints_every_fault_with_how_it_is_deployed() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "drills.fault_drill", "--list"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[-1] == f"{len(CATALOGUE)} faults"
    assert any(line.startswith(RULES_FAULT) and "other_users_readable.rules" in line for line in lines)


@pytest.mark.parametrize("wanted", ["", None])
@allure.story("Command line")
def test_no_fault_list_means_every_fault(wanted: str | None) -> None:
    assert [f.name for f in fault_drill.choose(CATALOGUE, wanted)] == list(CATALOGUE)


@allure.story("Report")
def test_rows_of_an_earlier_report_are_read_back_for_update(tmp_path: Path) -> None:
    rows = [report.DrillRow("exif.errors", "agents", True, ["t::a"], 4.2, clean_after=True)]
    path = report.write(tmp_path / "fault-drill.json", rows, None, True, [], {})
    assert report.read_rows(path) == rows
    assert report.read_rows(tmp_path / "absent.json") == []


@allure.story("Verdict")
def test_pytest_dying_before_any_test_is_a_broken_run_not_a_catch() -> None:
    crashed = _run({}, exit_code=1)
    assert crashed.broken is True
    row = report.judge("x.errors", "agents", [], 110.0, crashed, None)
    assert (row.caught, row.error) == (False, "the suite run under the fault did not finish (pytest exit 1)")


@allure.story("Command line")
def test_update_option_is_accepted() -> None:
    assert fault_drill.parse_args(["--update", "--faults", "exif.errors"]).update is True
