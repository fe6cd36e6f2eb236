"""Run a selection of the suite in a child pytest against one stack and read back what happened."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drills.faults_catalogue import Selection
from stack import sigterm
from stack.state import REPO_ROOT, STATE_ENV

RUN_TIMEOUT_SECONDS = 1800.0
STOP_GRACE_SECONDS = 15.0
# pytest exit codes: 0 all passed, 1 some failed, 5 nothing collected; anything else broke the run.
EXIT_OK, EXIT_FAILED, EXIT_NO_TESTS = 0, 1, 5


@dataclass(frozen=True)
class CaseOutcome:
    """The final outcome of one test (a failed setup or teardown counts as failed)."""

    nodeid: str
    outcome: str
    first_failed_at: float | None = None
    message: str = ""


@dataclass
class SuiteRun:
    """One pytest run: exit code, wall-clock bounds, per-test outcomes and where its output went."""

    exit_code: int
    started_at: float
    finished_at: float
    results: dict[str, CaseOutcome] = field(default_factory=dict)
    output_dir: str = ""
    timed_out: bool = False

    @property
    def failed(self) -> list[str]:
        """Node ids of the tests that failed (in any phase), in the order they failed."""
        failures = [r for r in self.results.values() if r.outcome == "failed"]
        return [r.nodeid for r in sorted(failures, key=lambda r: r.first_failed_at or 0.0)]

    @property
    def passed(self) -> list[str]:
        """Node ids of the tests that passed."""
        return [r.nodeid for r in self.results.values() if r.outcome == "passed"]

    @property
    def first_failure_at(self) -> float | None:
        """Wall-clock time the first failure reached the controller."""
        times = [r.first_failed_at for r in self.results.values() if r.first_failed_at is not None]
        return min(times) if times else None

    @property
    def green(self) -> bool:
        """True when the run completed, ran at least one test, and nothing failed."""
        return self.exit_code == EXIT_OK and not self.failed and bool(self.results)

    @property
    def broken(self) -> bool:
        """True when pytest itself could not run the selection (usage error, crash, timeout)."""
        if self.timed_out or self.exit_code not in (EXIT_OK, EXIT_FAILED, EXIT_NO_TESTS):
            return True
        # Exit 1 without a single test report: pytest died before running anything (a traceback).
        return self.exit_code == EXIT_FAILED and not self.results

    def messages(self) -> dict[str, str]:
        """{node id: first line of its failure} for the failed tests."""
        return {n: self.results[n].message for n in self.failed}


def read_log(path: Path) -> dict[str, CaseOutcome]:
    """Fold the plugin's JSON lines into one outcome per test (skipped only if never failed or passed)."""
    outcomes: dict[str, CaseOutcome] = {}
    if not path.exists():
        return outcomes
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line cut short by a killed run
        nodeid, outcome, when = line["nodeid"], line["outcome"], line["when"]
        previous = outcomes.get(nodeid)
        if outcome == "failed":
            if previous is None or previous.outcome != "failed":
                outcomes[nodeid] = CaseOutcome(nodeid, "failed", float(line["at"]), line.get("message", ""))
        elif outcome == "passed" and when == "call" and (previous is None or previous.outcome != "failed"):
            outcomes[nodeid] = CaseOutcome(nodeid, "passed")
        elif outcome == "skipped" and previous is None:
            outcomes[nodeid] = CaseOutcome(nodeid, "skipped")
    return outcomes


def existing_paths(paths: Sequence[str], root: Path = REPO_ROOT) -> list[str]:
    """The selection's paths that exist (a suite folder not written yet selects nothing)."""
    return [p for p in paths if (root / p.split("::", 1)[0]).exists()]


def pytest_command(
    selection: Selection, output_dir: Path, workers: int = 0, extra: Sequence[str] = ()
) -> list[str]:
    """The child pytest command: the selection, the drill plugin, and reports under output_dir."""
    command = [sys.executable, "-m", "pytest", *existing_paths(selection.paths)]
    command += ["-p", "drills.pytest_plugin", "--drill-log", str(output_dir / "reports.jsonl")]
    for keep in selection.keep:
        command += ["--drill-keep", keep]
    for agent in selection.keep_agents:
        command += ["--drill-keep-agent", agent]
    # Each run keeps its own junit/allure/playwright output, away from the suite's default reports.
    command += [
        f"--junitxml={output_dir / 'junit.xml'}",
        f"--alluredir={output_dir / 'allure-results'}",
        f"--output={output_dir / 'playwright'}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
    ]
    # Always said, 0 too: the test command's own default is parallel (fixtures.parallel).
    command += ["-n", str(workers)]
    return [*command, *extra]


def run(
    selection: Selection,
    state_file: Path,
    output_dir: Path,
    *,
    workers: int = 0,
    timeout: float = RUN_TIMEOUT_SECONDS,
    extra: Sequence[str] = (),
) -> SuiteRun:
    """Run the selection against the stack of state_file; output goes to output_dir/pytest.log."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "reports.jsonl").unlink(missing_ok=True)
    env = {**os.environ, STATE_ENV: str(state_file), "PYTHONUNBUFFERED": "1"}
    command = pytest_command(selection, output_dir, workers, extra)
    started = time.time()
    timed_out = False
    with (output_dir / "pytest.log").open("wb") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        process: subprocess.Popen[bytes] | None = None
        try:
            with sigterm.deferred():
                process = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            exit_code = -1
        finally:
            if process is not None:
                _stop_group(process)
    return SuiteRun(
        exit_code=exit_code,
        started_at=started,
        finished_at=time.time(),
        results=read_log(output_dir / "reports.jsonl"),
        output_dir=str(output_dir),
        timed_out=timed_out,
    )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the child's whole process group (pytest, its xdist workers, browsers) if any is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
