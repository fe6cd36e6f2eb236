"""A pytest plugin for the drills (`-p drills.pytest_plugin`): keep only chosen tests, log each report.

--drill-keep SUBSTR / --drill-keep-agent NAME deselect every test that matches no keep rule.
--drill-log FILE appends one JSON line per test phase report, stamped with the wall-clock time it
reached the controller, so a drill can tell when the first failure was reported.
--drill-abort-on-failure kills the run's process group once that first failure is logged: a drill that
needs only "red or not" (the mutation run) does not wait for other workers' tests and teardowns.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

MESSAGE_LIMIT = 300


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the drill options."""
    group = parser.getgroup("drills", "fault drill and flake check")
    group.addoption("--drill-log", default=None, help="append one JSON line per test report to this file")
    group.addoption(
        "--drill-keep",
        action="append",
        default=[],
        help="keep tests whose node id contains this (repeatable)",
    )
    group.addoption(
        "--drill-keep-agent", action="append", default=[], help="keep tests marked agent(NAME) (repeatable)"
    )
    group.addoption(
        "--drill-abort-on-failure",
        action="store_true",
        default=False,
        help="kill this run's process group once the first failure is logged (needs --drill-log)",
    )


class ReportLog:
    """Appends every test phase report to a JSON-lines file, in the process that owns the run."""

    def __init__(self, path: Path, abort_on_failure: bool = False) -> None:
        self.path = path
        self.abort_on_failure = abort_on_failure

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Append the report (node id, phase, outcome, when it arrived) to the log."""
        line = {
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "at": time.time(),
            "duration": round(report.duration, 3),
            "message": _message(report),
        }
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
        if report.failed and self.abort_on_failure:
            # The verdict is on disk; the other workers' running tests and every teardown are not
            # needed, and a mutant can make them wait for whole deadlines. Own group only (checked).
            os.killpg(os.getpgrp(), signal.SIGKILL)


def pytest_configure(config: pytest.Config) -> None:
    """Log reports in the controller only (xdist workers send their reports there)."""
    if hasattr(config, "workerinput"):
        return
    path = config.getoption("--drill-log")
    abort = bool(config.getoption("--drill-abort-on-failure"))
    if abort and not path:
        raise pytest.UsageError(
            "--drill-abort-on-failure needs --drill-log (the verdict must be on disk first)"
        )
    if abort and os.getpgrp() != os.getpid():
        raise pytest.UsageError("--drill-abort-on-failure needs pytest to lead its own process group")
    if path:
        config.pluginmanager.register(ReportLog(Path(path), abort), "drills-report-log")


def keeps(nodeid: str, agents: list[str], keep: list[str], keep_agents: list[str]) -> bool:
    """True when a test with this node id and these agent markers matches a keep rule."""
    return any(k in nodeid for k in keep) or any(a in keep_agents for a in agents)


def _agents(item: pytest.Item) -> list[str]:
    names: list[str] = []
    for marker in item.iter_markers("agent"):
        names.extend(str(a) for a in marker.args)
        if "name" in marker.kwargs:
            names.append(str(marker.kwargs["name"]))
    return names


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests no keep rule selects (only when a keep rule was given)."""
    keep: list[str] = config.getoption("--drill-keep")
    keep_agents: list[str] = config.getoption("--drill-keep-agent")
    if not keep and not keep_agents:
        return
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        (selected if keeps(item.nodeid, _agents(item), keep, keep_agents) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def _message(report: pytest.TestReport) -> str:
    """The first meaningful line of a failure (the assertion), bounded."""
    if not report.failed:
        return ""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", "") or report.longreprtext or "")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:MESSAGE_LIMIT]
