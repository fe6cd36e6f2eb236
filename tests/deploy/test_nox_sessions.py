"""The nox sessions: each listed with its one-line docstring; only safe ones run by default."""

from __future__ import annotations

import re
import subprocess

import pytest

from fixtures.deployment import REPO

pytestmark = pytest.mark.deploy


def test_sessions_listed_and_real_environments_not_default() -> None:
    """`nox -l`: every session of the brief, with a description; staging/production/rollback never default."""
    listed = subprocess.run(
        [str(REPO / ".venv" / "bin" / "nox"), "-l"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sessions = {
        m["name"]: (m["mark"] == "*", m["description"])
        for m in re.finditer(r"^(?P<mark>[*-]) (?P<name>\w+) -> (?P<description>.+)$", listed.stdout, re.M)
    }
    wanted = {"e2e", "staging_e2e", "production_gate", "rollback", "plan", "tests", "lint"}
    assert wanted <= set(sessions), listed.stdout
    assert all(sessions[name][1] for name in wanted)
    assert not any(sessions[name][0] for name in ("staging_e2e", "production_gate", "rollback"))
