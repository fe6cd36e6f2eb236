"""Choosing the target: unusable targets and unsafe selections stop the run before any test, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import allure
import pytest

from deploy.environments import TargetError
from deploy.environments import get as get_environment
from deploy.environments import load as load_environments
from fixtures.reporting import labels
from fixtures.scrubber import registered_secrets
from fixtures.target import Overrides, build_target, stack_push_token
from stack.state import REPO_ROOT

Severity = allure.severity_level
INNER_TIMEOUT_SECONDS = 120

INNER_INI = """[pytest]
markers =
    destructive: changes shared state
    resilience: plans failures for its own uploads
    smoke: safe on production
    agent(name): about one agent
addopts = -p fixtures.target -p no:cacheprovider
"""

INNER_TESTS = """
import pytest

@pytest.mark.destructive
def test_wipes_the_data():
    pass

@pytest.mark.smoke
@pytest.mark.agent("thumbnailer")
def test_thumbnail_small():
    pass

@pytest.mark.agent("exif")
def test_exif_read():
    pass
"""

REMOTE_CONFIGURED = {
    "IMAGEFLOW_PRODUCTION_API_KEY": "test-key",
    "IMAGEFLOW_DASHBOARD_URL": "https://example.test",
}


def run_inner(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A pytest run of INNER_TESTS with the target plugin, in a directory of its own."""
    (tmp_path / "pytest.ini").write_text(INNER_INI)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "IMAGEFLOW_"))}
    clean["PYTHONPATH"] = str(REPO_ROOT)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--rootdir",
        str(tmp_path),
        "-c",
        str(tmp_path / "pytest.ini"),
    ]
    return subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT_SECONDS,
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The ERROR lines of a run's output (stdout and stderr)."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]


@labels("Targets", "Unusable target", Severity.CRITICAL)
def test_unknown_target_stops_the_run_in_one_line(tmp_path: Path) -> None:
    result = run_inner(tmp_path, "--target", "nowhere")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert error_lines(result) == ["ERROR: unknown environment 'nowhere'; known: local, production, staging"]
    assert "Traceback" not in result.stdout + result.stderr


@labels("Targets", "Unusable target", Severity.CRITICAL)
def test_half_configured_target_names_what_is_missing(tmp_path: Path) -> None:
    result = run_inner(tmp_path, IMAGEFLOW_TARGET="staging")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert line.startswith("ERROR: target 'staging' is half-configured: missing a dashboard URL")
    assert "$IMAGEFLOW_STAGING_API_KEY" in line


@pytest.mark.parametrize("parallel", [[], ["-n", "2"]], ids=["serial", "xdist"])
@labels("Targets", "Production safety", Severity.BLOCKER)
def test_destructive_test_selected_on_production_stops_the_run(tmp_path: Path, parallel: list[str]) -> None:
    result = run_inner(tmp_path, "--target", "production", *parallel, **REMOTE_CONFIGURED)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert error_lines(result) == [
        "ERROR: target 'production' refuses destructive tests: test_inner.py::test_wipes_the_data "
        "(select with -m 'not destructive')"
    ]
    assert " passed" not in result.stdout


RESILIENCE_TESTS = """
import pytest

@pytest.mark.resilience
def test_agent_fails_for_my_uploads():
    pass
"""


