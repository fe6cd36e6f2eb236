"""The verification container's entrypoint (deploy.container), run directly: no image is built here.

The suite command is replaced (IMAGEFLOW_VERIFY_COMMAND, the gate's own test hook) by a tiny inner
pytest run, so the target mapping, the result paths and the exit codes are real and nothing is deployed.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deploy import container
from stack.state import REPO_ROOT

TINY = """
import os

def test_sees_the_target():
    assert os.environ["IMAGEFLOW_TARGET"] == "staging"

def test_verdict():
    assert os.environ.get("TINY_VERDICT", "green") == "green"
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """An empty results folder, as the container's mount."""
    folder = tmp_path / "results"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the suite needs of a deployed target (its dashboard URL, its API key), as a CI job sets it."""
    monkeypatch.setenv("IMAGEFLOW_DASHBOARD_URL", "https://dashboard.example.test")
    for name in ("STAGING", "PRODUCTION"):
        monkeypatch.setenv(f"IMAGEFLOW_{name}_API_KEY", "fake-api-key-for-tests")


@pytest.fixture
def tiny_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The verify command becomes a two-test inner pytest run with a config of its own."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_tiny.py").write_text(TINY, encoding="utf-8")
    (suite / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    command = [sys.executable, "-m", "pytest", str(suite), "-c", str(suite / "pytest.ini"), "-p", "no:xdist"]
    monkeypatch.setenv("IMAGEFLOW_VERIFY_COMMAND", shlex.join(command))
    monkeypatch.setenv("IMAGEFLOW_DEPLOY_RUN_ID", "c1")
    monkeypatch.delenv(container.TARGET_ENV, raising=False)
    return suite


def run(*argv: str) -> tuple[int, str]:
    """The entrypoint in-process; its exit code and console output."""
    out = io.StringIO()
    return container.main(list(argv), out=out), out.getvalue()


def record(results: Path) -> dict[str, object]:
    """The run record the entrypoint wrote into the results folder."""
    (path,) = (results / "runs").glob("*-verify-c1.json")
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_a_green_suite_exits_0_with_junit_and_allure_results_in_the_mount(
    tiny_suite: Path, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target comes from $IMAGEFLOW_TARGET, the folder from $IMAGEFLOW_RESULTS_DIR; results land there."""
    monkeypatch.setenv(container.TARGET_ENV, "staging")
    monkeypatch.setenv(container.RESULTS_ENV, str(results))
    code, output = run()
    assert code == 0, output
    cases = ET.parse(results / "junit.xml").getroot().iter("testcase")
    assert sorted(c.get("name") for c in cases) == ["test_sees_the_target", "test_verdict"]
    allure = [
        json.loads(p.read_text(encoding="utf-8")) for p in (results / "allure-results").glob("*-result.json")
    ]
    assert sorted((r["name"], r["status"]) for r in allure) == [
        ("test_sees_the_target", "passed"),
        ("test_verdict", "passed"),
    ]
    assert record(results)["decision"] == "verified"
    assert "2 passed" in output, "the suite's own output reaches the console"


@pytest.mark.parametrize(
    ("pytest_args", "verdict", "reason"),
    [
        ([], "red", "the suite was red (exit 1: tests failed)"),
        (["-k", "no_such_test"], "green", "the suite was red (exit 5: no test was selected (check -k / -m)"),
    ],
)
def test_a_red_suite_exits_1_with_the_gate_reason(
    tiny_suite: Path,
    results: Path,
    monkeypatch: pytest.MonkeyPatch,
    pytest_args: list[str],
    verdict: str,
    reason: str,
) -> None:
    """Failed tests, or none selected, are red as in the gate: exit 1 and pytest's code in words."""
    monkeypatch.setenv("TINY_VERDICT", verdict)
    code, output = run("--env", "staging", "--results", str(results), "--", *pytest_args)
    assert code == 1, output
    written = record(results)
    assert written["decision"] == "red"
    assert str(written["reason"]).startswith(reason)
    assert written["exit_code"] == 1
    assert (results / "junit.xml").is_file()


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {}, "error: no target: set IMAGEFLOW_TARGET=staging (or production), or pass --env NAME"),
        ([], {"IMAGEFLOW_TARGET": "nowhere"}, "error: unknown environment 'nowhere'"),
        (["--env", "local"], {}, "error: local is a local target: the container verifies a deployed one"),
        (
            ["--env", "staging", "--results", "{gone}"],
            {},
            "error: results folder {gone} does not exist",
        ),
        (
            ["--env", "staging"],
            {"IMAGEFLOW_STAGING_API_KEY": ""},
            "error: target 'staging' is half-configured: missing the Firebase API key in "
            "$IMAGEFLOW_STAGING_API_KEY",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line_with_exit_2(
    tiny_suite: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    message: str,
) -> None:
    """No target, an unknown or local one, a half-configured one, no mount: exit 2, one line, nothing run."""
    missing = str(tmp_path / "not-mounted")
    monkeypatch.setenv(container.RESULTS_ENV, str(tmp_path))
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    code, output = run(*(a.format(gone=missing) for a in argv))
    err = capsys.readouterr().err
    assert code == 2
    assert output == ""
    assert err.count("\n") == 1
    assert err.startswith(message.format(gone=missing)), err
    assert not (tmp_path / "runs").exists()


def test_production_runs_the_gates_smoke_selection(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's command is the gate's: the smoke selection on production, results in the mount."""
    monkeypatch.delenv("IMAGEFLOW_VERIFY_COMMAND", raising=False)
    command = container.suite_command(container.context("production", results, ["-k", "upload"]))
    assert command[:4] == [sys.executable, "-m", "pytest", "tests/e2e"]
    marker = command.index("-m", 3)
    assert command[marker + 1] == "smoke and not destructive"
    assert container.ALLURE_HTML not in command, "no Allure CLI in the image: results only"
    assert command[-7:] == [
        "-k",
        "upload",
        "-o",
        f"reports_dir={results}",
        f"--junitxml={results / 'junit.xml'}",
        f"--alluredir={results / 'allure-results'}",
        f"--output={results / 'playwright'}",
    ]


def test_the_module_runs_as_the_image_entrypoint(tiny_suite: Path, results: Path) -> None:
    """`python -m deploy.container` (the ENTRYPOINT) exits with the gate's code in a process of its own."""
    env = {
        **os.environ,
        container.TARGET_ENV: "staging",
        container.RESULTS_ENV: str(results),
        "TINY_VERDICT": "red",
    }
    finished = subprocess.run(
        [sys.executable, "-m", "deploy.container"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "FAILED: the suite was red (exit 1: tests failed)" in finished.stdout
