"""Run the sampled mutants against the release suite, inside a private work copy with its own stack.

    python -m drills.mutation.runner --report PATH [--count 60] [--seed 9] [--tests gate|area]
        [--budget-minutes N] [--timeout S] [--history PATH]

Refuses to run in a tree that is not a mutation work copy (see drills/mutation/__main__.py, which
makes one) or whose mutated files are not clean, and against any target but a local stack. Per
mutant: the mutated file is written, the services that load it get a new revision (routed, the
clean one kept running) and the file is restored as soon as they are ready, so the suite itself
always imports the original code; a firestore.rules mutant is loaded into the emulator and stays
in the file during the run (tests/rules test the file). Then the suite runs with -x, in an order
where -x meets a likely killer early (drills/mutation/order.py: the file's earlier killers from the
kill history, then the mutated part's tests, then the rest), traffic goes back to the clean
revisions, and the stack must answer healthy before the next mutant. Every test still runs against
a mutant that survives: "survived" is always against the whole selection. Each mutant's seconds are
split into phases (deploy, suite start-up, tests until the verdict, suite stop, restore, health).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drills import suite
from drills.faults_catalogue import ISOLATION_KEYWORDS, PIPELINE_SCENARIO, SUITE_PATHS, Selection
from drills.mutation import history, report
from drills.mutation.imports import services_loading
from drills.mutation.model import AREAS, Mutant
from drills.mutation.order import Plan
from drills.mutation.report import MutantResult
from drills.mutation.sample import (
    DEFAULT_COUNT,
    DEFAULT_SEED,
    EQUIVALENT_FILE,
    SampleError,
    choose,
    collect,
    fault_switch_summary,
    load_equivalent,
    run_order,
    stale_equivalents,
)
from stack import processes
from stack.control import ControlError, RevisionFailed, StackControl
from stack.control import _temporary_env as temporary_env
from stack.handle import StackUnavailable, local_stack
from stack.localsecrets import REDACTED
from stack.state import REPO_ROOT

MARKER = ".mutation-work-copy"
STATE_FILE = REPO_ROOT / ".stack" / "mutation" / "stack.json"
# Not .stack/mutation/runs: that is where the stack keeps its own run directories (and sweeps them).
RUNS_DIR = REPO_ROOT / ".stack" / "mutation" / "mutants"
# The suite's own compiled modules (and pytest's rewritten tests), kept between its runs.
SUITE_PYCACHE = REPO_ROOT / ".stack" / "mutation" / "pycache"
MUTANT_READY_TIMEOUT = 60.0
MUTANT_SUITE_TIMEOUT = 600.0
# Playwright traces are diagnosis, not verification: recording one per browser test is pure cost here
# (a kill is reported with its test and message; the fault drill and the gate keep their traces).
SUITE_OPTIONS = ("--tracing=off",)
FAULTS_ENV = "IMAGEFLOW_FAULTS"
# The tests of each part that -x should meet first (node id substrings), after the kill history's.
PART_TESTS = {
    "workflow": (
        PIPELINE_SCENARIO,
        "tests/e2e/test_agents.py",
        "tests/e2e/test_resilience.py",
        "tests/e2e/test_concurrency.py",
    ),
    "agents": (
        PIPELINE_SCENARIO,
        "tests/e2e/test_agents.py",
        "tests/e2e/test_push_security.py",
        "tests/e2e/test_resilience.py",
    ),
    "dashboard": (
        "tests/e2e/test_upload.py",
        "tests/e2e/test_login.py",
        "tests/e2e/test_registration.py",
        "tests/e2e/test_bad_uploads.py",
        "tests/e2e/test_security.py",
        "tests/e2e/test_isolation.py",
    ),
    "rules": ("tests/rules/", *ISOLATION_KEYWORDS),
}
ORDER_PLUGIN = "drills.mutation.order"


class MutationError(RuntimeError):
    """The run cannot start or go on (the message says why)."""


def _say(message: str) -> None:
    print(f"mutation: {message}", flush=True)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MutationError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()


def check_tree(root: Path, paths: Sequence[str]) -> str:
    """Refuse a tree that is no private work copy or has changes in files to mutate; returns its commit."""
    if not (root / MARKER).exists():
        raise MutationError(
            f"{root} is not a mutation work copy (no {MARKER}): mutants are never written into a shared "
            "tree; run `python -m drills.mutation`, which makes a private copy"
        )
    git_dir = Path(_git(root, "rev-parse", "--absolute-git-dir"))
    common = Path(_git(root, "rev-parse", "--git-common-dir"))
    common = common if common.is_absolute() else (root / common).resolve()
    if git_dir == common:
        raise MutationError(f"{root} is a repository's main working tree, not a private worktree")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    if dirty:
        raise MutationError(f"the files to mutate have changes in {root} (a mutant left behind?):\n{dirty}")
    return _git(root, "rev-parse", "--short", "HEAD")


def check_target() -> None:
    """Refuse any target but the local stack."""
    target = os.environ.get("IMAGEFLOW_TARGET", "local")
    if target != "local":
        raise MutationError(f"mutation testing runs only against the local stack, not {target!r}")


def ordered_e2e(root: Path) -> tuple[str, ...]:
    """tests/e2e's files in name order."""
    return tuple(sorted(str(p.relative_to(root)) for p in (root / "tests" / "e2e").glob("test_*.py")))


