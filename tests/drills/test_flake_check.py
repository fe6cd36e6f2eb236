"""The flake check's tally and table: pass rates, flaky (passed and failed) and always-failing tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import allure
import pytest

from drills import flake_check
from drills.suite import CaseOutcome, SuiteRun
from stack import processes
from stack.control import PASS_ENV
from stack.processes import MARKER_ENV
from stack.state import REPO_ROOT

pytestmark = [
    allure.epic("Drills"),
    allure.feature("Flake check"),
    allure.severity(allure.severity_level.CRITICAL),
]


def _run(**outcomes: str) -> SuiteRun:
    results = {
        f"t.py::{name}": CaseOutcome(f"t.py::{name}", outcome, 1.0 if outcome == "failed" else None, "boom")
        for name, outcome in outcomes.items()
    }
    return SuiteRun(exit_code=1, started_at=0.0, finished_at=10.0, results=results)


RUNS = [
    _run(test_steady="passed", test_flaky="passed", test_broken="failed", test_skip="skipped"),
    _run(test_steady="passed", test_flaky="failed", test_broken="failed", test_skip="skipped"),
    _run(test_steady="passed", test_flaky="passed", test_broken="failed"),
]


@allure.story("Tally")
def test_tally_counts_pass_rates_and_flags_tests_that_both_passed_and_failed() -> None:
    records = flake_check.tally(RUNS)
    flaky, steady, broken = (records[f"t.py::{n}"] for n in ("test_flaky", "test_steady", "test_broken"))
    assert (flaky.passed, flaky.failed, flaky.pass_rate, flaky.flaky) == (2, 1, 0.667, True)
    assert (steady.pass_rate, steady.flaky, steady.broken) == (1.0, False, False)
    assert (broken.pass_rate, broken.flaky, broken.broken) == (0.0, False, True)
    assert broken.messages == ("boom",)
    assert records["t.py::test_skip"].pass_rate is None


@allure.story("Table")
def test_table_lists_flaky_first_then_failing_with_a_summary_line() -> None:
    lines = flake_check.table(flake_check.tally(RUNS), runs=3).splitlines()
    assert lines[0].split() == ["test", "passed", "failed", "skipped", "pass", "rate", "verdict"]
    assert lines[2].split() == ["test_flaky", "2", "1", "0", "67%", "FLAKY"]
    assert lines[3].split() == ["test_broken", "0", "3", "0", "0%", "BROKEN"]
    assert lines[-1] == "4 tests over 3 runs: 1 flaky, 1 failing every run"


@allure.story("Report")
def test_report_names_flaky_and_always_failing_tests_with_pass_rates(tmp_path: Path) -> None:
    records = flake_check.tally(RUNS)
    path = flake_check.write(tmp_path / "flake-check.json", records, RUNS, {"requested_runs": 3})
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["flaky"] == ["t.py::test_flaky"]
    assert document["failing_every_run"] == ["t.py::test_broken"]
    assert document["tests"]["t.py::test_flaky"]["pass_rate"] == 0.667
    assert len(document["runs"]) == 3
    assert document["completed_runs"] == 3


@allure.story("Command line")
def test_a_single_run_is_refused_because_it_cannot_show_a_flake(capsys) -> None:
    assert flake_check.main(["--runs", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err


@allure.story("Stopping")
@pytest.mark.system
@pytest.mark.private_stack("the flake check boots a stack of its own")
def test_sigterm_stops_the_check_and_the_stack_it_started(tmp_path: Path) -> None:
    """CI's timeout sends SIGTERM: the check exits 143 and leaves no process of its stack behind."""
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER_ENV: marker, PASS_ENV: MARKER_ENV}
    for key in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "drills.flake_check",
        "--runs",
        "2",
        "--paths",
        "tests/unit/test_oracles_privacy.py",
        "--state-file",
        str(tmp_path / "stack.json"),
        "--report",
        str(tmp_path / "flake-check.json"),
    ]
    check = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert check.stdout is not None
        seen: list[str] = []
        for line in check.stdout:  # bounded by the stack's own start timeout
            seen.append(line)
            if line.startswith("stack up in"):
                break
        assert any(line.startswith("stack up in") for line in seen), "never came up:\n" + "".join(seen)
        assert processes.processes_with_env(MARKER_ENV, marker), "no process of the stack carries the marker"
        check.send_signal(signal.SIGTERM)
        rest, _ = check.communicate(timeout=120)
    finally:
        if check.poll() is None:
            check.kill()
            check.wait(timeout=30)
    assert check.returncode == 128 + signal.SIGTERM, rest
    assert "stopping the local stack started for this run" in rest
    assert processes.processes_with_env(MARKER_ENV, marker) == [], "the check's stack outlived the check"
