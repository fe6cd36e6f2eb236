"""The local_stack fixture: every manifest service live, started once per run (xdist too), lazily."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from imageflow import manifest as manifest_module
from stack import processes, state
from stack.control import PASS_ENV, StackControl
from stack.processes import MARKER_ENV
from stack.state import StackState

NEEDS_STACK = """
import json, os
from pathlib import Path

def record(state):
    with open(os.environ["FIXTURE_RECORD"], "a") as out:
        out.write(json.dumps({"router": state.router_admin_url, "pid": os.getpid(),
                              "firestore": os.environ.get("FIRESTORE_EMULATOR_HOST")}) + "\\n")

def test_one(local_stack):
    record(local_stack)

def test_two(local_stack):
    record(local_stack)

def test_three(local_stack):
    record(local_stack)
"""

UNIT_ONLY = """
import os
from pathlib import Path

def test_unit():
    assert not Path(os.environ["IMAGEFLOW_STACK_FILE"]).exists()
"""


def test_every_manifest_service_is_live_behind_the_router(
    local_stack: StackState, stack_control: StackControl
) -> None:
    manifest = manifest_module.default()
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == local_stack.env["FIRESTORE_EMULATOR_HOST"]
    # The live revisions now, not at session start: a deploy earlier in the run may have replaced them.
    current = stack_control.state
    for spec in manifest.services:
        service = current.services[spec.name]
        assert service.revision, f"{spec.name} has no live revision"
        assert requests.get(service.url + "/healthz", timeout=10).json() == {"ok": True}
        ready = requests.get(service.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["revision"] == service.revision


def run_pytest(tmp_path: Path, source: str, marker: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on one generated test file with this project's stack plugin, in a fresh stack file."""
    test_file = tmp_path / f"test_generated_{uuid.uuid4().hex[:8]}.py"
    test_file.write_text(source)
    env = {
        **os.environ,
        MARKER_ENV: marker,
        PASS_ENV: MARKER_ENV,
        "FIXTURE_RECORD": str(tmp_path / "record.jsonl"),
        # Not a running stack: the run must start (and stop) its own.
        state.STATE_ENV: str(tmp_path / "absent" / "stack.json"),
        "PYTHONPATH": str(state.REPO_ROOT),
    }
    for key in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        env.pop(key, None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "fixtures.stack",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-q",
            str(test_file),
            *args,
        ],
        cwd=state.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.private_stack("an inner xdist run that boots its own stack")
def test_xdist_run_starts_one_stack_and_stops_it(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    result = run_pytest(tmp_path, NEEDS_STACK, marker, "-n", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert len({r["router"] for r in records}) == 1, "more than one stack was started"
    assert len({r["pid"] for r in records}) == 2, "the tests should have run on both workers"
    assert all(r["firestore"] for r in records)
    assert processes.processes_with_env(MARKER_ENV, marker) == [], "the run's stack outlived the run"


def test_unit_only_run_starts_nothing(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    result = run_pytest(tmp_path, UNIT_ONLY, marker)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert processes.processes_with_env(MARKER_ENV, marker) == []