def gate_selection(root: Path, rules_first: bool = False) -> Selection:
    """The release suite, tests/e2e and tests/rules, in an order where -x meets a likely killer early."""
    e2e = ordered_e2e(root)
    paths = ["tests/rules", *e2e] if rules_first else [*e2e, "tests/rules"]
    return Selection(paths=tuple(paths)) if e2e else Selection(paths=SUITE_PATHS)


def area_selection(root: Path, mutant: Mutant) -> Selection:
    """The tests for a mutant's area (--tests area): faster, and said so in the report."""
    if mutant.area == "rules":
        return Selection(paths=("tests/rules", "tests/e2e"), keep=("tests/rules/", *ISOLATION_KEYWORDS))
    stem = mutant.path.rsplit("/", 1)[-1].removesuffix(".py")
    if mutant.area == "agents" and stem not in ("base", "__init__"):
        return Selection(paths=ordered_e2e(root), keep=(PIPELINE_SCENARIO,), keep_agents=(stem,))
    return Selection(paths=ordered_e2e(root))


def part_plan(mutant: Mutant, kills: history.History, seconds: dict[str, float] | None = None) -> Plan:
    """The order plan of one mutant: its file's earlier killers, then its part's tests (an agent's own),
    the quickest of the clean run first."""
    stem = mutant.path.rsplit("/", 1)[-1].removesuffix(".py")
    first = history.killers(kills, mutant.path)
    if mutant.area == "agents" and stem not in ("base", "__init__"):
        return Plan(first, (PIPELINE_SCENARIO,), (stem,), dict(seconds or {}))
    return Plan(first, PART_TESTS[mutant.area], (), dict(seconds or {}))


def seconds_per_test(run: suite.SuiteRun) -> dict[str, float]:
    """{node id: seconds of its setup, call and teardown} in a suite run (from its report log)."""
    spent: dict[str, float] = {}
    log = Path(run.output_dir) / "reports.jsonl"
    for raw in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        try:
            line = json.loads(raw)
            spent[line["nodeid"]] = round(spent.get(line["nodeid"], 0.0) + float(line["duration"]), 3)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a stopped run
    return spent


@dataclass
class Deployed:
    """What a mutant changed on the stack, so it can be put back."""

    rules: str | None = None
    clean: dict[str, str] = field(default_factory=dict)
    mutant: dict[str, str] = field(default_factory=dict)


def _overrides(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != FAULTS_ENV and v != REDACTED}


def _drop_bytecode(path: Path) -> None:
    """Remove cached bytecode of a file: a mutant's .pyc may match the restored source's size and second."""
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink(missing_ok=True)


