"""The fault drill: deploy each fault on the local stack, run the suite, roll back, prove green again.

    python -m drills.fault_drill [--faults a,b] [--list] [--state-file PATH] [--workers N]

For each fault: deploy a revision with the fault switched on (or load the broken rules file), run
the scenarios that must catch it, record which tests failed and how long after the deploy the first
failure was reported, roll back (a new clean revision with the previous revision's configuration,
or the good firestore.rules), and run the same scenarios again, which must be green. Before the
first fault the union of the selections runs once on the clean stack (the baseline; a test that
fails there never counts as a catch). Writes reports/fault-drill.json and the same table to the
terminal; exits 1 when a fault went uncaught or the suite was red on a clean revision, 2 on bad
usage.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from drills import report, suite
from drills.faults_catalogue import FAULTS_ENV, DrillFault, Selection, build
from drills.mutation import report as mutation_report
from drills.report import DrillRow
from imageflow import manifest as manifest_module
from stack.control import ControlError, RevisionFailed, StackControl
from stack.handle import StackUnavailable, drill_state_file, local_stack
from stack.localsecrets import REDACTED
from stack.state import REPO_ROOT

REPORT_PATH = REPO_ROOT / "reports" / "fault-drill.json"
RUNS_DIR = REPO_ROOT / "reports" / "fault-drill"
GOOD_RULES = REPO_ROOT / "firestore.rules"


class DrillError(RuntimeError):
    """The drill cannot go on (the message says why); the stack was left clean where possible."""


def _say(message: str) -> None:
    print(f"drill: {message}", flush=True)


def choose(catalogue: Mapping[str, DrillFault], wanted: str | None) -> list[DrillFault]:
    """The faults named in --faults (comma list), or all; DrillError naming any unknown one."""
    if not wanted:
        return list(catalogue.values())
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise DrillError(f"unknown fault(s): {', '.join(unknown)} (see --list)")
    return [catalogue[n] for n in dict.fromkeys(names)]


def listing(faults: Sequence[DrillFault]) -> str:
    """The catalogue as a table for --list: name, part, how deployed, what should catch it."""
    rows = [("fault", "part", "deployed as", "expected to be caught by")]
    rows += [(f.name, f.part, f.deploy_summary, "; ".join(f.expected)) for f in faults]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]) for r in rows]
    return "\n".join(lines) + f"\n{len(faults)} faults"


def clean_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """A revision's overrides without fault switches and without redacted secrets (never re-sent)."""
    return {k: v for k, v in env.items() if k != FAULTS_ENV and v != REDACTED}


def check_clean(control: StackControl, faults: Sequence[DrillFault]) -> None:
    """Refuse to start when a live revision the drill touches already runs with a fault switch."""
    for service in sorted({f.service for f in faults if f.service}):
        live = control.live_revision(service)
        if live is None:
            raise DrillError(f"{service} has no live revision on the stack")
        if live.env.get(FAULTS_ENV):
            raise DrillError(
                f"{service} already runs {live.id} with {FAULTS_ENV}={live.env[FAULTS_ENV]}: "
                "roll it back before drilling"
            )


class Deployment:
    """Deploys one fault on the stack and rolls it back to the clean configuration it replaced."""

    def __init__(self, control: StackControl, fault: DrillFault) -> None:
        self.control = control
        self.fault = fault
        self.previous: dict[str, str] = {}

    def apply(self) -> str:
        """Deploy the fault; returns what now runs (revision id or rules file)."""
        if self.fault.rules_file is not None:
            self.control.load_rules(self.fault.rules_file.read_text(encoding="utf-8"))
            return self.fault.rules_file.name
        assert self.fault.service is not None  # a fault is a rules file or a service revision
        live = self.control.live_revision(self.fault.service)
        self.previous = clean_overrides(live.env if live else {})
        revision = self.control.deploy_revision(
            self.fault.service, {**self.previous, **self.fault.env}, route=True
        )
        return revision.id

    def rollback(self) -> str:
        """Put the clean configuration back (a new revision of it, or the good rules)."""
        if self.fault.rules_file is not None:
            self.control.load_rules(GOOD_RULES.read_text(encoding="utf-8"))
            return GOOD_RULES.name
        assert self.fault.service is not None
        return self.control.deploy_revision(self.fault.service, self.previous, route=True).id


RunSuite = Callable[[Selection, Path], suite.SuiteRun]


def drill_one(
    control: StackControl, fault: DrillFault, run_suite: RunSuite, baseline_failures: Sequence[str]
) -> DrillRow:
    """Deploy one fault, run its scenarios, roll back, run them again on the clean revision."""
    out = RUNS_DIR / fault.name
    deployment = Deployment(control, fault)
    _say(f"{fault.name}: deploying ({fault.deploy_summary})")
    try:
        what = deployment.apply()
    except (RevisionFailed, ControlError) as exc:
        # The faulty revision never became ready: the deploy refused it, the suite saw nothing.
        _say(f"{fault.name}: deploy failed: {exc}")
        with_rollback = _rollback(deployment)
        return DrillRow(
            fault.name,
            fault.part,
            False,
            expected=list(fault.expected),
            error=f"deploy failed: {exc}{with_rollback}",
        )
    deployed_at = time.time()
    _say(f"{fault.name}: {what} live; running {fault.selection.describe()}")
    try:
        under_fault = run_suite(fault.selection, out / "with-fault")
    finally:
        rollback_error = _rollback(deployment)
    failed, ran = len(under_fault.failed), len(under_fault.results)
    _say(f"{fault.name}: {failed} failed of {ran}; rolled back{rollback_error}")
    if rollback_error:
        raise DrillError(f"{fault.name}: rollback failed{rollback_error}; the stack is not clean")
    clean = run_suite(fault.selection, out / "clean-after")
    row = report.judge(
        fault.name, fault.part, fault.expected, deployed_at, under_fault, clean, baseline_failures
    )
    _say(f"{fault.name}: caught={row.caught} in {row.seconds_to_detect} s; clean after: {row.clean_after}")
    return row


