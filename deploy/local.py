"""The local executor: every step of the plan against the local stack (emulators, router, revisions)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import requests

from deploy import canary_report, plan, runner, verify
from deploy.canary import CanaryRun, Revisions
from deploy.context import RunContext
from deploy.local_traffic import LocalTraffic
from deploy.record import RunRecord
from deploy.shell import Shell
from deploy.steps import Change, StepFailed, VerificationFailed
from load.traffic import BackgroundUsers, TrafficError
from stack import localsecrets
from stack import runner as stack_runner
from stack import state as stack_state
from stack.control import StackControl
from stack.handle import StackUnavailable, choose_state_file, local_stack
from stack.state import REPO_ROOT, RevisionRecord

BACKUPS = REPO_ROOT / "reports" / "backups"
HTTP_TIMEOUT = 10.0
SECRET_HINTS = ("SECRET", "KEY", "TOKEN", "PASSWORD")
T = TypeVar("T")
P = ParamSpec("P")


def git_rules(repo: Path, revision: str) -> str:
    """firestore.rules at a git revision of repo (git show REV:firestore.rules)."""
    result = subprocess.run(
        ["git", "-C", str(repo), "show", f"{revision}:firestore.rules"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise StepFailed(f"git show {revision}:firestore.rules failed: {result.stderr.strip()}")
    return result.stdout


class LocalExecutor:
    """Does, checks and undoes each step of the plan on the local stack."""

    def __init__(
        self, ctx: RunContext, shell: Shell, record: RunRecord, control: StackControl | None
    ) -> None:
        self.ctx = ctx
        self.shell = shell
        self.record = record
        self._control = control
        self.manifest = ctx.manifest
        self.changes: list[Change] = []
        self.previous: dict[str, RevisionRecord] = {}
        self.candidate: dict[str, RevisionRecord] = {}
        self.canary_run: CanaryRun | None = None
        self.users: BackgroundUsers | None = None

    @property
    def control(self) -> StackControl:
        """The stack handle (absent only in a dry run)."""
        assert self._control is not None, "the local executor needs a running stack"
        return self._control

    def act(self, text: str, do: Callable[[], T], dry_result: T | None = None) -> T:
        """One recorded stack action (in a dry run only printed; dry_result stands in for its answer)."""
        return self.shell.action(text, do, cast(T, dry_result))

    def on_stack(
        self, method: Callable[Concatenate[StackControl, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> Callable[[], T]:
        """A StackControl method call made when it runs: a dry run has no stack to bind it to."""
        return lambda: method(self.control, *args, **kwargs)

    def infrastructure(self) -> str:
        """Live topics, push subscriptions to the stable URLs, dead-letter topic and bucket."""
        report = self.act(
            "ensure topics, subscriptions, dead-letter topic and bucket",
            lambda: self.control.ensure_infrastructure(),
        )
        created = list(getattr(report, "created", []) or [])
        return f"created {', '.join(created)}" if created else "all present"

    def check_infrastructure(self) -> None:
        """A second pass finds everything: nothing the step should have made is still missing."""
        if self.shell.dry_run:
            return
        missing = list(self.control.ensure_infrastructure().created)
        if missing:
            raise StepFailed(f"still missing after the infrastructure step: {', '.join(missing)}")

    def secrets(self) -> str:
        """Every secret the manifest names has a value in the local secrets file (names only)."""
        names = sorted({k for s in self.manifest.services for k in s.required_secrets})
        values: dict[str, str] = self.act(f"secrets present: {', '.join(names)}", localsecrets.ensure, {})
        for key, value in values.items():
            # The suite's streamed output passes through the console and the run record: never a value.
            self.shell.register_secret(value, f"{key} from {localsecrets.secrets_path().name}")
        missing = [n for n in names if not self.shell.dry_run and not values.get(n)]
        if missing:
            raise StepFailed(f"missing local secrets: {', '.join(missing)} ({localsecrets.secrets_path()})")
        return f"{len(names)} present"

    def backup(self) -> str:
        """Export the Firestore emulator's data to reports/backups/<run id>."""
        target = BACKUPS / f"backup-{self.ctx.run_id}"
        path = self.act(
            f"export Firestore data to {target}", lambda: self.control.export_data(target), target
        )
        self.record.backup = str(path)
        return str(path)

    def candidates(self) -> str:
        """Start a tagged candidate revision of every service, reachable only at its own URL."""
        overrides = {"IMAGEFLOW_COMMIT": self.ctx.commit, **self.ctx.revision_env}
        # Printed and recorded: a value whose name looks secret is never shown.
        shown = " ".join(
            f"{k}=<secret>" if any(h in k.upper() for h in SECRET_HINTS) else f"{k}={v}"
            for k, v in overrides.items()
        )
        for spec in self.manifest.services:
            live = None if self.shell.dry_run else self.control.live_revision(spec.name)
            if live is not None:
                self.previous[spec.name] = live
                self.record.revisions_before[spec.name] = live.id
        # Started together, as the stack starts its first revisions: each waits for its own /readyz.
        with ThreadPoolExecutor(max_workers=1 if self.shell.dry_run else len(self.manifest.services)) as pool:
            started = {
                spec.name: pool.submit(
                    self.act,
                    f"deploy_revision {spec.name} {shown} route=False tag={self.ctx.tag}",
                    self.on_stack(
                        StackControl.deploy_revision, spec.name, overrides, route=False, tag=self.ctx.tag
                    ),
                    RevisionRecord(
                        id=f"<candidate of {spec.name}>", service=spec.name, url=f"<{spec.name} url>"
                    ),
                )
                for spec in self.manifest.services
            }
        failures: list[str] = []
        for spec in self.manifest.services:
            try:
                revision = started[spec.name].result()
            except StepFailed as exc:
                failures.append(str(exc))  # a revision that never got ready was already stopped
                continue
            self.candidate[spec.name] = revision
            self.changes.append(
                Change(
                    f"stop candidate {revision.id}",
                    partial(
                        self.act,
                        f"stop_revision {spec.name} {revision.id}",
                        self.on_stack(StackControl.stop_revision, spec.name, revision.id),
                    ),
                    f"python -m stack down  # local: or stop revision {revision.id}",
                )
            )
        self.record.revisions_candidate = {s: r.id for s, r in self.candidate.items()}
        if failures:
            raise StepFailed("; ".join(failures))
        return ", ".join(f"{s}={r.id}" for s, r in self.candidate.items())

    def rules(self) -> str:
        """Load this checkout's firestore.rules into the emulator; the undo loads the previous commit's."""
        source = self.ctx.sources.rules_file
        text = self.ctx.sources.rules_text()
        previous = (
            self.ctx.rules_from
            or (self.previous.get("dashboard") and self.previous["dashboard"].env.get("IMAGEFLOW_COMMIT", ""))
            or ""
        )
        self.act(f"load_rules {source}", lambda: self.control.load_rules(text))
        if previous:
            self.changes.append(
                Change(
                    f"reload firestore.rules of {previous}",
                    lambda: self.act(
                        f"load_rules (git show {previous}:firestore.rules)",
                        lambda: self.control.load_rules(git_rules(self.ctx.sources.rules_repo, previous)),
                    ),
                    f"git show {previous}:firestore.rules  # load it into the Firestore emulator",
                )
            )
            return f"previous rules: {previous}"
        self.record.warnings.append("no previous commit known: a rollback cannot restore the previous rules")
        return "no previous rules known"

    def verify(self) -> str:
        """Open a lane to the candidates, run the suite through it, delete the lane."""
        lane = self.ctx.lane
        endpoints = {a.name: self.candidate[a.name].url for a in self.manifest.agents}
        try:
            self.act(
                f"ensure_infrastructure lane {lane} -> candidate URLs",
                lambda: self.control.ensure_infrastructure(prefix=lane, endpoints=endpoints),
            )
            command = verify.suite_command(self.ctx)
            urls = {s: r.url for s, r in self.candidate.items()}
            revisions = {s: r.id for s, r in self.candidate.items()}
            env = verify.suite_env(self.ctx, urls.get("dashboard", ""), revisions, urls, lane)
            result = self.shell.run(command, check=False, env=env, stream=True, cwd=str(REPO_ROOT))
            self.record.verification = {
                "command": shlex.join(command),
                "exit_code": result.exit_code,
                "passed": result.ok,
                "lane": lane,
                "target": self.ctx.env.name,
            }
            if not result.ok:
                raise VerificationFailed(verify.red_reason(result.exit_code))
            return "suite green"
        finally:
            try:
                self.act(f"delete_lane {lane}", lambda: self.control.delete_lane(lane))
            except StepFailed as exc:
                self.record.warnings.append(f"lane {lane} not deleted: {exc}")

    def canary(self) -> str:
        """Give the candidates each configured share under Locust traffic, judged window by window."""
        config = self.ctx.env.canary
        assert config is not None  # the plan has this step only when the target configures it
        if self.shell.dry_run:
            self.act(
                f"watch the previous release at 100% for {config.window_seconds:g}s (the bake's baseline)",
                lambda: None,
            )
            for percent in config.steps:
                self.act(
                    f"split every service {percent}% candidate / {100 - percent}% previous; analyse",
                    lambda: None,
                )
            return f"steps {', '.join(f'{p}%' for p in config.steps)}"
        missing = [s.name for s in self.manifest.services if s.name not in self.previous]
        if missing:
            self.record.warnings.append(
                f"canary skipped: no previous revision of {', '.join(missing)} to compare with"
            )
            return "not applicable: no previous revision to compare with"
        traffic = LocalTraffic(self.control, self.candidate, self.previous, list(self.manifest.agent_names))
        revisions = Revisions(
            candidate={s: r.id for s, r in self.candidate.items()},
            previous={s: r.id for s, r in self.previous.items()},
            deadlines={a.name: a.deadline_seconds for a in self.manifest.agents},
        )
        self.canary_run = CanaryRun(config, traffic, revisions, say=self.shell.say)
        self.changes.append(
            Change("all traffic back on the previous revisions", traffic.restore, "python -m stack down")
        )
        if config.traffic_users:
            try:
                self.users = BackgroundUsers(
                    self.control.state,
                    config.traffic_users,
                    config.longest_seconds,
                    self.ctx.sources.reports_dir / "canary",
                )
            except TrafficError as exc:
                raise StepFailed(str(exc)) from exc
            self.changes.append(Change("stop the canary's traffic", self.stop_traffic, "# local: nothing"))
            self.users.start()
        try:
            return self.canary_run.steps()
        finally:
            self.keep_canary_record()

    def bake(self) -> str:
        """Watch the release at 100 % against the previous release's figures; a regression rolls back."""
        if self.canary_run is None:
            return "not applicable: no canary ran"
        try:
            return self.canary_run.bake()
        finally:
            self.stop_traffic()
            self.keep_canary_record()

    def stop_traffic(self) -> None:
        """Stop the canary's Locust users and delete them with their data (once)."""
        users, self.users = self.users, None
        if users is not None:
            removed = users.stop()
            self.shell.say(f"canary traffic stopped; {removed} load users' records removed")

    def keep_canary_record(self) -> None:
        """The canary's phases into the run record, with its picture; once over, into the run's report."""
        if self.canary_run is not None:
            self.record.canary = canary_report.keep(
                self.canary_run, self.ctx, verified=bool(self.record.verification)
            )

    def promote(self) -> str:
        """Route each stable URL to its candidate; the previous revision keeps running until the end."""
        # Consumers before producers (finalizer first, dashboard last): new messages meet new agents.
        for spec in reversed(self.manifest.services):
            candidate = self.candidate[spec.name]
            self.act(
                f"route {spec.name} -> {candidate.id}",
                self.on_stack(StackControl.route, spec.name, candidate.id),
            )
            previous = self.previous.get(spec.name)
            # After a canary its "all traffic back" change is this undo already, for every service.
            if previous is not None and self.canary_run is None:
                self.changes.append(
                    Change(
                        f"route {spec.name} back to {previous.id}",
                        partial(
                            self.act,
                            f"route {spec.name} -> {previous.id}",
                            self.on_stack(StackControl.route, spec.name, previous.id),
                        ),
                        f"# local: route {spec.name} back to {previous.id} (StackControl().route)",
                    )
                )
        return "all stable URLs on the candidates"

    def check_promote(self) -> None:
        """Every stable URL routes to its candidate."""
        if self.shell.dry_run:
            return
        for spec in self.manifest.services:
            live = self.control.live_revision(spec.name)
            self.record.revisions_after[spec.name] = live.id if live else ""
            if live is None or live.id != self.candidate[spec.name].id:
                raise StepFailed(f"{spec.name} does not serve its candidate")

    def monitoring(self) -> str:
        """No uptime checks or alert policies exist locally: reported as not applicable, never as passed."""
        self.shell.note("monitoring: no uptime checks or alert policies on the local stack")
        return "not applicable locally"

    def checklist(self) -> str:
        """Every live service ready with its config; the emulator's rules equal this commit's rules."""
        problems: list[str] = []
        for spec in self.manifest.services:
            url = "" if self.shell.dry_run else self.control.service(spec.name).url
            report: dict[str, Any] = self.act(
                f"GET {url or '<' + spec.name + ' url>'}/readyz", partial(_readyz, url), {}
            )
            if not self.shell.dry_run and not report.get("ready"):
                problems.append(f"{spec.name} not ready: {report.get('message', 'no readiness report')}")
        loaded: str = self.act("GET the Firestore emulator's securityRules", self.loaded_rules, "")
        if not self.shell.dry_run and loaded.strip() != self.ctx.sources.rules_text().strip():
            problems.append("the Firestore emulator's rules differ from this commit's firestore.rules")
        self.record.warnings.append("checklist: emulator variables are expected locally (not a finding)")
        if problems:
            raise StepFailed("; ".join(problems))
        return "all services ready, rules match (emulator-variable check not applicable locally)"

    def loaded_rules(self) -> str:
        """The rules the Firestore emulator enforces now (GET :securityRules)."""
        current = self.control.state
        url = f"http://{current.emulators['firestore']}/emulator/v1/projects/{current.project}:securityRules"
        response = requests.get(url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        files = response.json().get("rules", {}).get("files", [])
        return "".join(str(f.get("content", "")) for f in files)

    def retire_previous(self) -> None:
        """After a green run, drain and stop the revisions the candidates replaced."""
        for service, previous in self.previous.items():
            try:
                self.control.drain(service, previous.url)
                self.control.stop_revision(service, previous.id)
            except Exception as exc:
                self.record.warnings.append(f"previous revision {previous.id} not stopped: {exc}")


def _readyz(url: str) -> dict[str, Any]:
    """The readiness report of a service (status 200 or 503 both carry one)."""
    response = requests.get(f"{url}/readyz", timeout=HTTP_TIMEOUT)
    try:
        report = response.json()
    except ValueError:
        return {"ready": False, "message": f"HTTP {response.status_code}, not JSON"}
    return report if isinstance(report, dict) else {"ready": False}


class LocalRollback:
    """The rollback session on the local stack: previous revisions, previous rules, optionally a backup."""

    def __init__(self, executor: LocalExecutor) -> None:
        self.x = executor

    def plan(self) -> list[Change]:
        """The changes that take the stack back, in order."""
        x = self.x
        changes: list[Change] = []
        previous_dashboard: RevisionRecord | None = None
        for spec in x.manifest.services:
            revisions = x.control.revisions(spec.name)
            live = x.control.live_revision(spec.name)
            ids = [r.id for r in revisions]
            older = revisions[: ids.index(live.id)] if live else revisions
            usable = [r for r in older if r.state != "failed"]
            if not usable:
                raise StepFailed(f"{spec.name} has no earlier revision to roll back to")
            target = usable[-1]
            x.record.revisions_before[spec.name] = live.id if live else ""
            if spec.name == "dashboard":
                previous_dashboard = target
            changes.append(
                Change(
                    f"bring back {spec.name} {target.id}",
                    partial(self.restore, spec.name, target),
                    f"python -m stack down && python -m stack up  # local: {spec.name} {target.id}",
                )
            )
        commit = x.ctx.rules_from or (
            previous_dashboard.env.get("IMAGEFLOW_COMMIT", "") if previous_dashboard else ""
        )
        if commit:
            changes.append(
                Change(
                    f"reload firestore.rules of {commit}",
                    lambda: x.act(
                        f"load_rules (git show {commit}:firestore.rules)",
                        lambda: x.control.load_rules(git_rules(x.ctx.sources.rules_repo, commit)),
                    ),
                    f"git show {commit}:firestore.rules  # load into the Firestore emulator",
                )
            )
        else:
            x.record.warnings.append(
                "previous rules unknown (no IMAGEFLOW_COMMIT, no --rules-from): rules left as is"
            )
        if x.ctx.restore_backup:
            path = Path(x.ctx.restore_backup)
            if not path.is_absolute():
                path = BACKUPS / x.ctx.restore_backup
            changes.append(
                Change(
                    f"restore backup {path}",
                    lambda: x.act(f"import_data {path}", lambda: x.control.import_data(path)),
                    f"# local: StackControl().import_data({str(path)!r})",
                )
            )
            x.record.backup = str(path)
        return changes

    def restore(self, service: str, target: RevisionRecord) -> None:
        """Route to the previous revision if it still runs, else start it again with its configuration."""
        x = self.x
        if target.state in ("candidate", "live"):
            revision = x.act(f"route {service} -> {target.id}", lambda: x.control.route(service, target.id))
        else:
            overrides = {k: v for k, v in target.env.items() if v != "<secret>"}
            revision = x.act(
                f"redeploy {service} with the configuration of {target.id}",
                lambda: x.control.deploy_revision(service, overrides, route=True),
            )
        x.record.revisions_after[service] = revision.id


def run_local(verb: str, ctx: RunContext, record: RunRecord, shell: Shell) -> int:
    """Run a session on the local stack; e2e brings the stack up (and down) when none is running."""
    if shell.dry_run:
        executor = LocalExecutor(ctx, shell, record, None)
        code = runner.run_steps(plan.build(ctx, executor), executor.changes, record, shell)
        record.decision, record.reason = "planned", "dry run"
        return code
    # A stack of this run's own when none runs, so a run never stops (or deploys into) another's.
    own = REPO_ROOT / ".stack" / f"deploy-{ctx.run_id}" / "stack.json"
    path = choose_state_file(own=own, share_running=True)
    # The suite (a child process) and StackControl must all act on this same stack.
    os.environ[stack_state.STATE_ENV] = str(path)
    if verb != "e2e" and not stack_runner.healthy(path):
        print(
            f"error: no local stack is running ({path}); start it with `python -m stack up --detach`",
            file=sys.stderr,
        )
        record.decision, record.reason = "refused", "no local stack running"
        return runner.EXIT_BAD_INPUT
    try:
        with local_stack(path, say=shell.say) as control:
            executor = LocalExecutor(ctx, shell, record, control)
            if verb == "rollback":
                return runner.run_rollback(LocalRollback(executor).plan, record, shell)
            code = runner.run_steps(plan.build(ctx, executor), executor.changes, record, shell)
            if code == runner.EXIT_OK:
                executor.retire_previous()
                record.decision = "promoted"
                record.reason = (
                    "canary and bake passed, checklist passed"
                    if verb == "canary"
                    else "verification green, checklist passed"
                )
            return code
    except StackUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        record.decision, record.reason = "refused", str(exc)
        return runner.EXIT_BAD_INPUT
