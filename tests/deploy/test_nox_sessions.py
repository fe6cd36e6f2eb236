"""The nox sessions: each listed with its one-line docstring; only safe ones run by default."""

from __future__ import annotations

import re
import subprocess

from stack.state import REPO_ROOT


def test_sessions_listed_and_real_environments_not_default() -> None:
    """`nox -l`: every session, with a description; none but the tests and the lint runs by default."""
    listed = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "nox"), "-l"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sessions = {
        m["name"]: (m["mark"] == "*", m["description"])
        for m in re.finditer(r"^(?P<mark>[*-]) (?P<name>\w+) -> (?P<description>.+)$", listed.stdout, re.M)
    }
    wanted = {"e2e", "staging_e2e", "production_gate", "rollback", "plan", "sweep", "tests", "lint"}
    wanted |= {"fault_drill", "flake_check", "load", "benchmarks", "mutation", "fuzz"}
    assert wanted <= set(sessions), listed.stdout
    assert all(sessions[name][1] for name in wanted)
    # What touches a real target, and what runs for many minutes, only ever on purpose.
    assert not [name for name, (default, _) in sessions.items() if default and name not in ("tests", "lint")]
