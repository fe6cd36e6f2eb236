"""A test failed on a Google Cloud target gets its workflows' Cloud Logging lines in Allure (fake gcloud)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import allure
import pytest

from fixtures import service_logs
from fixtures.deployment import FAKES
from fixtures.reporting import EPIC
from stack.state import REPO_ROOT

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Reports"),
    allure.story("Cloud Logging lines of a failed test"),
]

PLUGINS = ("-p", "fixtures.target", "-p", "fixtures.reporting", "-p", "fixtures.service_logs")
INNER_TESTS = """
def test_red_with_two_workflows(request):
    request.node.user_properties.append(("workflow_id", "wf-cloud-1"))
    request.node.user_properties.append(("workflow_id", "wf-cloud-2"))
    assert False, "red on purpose"

def test_green_with_a_workflow(request):
    request.node.user_properties.append(("workflow_id", "wf-cloud-1"))
"""
STAGING = {
    "IMAGEFLOW_TARGET": "staging",
    "IMAGEFLOW_STAGING_API_KEY": "test-key",
    "IMAGEFLOW_DASHBOARD_URL": "https://example.test",
}


def entry(workflow_id: str, timestamp: str, message: str, **payload: str) -> dict[str, Any]:
    """A Cloud Logging entry as `gcloud logging read --format=json` prints one of a Cloud Run service."""
    return {
        "insertId": f"id-{timestamp}",
        "jsonPayload": {
            "message": message,
            "workflow_id": workflow_id,
            "logger": "imageflow.agents",
            **payload,
        },
        "logName": "projects/imageflow-staging/logs/run.googleapis.com%2Fstderr",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "service_name": "imageflow-thumbnailer",
                "revision_name": "imageflow-thumbnailer-00002-abc",
            },
        },
        "severity": "WARNING" if "error" in message else "INFO",
        "timestamp": timestamp,
        "trace": "projects/imageflow-staging/traces/105445aa7843bc8bf206b12000100000",
    }


ENTRIES = [
    entry(
        "wf-cloud-2",
        "2026-12-02T10:00:03.000000Z",
        "agent error workflow=wf-cloud-2",
        stack_trace="Traceback\n  x",
    ),
    entry("wf-cloud-1", "2026-12-02T10:00:01.000000Z", "delivery workflow=wf-cloud-1 outcome=done"),
    entry("wf-other", "2026-12-02T10:00:02.000000Z", "delivery workflow=wf-other outcome=done"),
]


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.Pytester:
    """A project of its own on a staging target whose gcloud is the fake with ENTRIES recorded."""
    for name in [k for k in os.environ if k.startswith(("IMAGEFLOW_", "FAKE_CLOUD_"))]:
        monkeypatch.delenv(name)
    for name, value in STAGING.items():
        monkeypatch.setenv(name, value)
    state = tmp_path / "fake-cloud.json"
    state.write_text(json.dumps({"log_entries": ENTRIES}), encoding="utf-8")
    monkeypatch.setenv("FAKE_CLOUD_STATE", str(state))
    monkeypatch.setenv("FAKE_CLOUD_LOG", str(tmp_path / "fake-cloud.log"))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeini("[pytest]\nreports_dir = reports\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        *PLUGINS, "-p", "no:cacheprovider", "--alluredir=reports/allure-results", timeout=120
    )


def _attachments(pytester: pytest.Pytester, test_name: str) -> dict[str, str]:
    """The named test's Allure attachments: name -> text."""
    results = pytester.path / "reports" / "allure-results"
    found: dict[str, str] = {}
    for path in results.glob("*-result.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        if result["name"] == test_name:
            for attachment in result.get("attachments", []):
                found[attachment["name"]] = (results / attachment["source"]).read_text(encoding="utf-8")
    return found


def _gcloud_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "fake-cloud.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [json.loads(line)["argv"] for line in lines]


def test_a_failed_test_gets_its_workflows_lines_oldest_first(inner: pytest.Pytester, tmp_path: Path) -> None:
    result = _run(inner)
    result.assert_outcomes(passed=1, failed=1)
    attached = _attachments(inner, "test_red_with_two_workflows")
    text = attached["cloud log of wf-cloud-1, wf-cloud-2"]
    assert text.splitlines() == [
        "2026-12-02T10:00:01.000000Z INFO imageflow-thumbnailer/imageflow-thumbnailer-00002-abc "
        "delivery workflow=wf-cloud-1 outcome=done",
        "2026-12-02T10:00:03.000000Z WARNING imageflow-thumbnailer/imageflow-thumbnailer-00002-abc "
        "agent error workflow=wf-cloud-2",
        "    Traceback",
        "      x",
    ]
    assert _attachments(inner, "test_green_with_a_workflow") == {}
    (call,) = _gcloud_calls(tmp_path)
    assert call == service_logs.read_command("imageflow-staging", ["wf-cloud-1", "wf-cloud-2"])[1:]


def test_a_gcloud_failure_is_a_one_line_note(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLOUD_FAIL", "logging read")
    result = _run(inner)
    result.assert_outcomes(passed=1, failed=1)
    (note,) = _attachments(inner, "test_red_with_two_workflows").values()
    assert note.startswith(
        "could not read Cloud Logging: `gcloud logging read` exited 1: ERROR: (gcloud.logging.read)"
    )
    assert "\n" not in note
    assert "Traceback" not in result.stdout.str()


def test_the_filter_names_each_workflow_quoted() -> None:
    assert (
        service_logs.logging_filter(["a", 'b"c'])
        == 'jsonPayload.workflow_id="a" OR jsonPayload.workflow_id="b\\"c"'
    )


@pytest.mark.parametrize("answer", ["{", '{"entries": []}', "[1]"])
def test_an_answer_that_is_not_a_list_of_entries_is_refused(answer: str) -> None:
    with pytest.raises(service_logs.LogReadError):
        service_logs.parse_entries(answer)