@pytest.mark.parametrize("parallel", [[], ["-n", "2"]], ids=["serial", "xdist"])
@labels("Targets", "Production safety", Severity.BLOCKER)
def test_resilience_test_selected_on_production_stops_the_run(tmp_path: Path, parallel: list[str]) -> None:
    """Even without the destructive marker, a failure-planning test never starts on production."""
    (tmp_path / "test_resilient.py").write_text(RESILIENCE_TESTS)
    result = run_inner(
        tmp_path, "--target", "production", "test_resilient.py", *parallel, **REMOTE_CONFIGURED
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert error_lines(result) == [
        "ERROR: target 'production' refuses resilience tests: "
        "test_resilient.py::test_agent_fails_for_my_uploads (select with -m 'not resilience')"
    ]
    assert " passed" not in result.stdout


@labels("Targets", "Production safety", Severity.CRITICAL)
def test_only_production_may_not_allow_test_failures(tmp_path: Path) -> None:
    """environments.toml: local and staging allow failure plans, production does not (and cannot)."""
    assert [get_environment(n).allow_test_failures for n in ("local", "staging", "production")] == [
        True,
        True,
        False,
    ]
    unsafe = tmp_path / "environments.toml"
    unsafe.write_text(
        (REPO_ROOT / "environments.toml")
        .read_text(encoding="utf-8")
        .replace("allow_test_failures = false", "allow_test_failures = true"),
        encoding="utf-8",
    )
    with pytest.raises(TargetError, match="'production' must not allow test failures"):
        load_environments(unsafe)


@labels("Targets", "Production safety", Severity.CRITICAL)
def test_production_runs_what_is_not_destructive(tmp_path: Path) -> None:
    result = run_inner(tmp_path, "--target", "production", "-m", "smoke", **REMOTE_CONFIGURED)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 deselected" in result.stdout


@labels("Targets", "Agent selection", Severity.NORMAL)
def test_agent_option_selects_that_agents_scenarios(tmp_path: Path) -> None:
    result = run_inner(tmp_path, "--agent", "exif", "-m", "not destructive", "-rA")
    assert result.returncode == 0, result.stdout
    assert "PASSED test_inner.py::test_exif_read" in result.stdout
    assert "1 passed, 2 deselected" in result.stdout
    assert "test_thumbnail_small" not in result.stdout


@labels("Targets", "Agent selection", Severity.NORMAL)
def test_unknown_agent_stops_the_run_naming_the_known_ones(tmp_path: Path) -> None:
    result = run_inner(tmp_path, "--agent", "resizer")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert error_lines(result) == [
        "ERROR: --agent resizer: no such agent; known: validator, thumbnailer, exif, analysis, finalizer"
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "IMAGEFLOW_LANE",
            "../live",
            "ERROR: IMAGEFLOW_LANE '../live' is not a lane name (lane-<a-z0-9->--)",
        ),
        (
            "IMAGEFLOW_EXPECTED_REVISIONS",
            "{not json",
            "ERROR: IMAGEFLOW_EXPECTED_REVISIONS is not valid JSON",
        ),
        ("IMAGEFLOW_SERVICE_URLS", '["a"]', "ERROR: IMAGEFLOW_SERVICE_URLS must be a JSON object of strings"),
    ],
)
@labels("Targets", "Candidate overrides", Severity.NORMAL)
def test_malformed_candidate_override_stops_the_run(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    result = run_inner(tmp_path, **{name: value})
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert line.startswith(message)


@labels("Targets", "Candidate overrides", Severity.CRITICAL)
def test_candidate_overrides_replace_the_stacks_urls_and_set_the_lane() -> None:
    state = {
        "project": "demo-imageflow",
        "bucket": "imageflow-uploads",
        "log_dir": "/tmp/logs",
        "env": {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"},
        "services": {
            "dashboard": {"url": "http://127.0.0.1:1000", "revision": "dashboard-00001-aaa"},
            "thumbnailer": {"url": "http://127.0.0.1:1001", "revision": "thumbnailer-00001-bbb"},
        },
    }
    overrides = Overrides(
        dashboard_url="http://127.0.0.1:2000",
        lane="lane-ab12--",
        expected_revisions={"thumbnailer": "thumbnailer-00002-ccc"},
        service_urls={"thumbnailer": "http://127.0.0.1:2001"},
    )
    target = build_target(get_environment("local"), overrides, state)
    assert target.dashboard_url == "http://127.0.0.1:2000"
    assert dict(target.service_urls) == {
        "dashboard": "http://127.0.0.1:1000",
        "thumbnailer": "http://127.0.0.1:2001",
    }
    assert target.lane == "lane-ab12--"
    assert dict(target.expected_revisions) == {"thumbnailer": "thumbnailer-00002-ccc"}
    assert target.auth_url == "http://127.0.0.1:9099/identitytoolkit.googleapis.com/v1"
    assert target.firestore_rest_url == (
        "http://127.0.0.1:8080/v1/projects/demo-imageflow/databases/(default)/documents"
    )
    assert target.api_key not in "\n".join(target.describe())
    assert target.agent_urls(["validator", "thumbnailer"]) == {"thumbnailer": "http://127.0.0.1:2001"}


@labels("Targets", "Remote target", Severity.NORMAL)
def test_remote_target_uses_google_endpoints_and_the_api_key_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGEFLOW_STAGING_API_KEY", "staging-key-value")
    target = build_target(
        get_environment("staging"), Overrides(dashboard_url="https://dash.example.test"), None
    )
    assert target.auth_url == "https://identitytoolkit.googleapis.com/v1"
    assert target.firestore_rest_url.startswith(
        "https://firestore.googleapis.com/v1/projects/imageflow-staging/"
    )
    assert target.api_key == "staging-key-value"
    assert "staging-key-value" not in repr(target)


@labels("Targets", "Local secrets", Severity.CRITICAL)
def test_the_stacks_own_secrets_file_is_read_for_its_key_and_scrubbed_from_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen, recorded = tmp_path / "chosen.env", tmp_path / "recorded.env"
    chosen.write_text("FIREBASE_API_KEY=chosen-key-value\nSESSION_SECRET=chosen-session-secret-value\n")
    recorded.write_text("FIREBASE_API_KEY=recorded-key-value\nPUSH_TOKEN=recorded-push-token-value\n")
    state_file = tmp_path / "stack.json"
    monkeypatch.setenv("IMAGEFLOW_STACK_FILE", str(state_file))
    monkeypatch.setenv("IMAGEFLOW_SECRETS_FILE", str(chosen))
    state = {
        "env": {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"}
    }
    # No stack has recorded a file yet: $IMAGEFLOW_SECRETS_FILE is the one the stack would start with.
    assert build_target(get_environment("local"), Overrides(), state).api_key == "chosen-key-value"
    assert (
        registered_secrets().get("chosen-session-secret-value")
        == "SESSION_SECRET from the local secrets file"
    )
    # A running stack's own record wins over the variable: it is the file its services read.
    state = {**state, "secrets_file": str(recorded)}
    state_file.write_text(json.dumps(state))
    assert build_target(get_environment("local"), Overrides(), state).api_key == "recorded-key-value"
    assert stack_push_token() == "recorded-push-token-value"
    known = registered_secrets()
    assert "recorded-push-token-value" in known
    assert "recorded-key-value" not in known, "the public API key was taken for a secret"
    assert "chosen-session-secret-value" not in known
