"""Stop at the first red scenario: on by default for production, on/off by flag, names what did not run."""

from __future__ import annotations

import json
import os
from typing import Any

import allure
import pytest

from fixtures.reporting import EPIC
from stack.state import REPO_ROOT

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Release gate"),
    allure.story("Stop at the first red scenario"),
    allure.severity(allure.severity_level.CRITICAL),
]

PLUGINS = ("-p", "fixtures.target", "-p", "fixtures.reporting", "-p", "fixtures.first_red")
INNER_TESTS = """
def test_a_passes():
    pass

def test_b_is_red():
    assert False, "red on purpose"

def test_c_after_the_red():
    pass

def test_d_after_the_red():
    pass
"""
# What a production target needs to be usable at all (fixtures.target refuses it half-configured).
PRODUCTION = {
    "IMAGEFLOW_TARGET": "production",
    "IMAGEFLOW_PRODUCTION_API_KEY": "test-key",
    "IMAGEFLOW_DASHBOARD_URL": "https://example.test",
}
NOT_RUN = ["test_inner.py::test_c_after_the_red", "test_inner.py::test_d_after_the_red"]


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project of its own with INNER_TESTS, seeing this repository's plugins and no IMAGEFLOW_* setting."""
    for name in [k for k in os.environ if k.startswith("IMAGEFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeini("[pytest]\nreports_dir = reports\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*PLUGINS, "-p", "no:cacheprovider", *args, timeout=120)


def _report(pytester: pytest.Pytester) -> dict[str, Any]:
    return dict(json.loads((pytester.path / "reports" / "first-red.json").read_text(encoding="utf-8")))


def test_off_by_default_on_a_local_target_every_scenario_runs(inner: pytest.Pytester) -> None:
    result = _run(inner)
    result.assert_outcomes(passed=3, failed=1)
    assert "did not run" not in result.stdout.str()
    assert not (inner.path / "reports" / "first-red.json").exists()


def test_on_by_flag_stops_at_the_first_red_and_names_what_did_not_run(inner: pytest.Pytester) -> None:
    result = _run(inner, "--stop-at-first-red=on")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*stopped at the first red scenario*",
            "first red: test_inner.py::test_b_is_red",
            "2 scenario(s) did not run:",
            *(f"  {nodeid}" for nodeid in NOT_RUN),
        ]
    )
    report = _report(inner)
    assert report["first_red"] == "test_inner.py::test_b_is_red"
    assert (report["collected"], report["ran"], report["not_run_count"]) == (4, 2, 2), report
    assert report["not_run"] == NOT_RUN, report


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)


def test_on_by_default_on_production(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch)
    result = _run(inner)
    result.assert_outcomes(passed=1, failed=1)
    assert _report(inner)["not_run"] == NOT_RUN
    assert _report(inner)["target"] == "production"


def test_off_by_flag_on_production_runs_everything(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _production(monkeypatch)
    result = _run(inner, "--stop-at-first-red=off")
    result.assert_outcomes(passed=3, failed=1)
    assert "did not run" not in result.stdout.str()


def test_a_wrong_value_is_a_one_line_usage_error(inner: pytest.Pytester) -> None:
    result = _run(inner, "--stop-at-first-red=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--stop-at-first-red: invalid choice: 'maybe'*"])
    assert "Traceback" not in result.stderr.str()


def test_under_xdist_the_controller_lists_what_its_worker_never_ran(inner: pytest.Pytester) -> None:
    """Red first, then many: one worker gets its tests in order, a batch at a time, and is stopped."""
    many = "\n".join(f"def test_after_{i:02}():\n    pass\n" for i in range(60))
    inner.makepyfile(test_inner="def test_b_is_red():\n    assert False\n\n" + many)
    result = _run(inner, "-n", "1", "--stop-at-first-red=on")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, (
        "a stop at the first red is a red run, not an interruption"
    )
    report = _report(inner)
    assert report["first_red"] == "test_inner.py::test_b_is_red", report
    assert report["collected"] == 61, report
    assert report["ran"] + report["not_run_count"] == 61, report
    assert "test_inner.py::test_after_59" in report["not_run"], report
    result.stdout.fnmatch_lines([f"{report['not_run_count']} scenario(s) did not run:"])


def test_collect_only_on_production_lists_nothing_as_not_run(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _production(monkeypatch)
    result = _run(inner, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "did not run" not in result.stdout.str()
    assert not (inner.path / "reports" / "first-red.json").exists()