class MutantRun:
    """Deploys one mutant on the stack and puts the clean state back."""

    def __init__(
        self, control: StackControl, root: Path, mutant: Mutant, source: str, services: list[str]
    ) -> None:
        self.control = control
        self.path = root / mutant.path
        self.mutant = mutant
        self.source = source
        self.services = services
        self.deployed = Deployed()

    def apply(self) -> None:
        """Write the mutant, deploy it; a Python file is restored once its services are ready."""
        mutated = self.mutant.mutated(self.source)
        if self.mutant.area == "rules":
            self.path.write_text(mutated, encoding="utf-8")
            self.deployed.rules = self.source
            self.control.load_rules(mutated)
            return
        for service in self.services:
            live = self.control.live_revision(service)
            if live is None:
                raise MutationError(f"{service} has no live revision")
            self.deployed.clean[service] = live.id
        _drop_bytecode(self.path)
        self.path.write_text(mutated, encoding="utf-8")
        try:
            self._deploy_all()
        finally:
            self.path.write_text(self.source, encoding="utf-8")
            _drop_bytecode(self.path)

    def _deploy_all(self) -> None:
        errors: dict[str, Exception] = {}

        def deploy(service: str) -> None:
            live = self.control.live_revision(service)
            try:
                revision = self.control.deploy_revision(
                    service,
                    _overrides(live.env if live else {}),
                    route=False,
                    ready_timeout=MUTANT_READY_TIMEOUT,
                )
                self.deployed.mutant[service] = revision.id
            except (RevisionFailed, ControlError) as exc:
                errors[service] = exc

        threads = [threading.Thread(target=deploy, args=(s,)) for s in self.services]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RevisionFailed(
                "; ".join(f"{s}: {str(e).splitlines()[0]}" for s, e in sorted(errors.items()))
            )
        for service, revision_id in sorted(self.deployed.mutant.items()):
            self.control.route(service, revision_id, stop_previous=False)

    def restore(self) -> list[str]:
        """Back to the clean file, rules and revisions; returns what could not be restored."""
        problems: list[str] = []
        if self.deployed.rules is not None:
            self.path.write_text(self.source, encoding="utf-8")
            try:
                self.control.load_rules(self.source)
            except ControlError as exc:
                problems.append(f"rules: {exc}")
        for service, revision_id in self.deployed.mutant.items():
            try:
                self.control.route(service, self.deployed.clean[service], stop_previous=True)
            except ControlError as exc:
                problems.append(f"{service}: {exc}")
            # A mutant revision that never took traffic (another service's deploy failed) is stopped too.
            left = self.control.service(service).find(revision_id)
            if left is not None and left.state not in ("stopped", "failed"):
                try:
                    self.control.stop_revision(service, revision_id)
                except ControlError as exc:
                    problems.append(f"{service}: {exc}")
        return problems


def healthy(control: StackControl) -> list[str]:
    """What does not answer: the router and every service's stable /readyz ([] when all do)."""
    state = control.state
    problems = []
    if processes.http_status(state.router_admin_url + "/healthz", timeout=5) != 200:
        problems.append("router")
    for name, service in state.services.items():
        status = processes.http_status(service.url + "/readyz", timeout=5)
        if status != 200:
            problems.append(f"{name} readyz {status or 'no answer'}")
    return problems


RunSuite = Callable[[Mutant, Path], suite.SuiteRun]


def judge(mutant: Mutant, run: suite.SuiteRun) -> tuple[str, list[str], str]:
    """(status, tests that failed, first failure message) of one suite run against a mutant.

    A run that hit its time bound is a timeout unless a test had already failed (the suite
    red-flagged the mutant; stopping took the rest of the time).
    """
    if run.failed:
        # With -x under xdist pytest exits 2 ("Interrupted: stopping after 1 failures"): still a kill.
        first = run.failed[0]
        return report.KILLED, run.failed, run.results[first].message
    if run.timed_out:
        return report.TIMEOUT, [], f"the suite did not finish within {run.finished_at - run.started_at:.0f} s"
    if run.green:
        return report.SURVIVED, [], ""
    return report.BROKEN, [], f"pytest exit {run.exit_code} with {len(run.results)} test reports"


