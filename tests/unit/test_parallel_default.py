"""The test command runs on xdist workers by default, serially on request, marked groups on one worker."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from deploy.verify import DEFAULT_WORKERS
from stack.state import REPO_ROOT

INI = """[pytest]
addopts = --strict-markers
markers =
    private_stack(reason): boots a stack of its own
    one_worker(reason): this module's tests share one worker
"""
# Each test records which process ran it (a worker's id, or "main" for a serial run).
RECORD = """
import json, os

def record(name):
    with open(os.environ["RECORD_FILE"], "a") as out:
        out.write(json.dumps({"test": name, "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")}) + "\\n")
"""
GROUPED = """
import pytest
from recorder import record

pytestmark = pytest.mark.one_worker("a module fixture set up once")

@pytest.mark.parametrize("n", range(6))
def test_in_the_module(n):
    record(f"module-{n}")
"""
PRIVATE = """
import pytest
from recorder import record

@pytest.fixture
def private_stack():
    return None

@pytest.mark.private_stack("boots its own")
@pytest.mark.parametrize("n", range(3))
def test_marked(n):
    record(f"private-{n}")

@pytest.mark.parametrize("n", range(3))
def test_by_fixture(private_stack, n):
    record(f"private-fixture-{n}")

@pytest.mark.parametrize("n", range(12))
def test_free(n):
    record(f"free-{n}")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with grouped and free tests that records which worker ran each one."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(pytester.path)]))
    monkeypatch.setenv("RECORD_FILE", str(pytester.path / "record.jsonl"))
    # Run from an outer xdist worker, the inner run would inherit that worker's id.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makeini(INI)
    pytester.makepyfile(recorder=RECORD, test_grouped=GROUPED, test_private=PRIVATE)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, str]]:
    result = pytester.runpytest_subprocess(
        "-p", "fixtures.parallel", "-p", "no:cacheprovider", *args, timeout=120
    )
    record = Path(pytester.path / "record.jsonl")
    lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
    return result, {row["test"]: row["worker"] for row in map(json.loads, lines)}


def _workers_of(ran: dict[str, str], prefix: str) -> set[str]:
    return {worker for test, worker in ran.items() if test.startswith(prefix)}


def test_no_n_means_the_default_workers_and_groups_stay_on_one(inner: pytest.Pytester) -> None:
    result, ran = _run(inner)
    result.assert_outcomes(passed=24)
    result.stdout.fnmatch_lines([f"created: {DEFAULT_WORKERS}/{DEFAULT_WORKERS} workers"])
    by_worker: dict[str, set[str]] = defaultdict(set)
    for test, worker in ran.items():
        by_worker[worker].add(test)
    assert len(by_worker) == int(DEFAULT_WORKERS), f"not every worker ran tests: {dict(by_worker)}"
    assert len(_workers_of(ran, "module-")) == 1, ran
    assert len(_workers_of(ran, "private-")) == 1, "the private-stack tests (marker and fixture) were split"


def test_an_n_of_ones_own_also_keeps_the_groups(inner: pytest.Pytester) -> None:
    result, ran = _run(inner, "-n", "2")
    result.assert_outcomes(passed=24)
    assert len(_workers_of(ran, "module-")) == 1, ran
    assert len(_workers_of(ran, "private-")) == 1, ran


@pytest.mark.parametrize("serial", [["-n", "0"], ["-p", "no:xdist"], ["-pno:xdist"]], ids=" ".join)
def test_serial_on_request(inner: pytest.Pytester, serial: list[str]) -> None:
    result, ran = _run(inner, *serial)
    result.assert_outcomes(passed=24)
    assert set(ran.values()) == {"main"}
    assert "workers" not in result.stdout.str()


def test_a_group_marker_without_its_reason_stops_the_run(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_bare="import pytest\n\n@pytest.mark.one_worker\ndef test_x():\n    pass\n")
    result, _ = _run(inner, "-n", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_bare.py::test_x: @pytest.mark.one_worker needs its reason*"])
