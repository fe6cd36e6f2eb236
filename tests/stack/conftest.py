"""Fixtures for the stack runner's own tests: a router with an echo service, no emulators."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import processes, runner, state
from stack.control import StackControl
from stack.state import StackState

ECHO_APP = Path(__file__).with_name("echo_app.py")
ECHO_COMMAND = (sys.executable, str(ECHO_APP))


@pytest.fixture
def secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local secrets in a temporary file, so tests never touch the developer's own."""
    path = tmp_path / "secrets.env"
    monkeypatch.setenv("IMAGEFLOW_SECRETS_FILE", str(path))
    return path


@pytest.fixture
def router_stack(
    tmp_path: Path, secrets_file: Path, request: pytest.FixtureRequest
) -> Iterator[StackControl]:
    """A router process and a state file with one service, "echo", on a stable URL (no revision yet).

    Parametrized indirectly, the parameter is the router's extra command-line arguments.
    """
    path = tmp_path / "stack" / "stack.json"
    log_dir = tmp_path / "logs"
    admin_port = processes.free_port()
    extra = list(getattr(request, "param", []))
    router = processes.start(
        "router",
        [sys.executable, "-m", "stack.router", "--admin-port", str(admin_port), *extra],
        log_dir / "router.log",
        cwd=state.REPO_ROOT,
    )
    try:
        state.write(
            StackState(
                project="demo-imageflow",
                bucket="imageflow-uploads",
                run_dir=str(tmp_path),
                log_dir=str(log_dir),
                router_admin_url=f"http://127.0.0.1:{admin_port}",
                processes=[state.ProcessRecord(**router.as_record())],  # type: ignore[arg-type]
            ),
            path,
        )
        processes.wait_http(f"http://127.0.0.1:{admin_port}/healthz", "router", 20, router)
        control = StackControl(path)
        control.add_service("echo")
        yield control
    finally:
        runner.stop(path, owned=[router])