def suite_phases(run: suite.SuiteRun) -> dict[str, float]:
    """A suite run's seconds: start-up (process, plugins, collection, workers), tests until the verdict
    (the first failure, or the last report of a green run), and stop (from the verdict to the exit)."""
    first_start: float | None = None
    last: float | None = None
    log = Path(run.output_dir) / "reports.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    for raw in lines:
        try:
            line = json.loads(raw)
            at, duration = float(line["at"]), float(line.get("duration", 0.0))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a stopped run
        first_start = at - duration if first_start is None else min(first_start, at - duration)
        last = at if last is None else max(last, at)
    if first_start is None or last is None:
        return {"suite_startup": round(run.finished_at - run.started_at, 1)}
    verdict = run.first_failure_at or last
    return {
        "suite_startup": round(max(first_start - run.started_at, 0.0), 1),
        "tests_to_verdict": round(max(verdict - first_start, 0.0), 1),
        "suite_stop": round(max(run.finished_at - verdict, 0.0), 1),
    }


def run_mutant(
    control: StackControl, root: Path, mutant: Mutant, source: str, services: list[str], run_suite: RunSuite
) -> MutantResult:
    """Deploy, run the suite, restore; the result of one mutant, with its seconds per phase."""
    started = time.monotonic()
    out = RUNS_DIR / mutant.id.replace(":", "_")
    result = _result(mutant, source, services, report.NOT_RUN)
    result.output_dir = str(out)
    deployment = MutantRun(control, root, mutant, source, services)
    phase_start = started

    def phase(name: str) -> None:
        nonlocal phase_start
        now = time.monotonic()
        result.phases[name] = round(now - phase_start, 1)
        phase_start = now

    try:
        try:
            deployment.apply()
        except (RevisionFailed, ControlError) as exc:
            # The release's own deploy step refuses a revision that never gets ready, or rules that do
            # not load (a broken router shows in the health check below: stack-broke, not killed).
            result.status, result.killed_by, result.message = (
                report.KILLED,
                ["deploy: the revision never got ready or the rules did not load"],
                str(exc)[:300],
            )
            return result
        finally:
            phase("deploy")
        run = run_suite(mutant, out)
        phase_start = time.monotonic()
        result.phases.update(suite_phases(run))
        result.status, result.killed_by, result.message = judge(mutant, run)
        result.tests = len(run.results)
    finally:
        problems = deployment.restore()
        phase("restore")
        problems += healthy(control)
        phase("health")
        result.seconds = round(time.monotonic() - started, 1)
        if problems:
            result.status = report.STACK_BROKE
            result.reason = "; ".join(problems)[:500]
    return result


