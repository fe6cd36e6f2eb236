"""The verification step's command: the suite against the candidates (or a stand-in in tests)."""

from __future__ import annotations

import json
import os
import shlex
import sys

from deploy.context import RunContext


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
        f"--junitxml=reports/junit-{ctx.session}-{ctx.run_id}.xml",
    ]
    if ctx.env.is_local:
        # The report a QA engineer clicks through (fixtures.reporting generates it after the run).
        command.append("--allure-html")
    if ctx.smoke:
        # The production gate runs only the self-cleaning smoke scenarios; destructive ones are refused.
        command += ["-m", "smoke and not destructive"]
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
        "IMAGEFLOW_DASHBOARD_URL": dashboard_url,
        "IMAGEFLOW_LANE": lane,
        "IMAGEFLOW_EXPECTED_REVISIONS": json.dumps(revisions, sort_keys=True),
        "IMAGEFLOW_SERVICE_URLS": json.dumps(urls, sort_keys=True),
    }
