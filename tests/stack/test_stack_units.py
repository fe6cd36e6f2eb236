"""Process groups, free ports, readiness errors, the state file and local secrets (no emulators)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from stack import localsecrets, processes, runner, state
from stack.state import ProcessRecord, RevisionRecord, ServiceState, StackState


def test_free_port_is_bindable_on_loopback() -> None:
    port = processes.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_stop_kills_the_whole_group_children_included(tmp_path: Path) -> None:
    # A wrapper that starts children and ignores SIGTERM: like `gcloud emulators` with its Java child.
    script = "trap '' TERM; sleep 300 & sleep 300 & echo started; wait"
    process = processes.start("group", ["bash", "-c", script], tmp_path / "group.log", registry=None)
    processes.wait_until(lambda: "started" in process.tail(), "children started", 10, process)
    members = processes.group_members(process.pgid)
    assert len(members) >= 3, members
    process.stop(grace=1)
    assert not processes.group_alive(process.pgid)
    assert [m for m in processes.group_members(process.pgid) if m[1] != psutil.STATUS_ZOMBIE] == []


def test_registry_stops_everything_it_tracks(tmp_path: Path) -> None:
    registry = processes.Registry()
    started = [
        processes.start(f"p{i}", ["sleep", "300"], tmp_path / f"p{i}.log", registry=registry)
        for i in range(2)
    ]
    registry.stop_all()
    assert not any(processes.group_alive(p.pgid) for p in started)


def test_readiness_error_names_what_and_shows_the_log_tail(tmp_path: Path) -> None:
    process = processes.start(
        "crasher",
        [sys.executable, "-c", "print('bad config line'); raise SystemExit(3)"],
        tmp_path / "c.log",
        registry=None,
    )
    with pytest.raises(processes.ReadinessError) as caught:
        processes.wait_http(f"http://127.0.0.1:{processes.free_port()}/", "crasher service", 10, process)
    assert "crasher service" in str(caught.value)
    assert "exited early" in str(caught.value)
    assert "bad config line" in str(caught.value)
    process.stop()


def test_wait_gives_up_with_a_clear_message() -> None:
    port = processes.free_port()
    with pytest.raises(processes.ReadinessError, match=rf"nothing \(127.0.0.1:{port}\): not ready after 0 s"):
        processes.wait_tcp("127.0.0.1", port, "nothing", timeout=0.3)


def test_state_file_round_trip_is_atomic_and_locked(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    original = StackState(
        project="demo-imageflow",
        bucket="imageflow-uploads",
        run_dir=str(tmp_path),
        log_dir=str(tmp_path / "logs"),
        env={"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"},
        emulators={"firestore": "127.0.0.1:1"},
        router_admin_url="http://127.0.0.1:2",
        services={
            "dashboard": ServiceState(
                name="dashboard",
                url="http://127.0.0.1:3",
                port=3,
                revision="dashboard-00001-abc",
                revision_url="http://127.0.0.1:4",
                revisions=[
                    RevisionRecord(id="dashboard-00001-abc", service="dashboard", pid=5, pgid=5, state="live")
                ],
                counter=1,
            )
        },
        processes=[ProcessRecord(name="router", pid=6, pgid=6, log="router.log")],
    )
    state.write(original, path)
    assert state.read(path) == original
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with state.update(path) as current:
        current.services["dashboard"].revisions[0].state = "stopped"
    assert state.read(path).services["dashboard"].revisions[0].state == "stopped"
    assert json.loads(path.read_text())["services"]["dashboard"]["revision"] == "dashboard-00001-abc"
    state.remove(path)
    with pytest.raises(state.StateError, match="no running stack"):
        state.read(path)


def test_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text("{not json")
    with pytest.raises(state.StateError, match="unreadable"):
        state.read(path)


def test_local_secrets_are_created_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / ".secrets.local.env"
    first = localsecrets.ensure(path)
    assert len(first["SESSION_SECRET"]) == 64
    assert first["FIREBASE_API_KEY"] == "local-emulator-key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert localsecrets.ensure(path) == first
    assert localsecrets.redact({"SESSION_SECRET": "x", "A": "b"}, {"SESSION_SECRET"}) == {
        "SESSION_SECRET": "<secret>",
        "A": "b",
    }


def test_sweep_removes_only_old_runs_whose_stack_is_gone(tmp_path: Path) -> None:
    old, recent, live = (
        tmp_path / "runs" / "old",
        tmp_path / "runs" / "recent",
        tmp_path / "pytest-1" / "runs" / "live",
    )
    for directory in (old, recent, live):
        (directory / "logs").mkdir(parents=True)
    (tmp_path / "pytest-1" / "stack.json").write_text(json.dumps({"run_dir": str(live)}))
    for directory in (old, live):
        os.utime(directory, (0, 0))
    assert runner.sweep_old_runs(tmp_path) == [old]
    assert recent.exists()
    assert live.exists()


def test_log_filter_masks_credentials_and_keeps_the_exit_status(tmp_path: Path) -> None:
    token = "Tk_" + os.urandom(8).hex()
    script = (
        f"print(\"INFO: Failed to push to endpoint 'http://127.0.0.1:1/?token={token}': 503\");"
        "print('plain line'); raise SystemExit(3)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "stack.log_filter", sys.executable, "-c", script],
        cwd=state.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert token not in result.stdout
    assert result.stdout.splitlines() == [
        "INFO: Failed to push to endpoint 'http://127.0.0.1:1/?token=[redacted]': 503",
        "plain line",
    ]


def test_log_filter_refuses_a_missing_command_in_one_line() -> None:
    for argv, status, words in (
        ([], 2, "usage:"),
        (["/nonexistent/tool"], 127, "cannot run /nonexistent/tool"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "stack.log_filter", *argv],
            cwd=state.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (result.returncode, result.stderr.count("\n")) == (status, 1), result.stderr
        assert words in result.stderr
