"""The sweep's selection: only the suite's own names, and only older than a day; its refusals in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import allure
import pytest

from deploy.environments import get as get_environment
from fixtures import sweep
from fixtures.reporting import EPIC
from fixtures.sweep import Account, Item
from fixtures.target import Overrides, build_target
from fixtures.users import admin_auth
from stack.state import REPO_ROOT

pytestmark = [
    allure.epic(EPIC),
    allure.feature("Suite hygiene"),
    allure.severity(allure.severity_level.CRITICAL),
]

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=1, minutes=1)
YOUNG = NOW - timedelta(hours=23, minutes=59)
SUBPROCESS_TIMEOUT_SECONDS = 60


def test_only_old_test_accounts_are_selected() -> None:
    accounts = [
        Account("u1", "e2e-12011000abcd-gw0-1a2b3c@example.test", OLD),
        Account("u2", "e2e-12020900abcd-gw1-4d5e6f@example.test", YOUNG),
        Account("u3", "alice@example.test", OLD),
        Account("u4", "e2e-12011000abcd-gw0-000000@example.com", OLD),
        Account("u5", "not-e2e-12011000abcd@example.test", OLD),
        Account("u6", "e2e-@example.test", OLD),
        Account("u7", "", OLD),
        Account("u8", "e2e-x@example.test.evil", OLD),
    ]
    assert [a.uid for a in sweep.select_users(accounts, NOW)] == ["u1"]


def test_age_is_strictly_older_than_a_day_and_unknown_is_never_old() -> None:
    assert sweep.is_old(NOW - timedelta(days=1, microseconds=1), NOW)
    assert not sweep.is_old(NOW - timedelta(days=1), NOW)
    assert not sweep.is_old(None, NOW)


def test_only_old_prefixed_workflow_documents_are_selected() -> None:
    documents = [
        Item("e2e-agents-12011000abcd-gw0-aaaaaa", OLD),
        Item("e2e-watch-12020900abcd-gw0-bbbbbb", YOUNG),
        Item("3f2b9c1e-real-upload", OLD),
        Item("E2E-upper", OLD),
        Item("e2e-unknown-age", None),
    ]
    assert sweep.select_documents(documents, NOW) == ["e2e-agents-12011000abcd-gw0-aaaaaa"]


def test_only_old_objects_named_by_the_suite_are_selected() -> None:
    objects = [
        Item("originals/e2e-owner/wf1/photo.jpg", OLD),
        Item("thumbnails/uid-1/e2e-agents-wf2.jpg", OLD),
        Item("originals/uid-1/e2e-agents-wf3/photo.jpg", YOUNG),
        Item("originals/uid-1/3f2b9c1e/e2e-photo.jpg", OLD),  # only the file is prefixed
        Item("backups/e2e-owner/wf1/photo.jpg", OLD),
        Item("originals/e2e-only-two-parts", OLD),
        Item("originals/alice/wf9/photo.jpg", OLD),
    ]
    assert sweep.select_objects(objects, NOW) == [
        "originals/e2e-owner/wf1/photo.jpg",
        "thumbnails/uid-1/e2e-agents-wf2.jpg",
    ]


def test_a_tap_is_as_old_as_the_run_id_in_its_name() -> None:
    assert sweep.run_started("tap-12011000abcd-gw0-a1b2c3-image-uploaded", NOW) == datetime(
        2026, 12, 1, 10, 0, tzinfo=UTC
    )
    # A stamp ahead of now has no year of its own: last year's.
    assert sweep.run_started("tap-12310900abcd-gw0-a1b2c3-x", NOW) == datetime(2025, 12, 31, 9, 0, tzinfo=UTC)
    for name in ("tap-13011000abcd-gw0-x", "tap-1201100abcd-gw0-x", "tap-12011000ABCD-gw0-x", "lane-tap-1"):
        assert sweep.run_started(name, NOW) is None, name


def test_only_old_taps_are_selected() -> None:
    project = "projects/demo-imageflow/subscriptions"
    paths = [
        f"{project}/tap-12010959abcd-gw0-a1b2c3-image-uploaded",
        f"{project}/tap-12020959abcd-gw1-d4e5f6-image-uploaded",
        f"{project}/imageflow-validator-push",
        f"{project}/lane-abc-tap-12011000abcd-gw0-a1b2c3-x",
        f"{project}/tap-custom-run-id-gw0-a1b2c3-x",
        f"{project}/e2e-12011000abcd-gw0-a1b2c3",
    ]
    assert sweep.select_subscriptions(paths, NOW) == [paths[0]]
    # A narrowed prefix (one run's one worker) keeps to it.
    assert sweep.select_subscriptions(paths, NOW, prefix="tap-12010959abcd-gw1-") == []
    assert sweep.select_subscriptions(paths, NOW, prefix="tap-12010959abcd-gw0-") == [paths[0]]


def test_a_prefix_outside_the_suites_names_is_refused() -> None:
    with pytest.raises(ValueError, match="tap-"):
        sweep.select_subscriptions([], NOW, prefix="imageflow-")


def test_report_lines_name_every_kind_and_item() -> None:
    report = sweep.SweepReport(dry_run=True, users=["e2e-a@example.test"], subscriptions=["p/s/tap-x"])
    assert report.lines() == [
        "would delete 1 test users",
        "would delete 0 workflow documents, 0 stored objects, 1 tap subscriptions",
        "  user e2e-a@example.test",
        "  subscription p/s/tap-x",
    ]


def _run_sweep(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """python -m fixtures.sweep in a process of its own, with no Google credentials and no stack."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_EMULATOR_HOST") and k not in {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"}
    }
    clean.update(
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        # Never ask the metadata server: this machine is not on Google Cloud.
        NO_GCE_CHECK="true",
        IMAGEFLOW_STACK_FILE=str(tmp_path / "no-stack.json"),
        PYTHONPATH=str(REPO_ROOT),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "fixtures.sweep", *args],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_env_is_refused_in_one_line(tmp_path: Path) -> None:
    result = _run_sweep(tmp_path, "--env", "nowhere")
    assert result.returncode == 2
    assert _one_line(result) == "sweep: unknown environment 'nowhere'; known: local, production, staging"


def test_cloud_env_without_credentials_names_what_is_missing(tmp_path: Path) -> None:
    result = _run_sweep(tmp_path, "--env", "staging", "--dry-run")
    assert result.returncode == 2
    line = _one_line(result)
    assert line.startswith("sweep: no credentials for 'staging' (project imageflow-staging)")
    assert "Application Default Credentials" in line
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line


def test_local_env_without_a_stack_is_refused_in_one_line(tmp_path: Path) -> None:
    result = _run_sweep(tmp_path, "--env", "local")
    assert result.returncode == 2
    assert _one_line(result) == "sweep: the local stack is not running (python -m stack up): nothing to sweep"


def test_the_admin_app_alone_is_sent_to_the_targets_auth_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {
        "project": "demo-sweep-unit",
        "env": {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8"},
    }
    target = build_target(get_environment("local"), Overrides(), state)
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:7")
    client = admin_auth(target)
    assert client.emulated
    # Built on the target's host, not the process's; and the process's is left as it was.
    assert (
        client._user_manager.base_url
        == "http://127.0.0.1:9/identitytoolkit.googleapis.com/v1/projects/demo-sweep-unit"
    )
    assert os.environ["FIREBASE_AUTH_EMULATOR_HOST"] == "127.0.0.1:7"
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST")
    assert admin_auth(target) is client
    assert "FIREBASE_AUTH_EMULATOR_HOST" not in os.environ
