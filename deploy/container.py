"""The verification container's entrypoint: the release suite against a deployed target, results to a mount.

`python -m deploy.container [--env NAME] [--results DIR] [-- pytest args]`; without options
$IMAGEFLOW_TARGET names the target and $IMAGEFLOW_RESULTS_DIR the mounted folder (default /results).
It runs the gate's own suite command (deploy.verify.suite_command: the smoke selection on production,
the gate's workers), writes junit.xml, allure-results/, playwright/ and the run record into the
folder, and exits as the gate does: 0 green, 1 the suite was red, 2 refused before it ran.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from deploy import environments, runner, verify
from deploy.cli import _Parser
from deploy.context import RunContext, git_commit, new_run_id
from deploy.record import RunRecord
from deploy.shell import Shell
from deploy.steps import PreflightError, StepFailed
from imageflow import manifest as manifest_module
from stack.state import REPO_ROOT

TARGET_ENV = "IMAGEFLOW_TARGET"
RESULTS_ENV = "IMAGEFLOW_RESULTS_DIR"
DEFAULT_RESULTS = "/results"
SESSION = "verify"
# The gate's option for the HTML report (Allure's node CLI and Java): made from allure-results elsewhere.
ALLURE_HTML = "--allure-html"


def parse(argv: Sequence[str]) -> tuple[str, Path, list[str]]:
    """Target name, results folder and pytest arguments, from options or the environment."""
    args = list(argv)
    tail: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, tail = args[:cut], args[cut + 1 :]
    # The deploy tool's parser: bad usage is one line and exit 2, as everywhere in the gate.
    parser = _Parser(prog="python -m deploy.container", allow_abbrev=False)
    parser.add_argument("--env", default="", help=f"target to verify (default ${TARGET_ENV})")
    parser.add_argument("--results", default="", help=f"results folder (default ${RESULTS_ENV} or /results)")
    options, unknown = parser.parse_known_args(args)
    target = options.env or os.environ.get(TARGET_ENV, "")
    results = options.results or os.environ.get(RESULTS_ENV, "") or DEFAULT_RESULTS
    return target.strip(), Path(results), [*unknown, *tail]


def context(target: str, results: Path, pytest_args: list[str]) -> RunContext:
    """The gate's run context for a verification of target; bad input -> PreflightError."""
    if not target:
        raise PreflightError(f"no target: set {TARGET_ENV}=staging (or production), or pass --env NAME")
    try:
        env = environments.get(target)
        manifest = manifest_module.load()
    except (environments.TargetError, manifest_module.ManifestError) as exc:
        raise PreflightError(str(exc)) from exc
    if env.is_local:
        # The image holds the suite and Chromium, not the emulators a local stack runs on.
        raise PreflightError(
            f"{target} is a local target: the container verifies a deployed one (run `nox -s e2e` locally)"
        )
    missing = env.missing_for_the_suite(os.environ)
    if missing:
        raise PreflightError(f"target {target!r} is half-configured: missing {'; '.join(missing)}")
    if not results.is_dir():
        raise PreflightError(
            f'results folder {results} does not exist: mount one (-v "$PWD/reports/verify:{results}")'
        )
    if not os.access(results, os.W_OK):
        raise PreflightError(f"results folder {results} is not writable")
    # Later options win in pytest: these replace pytest.ini's and the gate's own report paths; the
    # run's reports folder is the mount, so the session-end scrub of secrets covers what leaves.
    outputs = verify.report_options(results, "junit.xml")
    return RunContext(
        session=SESSION,
        env=env,
        manifest=manifest,
        commit=git_commit(),
        run_id=new_run_id(),
        smoke=env.name == "production" or env.confirm,
        pytest_args=[*pytest_args, *outputs],
    )


def suite_command(ctx: RunContext) -> list[str]:
    """The gate's suite command, less the HTML report: the image has no Allure CLI, the mount gets results."""
    return [arg for arg in verify.suite_command(ctx) if arg != ALLURE_HTML]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the release suite against the target; return the gate's exit code."""
    target, results, pytest_args = parse(sys.argv[1:] if argv is None else argv)
    try:
        ctx = context(target, results, pytest_args)
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return runner.EXIT_BAD_INPUT
    record = RunRecord(
        session=SESSION, environment=ctx.env.name, kind=ctx.env.kind, commit=ctx.commit, run_id=ctx.run_id
    )
    shell = Shell(record, out=out)
    command = suite_command(ctx)
    record.begin(1, "verify", f"verify {ctx.env.name} with the release suite")
    shell.say(f"[1/1] verify {ctx.env.name} with the release suite ...")
    try:
        result = shell.run(
            command, check=False, env={TARGET_ENV: ctx.env.name}, stream=True, cwd=str(REPO_ROOT)
        )
        code = result.exit_code
    except StepFailed as exc:
        code, reason = runner.EXIT_FAILED, str(exc)
    else:
        reason = "suite green" if code == 0 else verify.red_reason(code)
    passed = code == 0
    record.verification = {
        "command": shlex.join(command),
        "exit_code": code,
        "passed": passed,
        "target": ctx.env.name,
    }
    record.steps[-1].status = "done" if passed else "failed"
    record.decision, record.reason = ("verified" if passed else "red"), reason
    record.exit_code = runner.EXIT_OK if passed else runner.EXIT_FAILED
    json_path, _ = record.write(results / "runs")
    shell.say(f"[1/1] verify {ctx.env.name} ... {'done' if passed else 'FAILED'}: {reason}")
    shell.say(f"results: {results} (junit.xml, allure-results/, run record {json_path.name})")
    return record.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
