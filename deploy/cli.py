"""`python -m deploy VERB [options] [-- pytest args]`: the verbs the nox sessions call.

Verbs: plan (dry run, any --env), deploy (--env), e2e (local), staging_e2e, production_gate, rollback,
canary (--env: the progressive part alone, candidates -> steps -> 100 % -> bake, no lane).
Options come before `--`; anything after `--` (and any option the tool does not know) goes to pytest.
Exit codes: 0 done, 1 a step or the verification failed (what changed was rolled back), 2 refused before
any step ran (bad input), 3 the rollback itself failed (manual commands printed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from deploy import environments, plan, preflight, runner
from deploy.context import RunContext, git_commit, new_run_id
from deploy.gcp import GcpExecutor
from deploy.gcp_rollback import GcpRollback
from deploy.record import RunRecord
from deploy.shell import Shell
from deploy.steps import PreflightError
from imageflow import manifest as manifest_module

VERBS = ("plan", "deploy", "e2e", "staging_e2e", "production_gate", "rollback", "canary")
# Sessions bound to one environment; plan, deploy and rollback take --env.
FIXED_ENV = {"e2e": "local", "staging_e2e": "staging", "production_gate": "production"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line and exit 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """One clear line, exit 2."""
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(runner.EXIT_BAD_INPUT)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split options (before `--`) from pytest arguments; unknown options also go to pytest."""
    args = list(argv)
    tail: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, tail = args[:cut], args[cut + 1 :]
    parser = _Parser(prog="python -m deploy", allow_abbrev=False, add_help=True)
    parser.add_argument("verb", choices=VERBS)
    parser.add_argument("--env", default="", help="target environment (environments.toml)")
    parser.add_argument("--confirm", action="store_true", help="confirm a deploy to a confirm=true target")
    parser.add_argument("--backup", action="store_true", help="take a backup even where the plan does not")
    parser.add_argument("--image", default="", help="container image to deploy (gcp)")
    parser.add_argument(
        "--restore-backup", default="", metavar="NAME", help="rollback: also restore this backup"
    )
    parser.add_argument(
        "--rules-from", default="", metavar="REV", help="git revision whose firestore.rules to restore"
    )
    parser.add_argument(
        "--no-canary",
        action="store_true",
        help="promote in one switch after the lane: no canary steps, no bake",
    )
    parser.add_argument(
        "--revision-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="local only: extra configuration for every candidate revision",
    )
    options, unknown = parser.parse_known_args(args)
    return options, [*unknown, *tail]


def context(options: argparse.Namespace, pytest_args: list[str]) -> RunContext:
    """Resolve the environment and the manifest into a run context (bad input -> PreflightError)."""
    name = (
        FIXED_ENV.get(options.verb)
        or options.env
        or ("local" if options.verb in ("plan", "deploy", "canary") else "")
    )
    if options.verb in FIXED_ENV and options.env and options.env != FIXED_ENV[options.verb]:
        raise PreflightError(f"{options.verb} always targets {FIXED_ENV[options.verb]}, not {options.env}")
    if not name:
        raise PreflightError(f"{options.verb} needs --env NAME")
    try:
        env = environments.get(name)
        manifest = manifest_module.load()
    except (environments.TargetError, manifest_module.ManifestError) as exc:
        raise PreflightError(str(exc)) from exc
    if options.verb == "canary" and (env.canary is None or options.no_canary or not env.is_local):
        raise PreflightError(
            f"canary needs a local target with [environments.{name}.canary] (Google Cloud: not built yet)"
        )
    if options.restore_backup and options.verb != "rollback":
        raise PreflightError("--restore-backup is only accepted by the rollback session")
    revision_env = dict(item.partition("=")[::2] for item in options.revision_env)
    if revision_env and not env.is_local:
        raise PreflightError(
            "--revision-env is accepted on the local target only (configuration lives in the plan)"
        )
    if any(not key for key in revision_env):
        raise PreflightError("--revision-env needs KEY=VALUE")
    session = "deploy" if options.verb == "plan" else options.verb
    return RunContext(
        session=session,
        env=env,
        manifest=manifest,
        commit=git_commit(),
        run_id=new_run_id(),
        image=options.image,
        backup=options.backup or env.confirm,
        smoke=env.name == "production" or env.confirm,
        pytest_args=pytest_args,
        restore_backup=options.restore_backup,
        rules_from=options.rules_from,
        revision_env=revision_env,
        canary=not options.no_canary,
    )


def new_record(
    options: argparse.Namespace, ctx: RunContext, dry: bool, out: TextIO
) -> tuple[RunRecord, Shell]:
    """The run record of one verb on ctx and the shell that writes into it (dry: nothing is run)."""
    record = RunRecord(
        session=options.verb,
        environment=ctx.env.name,
        kind=ctx.env.kind,
        commit=ctx.commit,
        run_id=ctx.run_id,
        dry_run=dry,
    )
    return record, Shell(record, dry_run=dry, out=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one verb; return its exit code."""
    options, pytest_args = parse(sys.argv[1:] if argv is None else argv)
    stream = out or sys.stdout
    try:
        ctx = context(options, pytest_args)
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return runner.EXIT_BAD_INPUT
    dry = options.verb == "plan"
    record, shell = new_record(options, ctx, dry, stream)
    try:
        if not dry:
            preflight.confirmation(ctx, options.confirm)
            if not ctx.env.is_local:
                preflight.gcp(ctx, shell)
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        record.decision, record.reason, record.exit_code = "refused", str(exc), runner.EXIT_BAD_INPUT
        record.write(ctx.sources.runs_dir)
        return runner.EXIT_BAD_INPUT
    if dry:
        shell.say(f"plan for {ctx.env.name} ({ctx.env.kind}): commands in order, nothing is run")
    code = execute(options.verb, ctx, record, shell)
    record.exit_code = code
    json_path, md_path = record.write(ctx.sources.runs_dir)
    shell.say(f"decision: {record.decision}" + (f" ({record.reason})" if record.reason else ""))
    shell.say(f"run record: {json_path} and {md_path.name}")
    return code


def execute(verb: str, ctx: RunContext, record: RunRecord, shell: Shell) -> int:
    """Run the session's steps with the environment's executor."""
    if ctx.env.is_local:
        from deploy.local import run_local  # the local executor needs the stack package

        return run_local(verb, ctx, record, shell)
    executor = GcpExecutor(ctx, shell, record)
    if verb == "rollback":
        return runner.run_rollback(GcpRollback(executor).plan, record, shell)
    code = runner.run_steps(plan.build(ctx, executor), executor.changes, record, shell)
    if code == runner.EXIT_OK:
        record.decision = "planned" if shell.dry_run else "promoted"
        record.reason = record.reason or (
            "dry run" if shell.dry_run else "verification green, checklist passed"
        )
    elif record.verification.get("passed") is False and code == runner.EXIT_FAILED:
        record.decision = "rolled back"
    return code