def _rollback(deployment: Deployment) -> str:
    """Roll back; "" when it worked, else ": <why>" (the caller decides whether to go on)."""
    try:
        deployment.rollback()
    except (RevisionFailed, ControlError, OSError) as exc:
        return f": rollback failed: {exc}"
    return ""


def baseline_selection(faults: Sequence[DrillFault]) -> Selection:
    """The union of the faults' selections: what must be green on the clean stack first."""
    return functools.reduce(lambda a, b: a.union(b), (f.selection for f in faults))


def _write(
    path: Path,
    rows: Sequence[DrillRow],
    baseline: suite.SuiteRun | None,
    faults: Sequence[DrillFault],
    started: datetime,
    state_file: Path,
    workers: int,
) -> Path:
    """Write the report as it stands; ok only once every chosen fault has its row."""
    ok, reasons = report.verdict(rows, baseline)
    missing = [f.name for f in faults if f.name not in {r.fault for r in rows}]
    if missing:
        reasons = [*reasons, f"not drilled (yet): {', '.join(missing)}"]
    meta = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": not missing,
        "state_file": str(state_file),
        "workers": workers,
    }
    if baseline is None and path.exists():
        # An --update run without its own baseline keeps the one the earlier rows were judged with.
        earlier = report.read_document(path)
        meta["earlier_baseline"] = earlier.get("baseline") or earlier.get("earlier_baseline")
    verdict = ok and not missing
    return report.write(path, rows, baseline, verdict, reasons, meta, mutation_report.latest_summary())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m drills.fault_drill", description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=None, help="comma list of faults to drill (default: all)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--state-file", type=Path, default=None, help="the stack to drill (default: its own)")
    parser.add_argument(
        "--workers", type=int, default=0, help="pytest-xdist workers per suite run (0: serial)"
    )
    parser.add_argument("--report", type=Path, default=REPORT_PATH, help=f"default: {REPORT_PATH}")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the report's rows of faults not drilled now (re-drill a few, judge them all)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the clean run before the first fault"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=suite.RUN_TIMEOUT_SECONDS,
        help="give up one suite run after this many s",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the drill; 0 only when every fault was caught and every clean run was green."""
    args = parse_args(argv)
    catalogue = build(manifest_module.default())
    try:
        faults = choose(catalogue, args.faults)
    except DrillError as exc:
        print(f"fault drill: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print(listing(faults))
        return 0
    state_file = drill_state_file(args.state_file)

    def run_suite(selection: Selection, out: Path) -> suite.SuiteRun:
        run = suite.run(selection, state_file, out, workers=args.workers, timeout=args.timeout)
        if run.broken and not run.timed_out:
            # pytest did not even run the tests (e.g. a module being edited failed to import):
            # that says nothing about the fault, so the selection gets one more chance.
            _say(f"pytest could not run the selection (exit {run.exit_code}); once more ({out}/pytest.log)")
            (out / "pytest.log").replace(out / "pytest-broken.log")
            run = suite.run(selection, state_file, out, workers=args.workers, timeout=args.timeout)
        return run

    previous = report.read_rows(args.report) if args.update else []
    drilled = {f.name for f in faults}
    judged = list(catalogue.values()) if args.update else faults
    rows: list[DrillRow] = []

    def merged() -> list[DrillRow]:
        """This run's rows, plus (with --update) the earlier rows of faults not drilled again."""
        if not args.update:
            return rows
        by_name = {r.fault: r for r in previous if r.fault not in drilled} | {r.fault: r for r in rows}
        return [by_name[name] for name in catalogue if name in by_name]

    baseline: suite.SuiteRun | None = None
    started = datetime.now(UTC)
    try:
        with local_stack(state_file, say=_say) as control:
            check_clean(control, faults)
            if not args.no_baseline:
                selection = baseline_selection(faults)
                _say(f"baseline on the clean stack: {selection.describe()}")
                baseline = run_suite(selection, RUNS_DIR / "_baseline")
                _say(f"baseline: {len(baseline.failed)} failed of {len(baseline.results)}")
            if baseline is not None and not baseline.green:
                # Go on (the verdict is already red): a test red without any fault is just never
                # counted as having caught one.
                _say("the suite is red on the clean stack; its failures will not count as catches")
            failing = baseline.failed if baseline is not None else []
            for fault in faults:
                rows.append(drill_one(control, fault, run_suite, failing))
                # Written after every fault, so an interrupted drill still leaves its evidence.
                _write(args.report, merged(), baseline, judged, started, state_file, args.workers)
    except (DrillError, StackUnavailable) as exc:
        print(f"fault drill: {exc}", file=sys.stderr)
        return 1
    finally:
        final = merged()
        ok, reasons = report.verdict(final, baseline)
        ok = ok and {r.fault for r in final} >= {f.name for f in judged}
        if rows or baseline is not None:
            path = _write(args.report, final, baseline, judged, started, state_file, args.workers)
            print(report.table(final))
            print(f"report: {path}")
            mutation = report.read_document(path).get("mutation")
            if mutation:
                print(mutation["line"])
    for reason in reasons:
        print(f"fault drill: {reason}", file=sys.stderr)
    caught = sum(1 for r in final if r.caught)
    print(f"fault drill: {caught}/{len(judged)} faults caught; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
