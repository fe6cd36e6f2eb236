"""The verification step's command: the suite against the candidates (or a stand-in in tests)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from deploy import environments
from deploy.context import RunContext

# xdist workers of the release suite in the gate. Measured on two cores (`nox -s benchmarks --
# suite_time`, reports/benchmarks/suite-time.json): serial 189 s, 2 workers 153 s and 137 s (as -n 2
# and as -n auto, which is 2 here), 3 workers 135 s: 3 is within the spread of two runs of 2, and puts
# the watcher's deadline checks under more CPU contention, so 2. A `-n` of the user's own wins.
DEFAULT_WORKERS = "2"
# Options under which xdist cannot or must not distribute: a debugger needs the one terminal, and
# xdist switched off (`-p no:xdist`, which arrives as two arguments, or as one: `-pno:xdist`).
SERIAL_ONLY = frozenset({"--pdb", "--trace", "no:xdist", "-pno:xdist"})


def workers_given(pytest_args: list[str]) -> bool:
    """Whether the user's pytest arguments choose the worker count (or rule workers out) themselves."""
    for arg in pytest_args:
        if arg in SERIAL_ONLY or arg in ("-n", "--numprocesses") or arg.startswith("--numprocesses="):
            return True
        if arg.startswith("-n") and arg[2:].strip("=").isalnum():
            return True  # -n3, -nauto
    return False


# Under a run's reports folder: the Allure results its suite writes (and the canary adds to).
ALLURE_RESULTS = "allure-results"


def report_options(reports: Path, junit_name: str) -> list[str]:
    """pytest options that put every report of a suite run under reports (later options win in pytest).

    A gate run inside a test run must not write (or, at its start, empty) the outer run's results.
    """
    return [
        "-o",
        f"reports_dir={reports}",
        f"--junitxml={reports / junit_name}",
        f"--alluredir={reports / ALLURE_RESULTS}",
        f"--output={reports / 'playwright'}",
    ]


def suite_command(ctx: RunContext) -> list[str]:
    """The pytest command that verifies the candidates; $IMAGEFLOW_VERIFY_COMMAND replaces it (tests only)."""
    override = os.environ.get("IMAGEFLOW_VERIFY_COMMAND", "")
    if override:
        return [*shlex.split(override), *ctx.pytest_args]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/e2e",
        "-p",
        "no:cacheprovider",
        *report_options(ctx.sources.reports_dir, f"junit-{ctx.session}-{ctx.run_id}.xml"),
    ]
    # The report a person opens after every gate, local or remote (fixtures.reporting generates it
    # into reports/allure/<target> with the trend of that target's earlier runs, then scrubs it).
    command.append("--allure-html")
    if ctx.smoke:
        # The production gate runs only the self-cleaning smoke scenarios; destructive ones are refused.
        command += ["-m", "smoke and not destructive"]
    if not workers_given(ctx.pytest_args):
        command += ["-n", DEFAULT_WORKERS]
    return [*command, *ctx.pytest_args]


# pytest's exit codes other than 0 (passed) and 1 (tests failed), said in words for the record.
PYTEST_EXITS = {
    2: "the run was interrupted",
    3: "pytest hit an internal error",
    4: "pytest was used wrongly (bad option or configuration)",
    5: "no test was selected (check -k / -m): nothing was verified",
}


def red_reason(exit_code: int) -> str:
    """Why a suite run is not green, in one line."""
    detail = PYTEST_EXITS.get(exit_code, "tests failed")
    return f"the suite was red (exit {exit_code}: {detail})"


def suite_env(
    ctx: RunContext, dashboard_url: str, revisions: dict[str, str], urls: dict[str, str], lane: str
) -> dict[str, str]:
    """What the suite is told about the candidates it verifies."""
    return {
        "IMAGEFLOW_TARGET": ctx.env.name,
        environments.DASHBOARD_URL_ENV: dashboard_url,
        "IMAGEFLOW_LANE": lane,
        "IMAGEFLOW_EXPECTED_REVISIONS": json.dumps(revisions, sort_keys=True),
        "IMAGEFLOW_SERVICE_URLS": json.dumps(urls, sort_keys=True),
    }