def suite_bytecode(cache: Path = SUITE_PYCACHE) -> contextlib.AbstractContextManager[None]:
    """Let the suite's processes keep their bytecode in a private cache while it runs.

    Without it every run (and each xdist worker) compiles every module and rewrites every test
    again: seconds of each mutant's start-up. Safe: only the suite's processes use this cache, and
    they never import a mutant (the file is restored, its bytecode dropped, before the suite
    starts); the services keep the environment they were started with. (An empty
    PYTHONDONTWRITEBYTECODE is unset as far as Python is concerned.)
    """
    return temporary_env({"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(cache)})


def whole_suite(result: MutantResult, clean_tests: int | None) -> None:
    """A survivor is one only against every test of the clean run: fewer reported makes it broken."""
    if result.status == report.SURVIVED and clean_tests is not None and result.tests < clean_tests:
        result.status = report.BROKEN
        result.reason = f"green, but only {result.tests} of the clean run's {clean_tests} tests reported"


def suite_bound(requested: float | None, baseline_seconds: float | None) -> float:
    """One mutant's suite time bound: as asked, else twice the clean run plus a minute (at most 600 s)."""
    if requested is not None:
        return requested
    if baseline_seconds is None:
        return MUTANT_SUITE_TIMEOUT
    return min(MUTANT_SUITE_TIMEOUT, 2 * baseline_seconds + 60)


def out_of_budget(budget_minutes: float | None, elapsed: float, full_run: float | None) -> str | None:
    """Why no further mutant may start within the budget (None when one may).

    A mutant that survives runs the whole suite, so one starts only while a whole clean run fits.
    """
    if budget_minutes is None:
        return None
    left = budget_minutes * 60 - elapsed
    if left <= 0:
        return "the time budget was spent"
    if full_run is not None and left < full_run:
        return f"the {left:.0f} s left of the budget are less than one whole suite run ({full_run:.0f} s)"
    return None


def mutant_selection(root: Path, mutant: Mutant, tests: str) -> Selection:
    """The tests run against a mutant: the gate's suite (default), or its area's tests (--tests area)."""
    if tests == "area":
        return area_selection(root, mutant)
    return gate_selection(root, rules_first=mutant.area == "rules")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m drills.mutation.runner", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--report", type=Path, required=True, help="the JSON report to write (.md beside it)")
    parser.add_argument(
        "--count", type=int, default=DEFAULT_COUNT, help=f"mutants to sample (default {DEFAULT_COUNT})"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"sampling seed (default {DEFAULT_SEED})"
    )
    parser.add_argument("--areas", default=",".join(AREAS), help="comma list of areas to sample")
    parser.add_argument(
        "--tests",
        choices=("gate", "area"),
        default="gate",
        help="gate: tests/e2e + tests/rules per mutant; area: the area's tests",
    )
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per run")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up one mutant's suite run after this many s (default: 2 x the baseline + 60, at most 600)",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="start a mutant only while one whole suite run still fits in this many minutes",
    )
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT_FILE, help="mutants judged equivalent")
    parser.add_argument(
        "--history", type=Path, default=history.HISTORY, help="kill history: read if present, updated"
    )
    parser.add_argument("--label", default="", help="a name for the report")
    parser.add_argument("--command", default="", help="the command that started the run, for the report")
    parser.add_argument("--list", action="store_true", help="print the sample and exit (no stack)")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the gate's green run before the mutants"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sample; 0 when every mutant was judged, 1 when the run could not finish, 2 on refusal."""
    args = parse_args(argv)
    try:
        check_target()
        candidates = collect(REPO_ROOT)
        commit = check_tree(REPO_ROOT, sorted(candidates.sources))
        judged = load_equivalent(args.equivalent)
        sampled = choose(
            candidates, args.count, args.seed, [a.strip() for a in args.areas.split(",") if a.strip()]
        )
    except (MutationError, SampleError) as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for mutant in sampled:
            print(f"{mutant.id}  {mutant.description}")
        print(f"{len(sampled)} of {len(candidates.mutants)} candidates (seed {args.seed}, commit {commit})")
        return 0
    started, wall = datetime.now(UTC), time.monotonic()
    results: list[MutantResult] = []
    reasons: list[str] = []
    meta = {
        "label": args.label or f"commit {commit}",
        "commit": commit,
        "seed": args.seed,
        "count": args.count,
        "sampled": len(sampled),
        "candidates": len(candidates.mutants),
        "trivially_equivalent": candidates.trivially_equivalent,
        "invalid": candidates.invalid,
        "fault_switch_only": fault_switch_summary(candidates),
        "stale_equivalents": stale_equivalents(candidates, judged),
        "tests": "tests/e2e + tests/rules (the gate), -x"
        if args.tests == "gate"
        else "the area's tests, -x (--tests area)",
        "workers": args.workers,
        "budget_minutes": args.budget_minutes,
        "timeout": suite_bound(args.timeout, None),
        "command": args.command,
        "started_at": started.isoformat(timespec="seconds"),
    }

    def save() -> None:
        meta.update(
            seconds=round(time.monotonic() - wall, 1), reasons=reasons, complete=len(results) == len(sampled)
        )
        report.write(args.report, results, meta)

    kills = history.load(args.history)
    full_run: float | None = None
    clean_seconds: dict[str, float] = {}

    def run_suite(mutant: Mutant, out: Path) -> suite.SuiteRun:
        selection = mutant_selection(REPO_ROOT, mutant, args.tests)
        out.mkdir(parents=True, exist_ok=True)
        plan = part_plan(mutant, kills, clean_seconds).write(out / "order.json")
        # The first failure is the verdict: the run's process group is killed at once (a mutant can
        # keep other workers' tests and every teardown waiting for whole deadlines; the stack is private).
        extra = [
            "-x",
            "--drill-abort-on-failure",
            *SUITE_OPTIONS,
            "-p",
            ORDER_PLUGIN,
            "--mutation-order",
            str(plan),
        ]
        bound = suite_bound(args.timeout, full_run)
        with suite_bytecode():
            return suite.run(selection, STATE_FILE, out, workers=args.workers, timeout=bound, extra=extra)

    _say(
        f"{len(sampled)} mutants of {len(candidates.mutants)} candidates (seed {args.seed}, commit {commit})"
    )
    service_modules: dict[str, str] = {}
    try:
        with local_stack(STATE_FILE, say=_say) as control:
            service_modules = {s.name: s.module for s in control.manifest.services}
            if not args.no_baseline:
                with suite_bytecode():
                    baseline = suite.run(
                        gate_selection(REPO_ROOT),
                        STATE_FILE,
                        RUNS_DIR / "_baseline",
                        workers=args.workers,
                        # A red baseline ends the run: its first failure is all it needs to show.
                        extra=["-x", *SUITE_OPTIONS],
                    )
                full_run = round(baseline.finished_at - baseline.started_at, 1)
                clean_seconds = seconds_per_test(baseline)
                meta["baseline"] = {
                    "green": baseline.green,
                    "tests": len(baseline.results),
                    "failed": baseline.failed,
                    "seconds": full_run,
                }
                meta["timeout"] = suite_bound(args.timeout, full_run)
                _say(
                    f"baseline: {len(baseline.failed)} failed of {len(baseline.results)} "
                    f"in {round(baseline.finished_at - baseline.started_at)} s"
                )
                if not baseline.green:
                    red = ", ".join(baseline.failed) or f"pytest exit {baseline.exit_code}"
                    raise MutationError(
                        f"the suite is red on the clean stack ({red}): no mutant can be judged"
                    )
            for index, mutant in enumerate(run_order(sampled), start=1):
                source = candidates.sources[mutant.path]
                services = (
                    []
                    if mutant.area == "rules"
                    else services_loading(REPO_ROOT, service_modules, mutant.path)
                )
                if mutant.id in judged:
                    results.append(_result(mutant, source, services, report.EQUIVALENT, judged[mutant.id]))
                elif why := out_of_budget(args.budget_minutes, time.monotonic() - wall, full_run):
                    results.append(_result(mutant, source, services, report.NOT_RUN, why))
                else:
                    result = run_mutant(control, REPO_ROOT, mutant, source, services, run_suite)
                    # The clean run is the gate: an area run (--tests area) is smaller by design.
                    gate = args.tests == "gate" and "baseline" in meta
                    whole_suite(result, meta["baseline"]["tests"] if gate else None)
                    results.append(result)
                    if result.status == report.KILLED:
                        history.record(kills, mutant.path, result.killed_by)
                        history.save(kills, args.history)
                    _say(
                        f"[{index}/{len(sampled)}] {mutant.id}: {result.status} "
                        f"in {result.seconds} s {result.phases} {result.reason}"
                    )
                    if result.status == report.STACK_BROKE:
                        raise MutationError(f"the stack is not healthy after {mutant.id}: {result.reason}")
                save()
    except (MutationError, StackUnavailable, ControlError) as exc:
        reasons.append(str(exc))
        print(f"mutation: {exc}", file=sys.stderr)
    finally:
        done = {r.id for r in results}
        for mutant in sampled:
            if mutant.id not in done:
                source = candidates.sources[mutant.path]
                results.append(
                    _result(mutant, source, [], report.NOT_RUN, reasons[-1] if reasons else "interrupted")
                )
        save()
        _say(f"report: {args.report} ({args.report.with_suffix('.md')})")
        print(report.score_line(report.read(args.report)))
    return 1 if reasons else 0


def _result(mutant: Mutant, source: str, services: list[str], status: str, reason: str = "") -> MutantResult:
    """A mutant's result as it stands before (or without) a run: its diff, status and reason."""
    return MutantResult(
        id=mutant.id,
        area=mutant.area,
        path=mutant.path,
        line=mutant.line,
        operator=mutant.operator,
        description=mutant.description,
        status=status,
        diff=mutant.diff(source),
        services=services,
        reason=reason,
    )


if __name__ == "__main__":
    sys.exit(main())
