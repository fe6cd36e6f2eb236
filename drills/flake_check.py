"""The flake check: the whole suite N times on one local stack; per-test pass rates and flaky tests.

    python -m drills.flake_check --runs N [--paths tests/e2e tests/rules] [--workers 2]

A test is flaky when it both passed and failed across the runs (the same code, the same stack).
Writes reports/flake-check.json and a table to the terminal; exits 1 when any test was flaky or
failed in every run, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from drills import suite
from drills.faults_catalogue import SUITE_PATHS, Selection
from drills.report import test_name
from stack.handle import StackUnavailable, drill_state_file, local_stack
from stack.state import REPO_ROOT

REPORT_PATH = REPO_ROOT / "reports" / "flake-check.json"


def runs_dir(report: Path) -> Path:
    """Where each run's logs go: beside the report, named after it (reports/flake-check/ by default)."""
    return report.with_suffix("")


@dataclass
class TestRecord:
    """One test over every run: how often it passed, failed or was skipped, and its failure lines."""

    __test__ = False  # a record, not a pytest test class

    nodeid: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    messages: tuple[str, ...] = ()

    @property
    def ran(self) -> int:
        """Runs where the test ran (passed or failed)."""
        return self.passed + self.failed

    @property
    def pass_rate(self) -> float | None:
        """passed / ran (None when it never ran)."""
        return round(self.passed / self.ran, 3) if self.ran else None

    @property
    def flaky(self) -> bool:
        """Both passed and failed."""
        return self.passed > 0 and self.failed > 0

    @property
    def broken(self) -> bool:
        """Failed every time it ran."""
        return self.failed > 0 and self.passed == 0


def tally(runs: Sequence[suite.SuiteRun]) -> dict[str, TestRecord]:
    """Fold the runs into one record per test (missing from a run = not counted for that run)."""
    records: dict[str, TestRecord] = {}
    for run in runs:
        for nodeid, outcome in run.results.items():
            record = records.setdefault(nodeid, TestRecord(nodeid))
            if outcome.outcome == "passed":
                record.passed += 1
            elif outcome.outcome == "failed":
                record.failed += 1
                if outcome.message and outcome.message not in record.messages:
                    record.messages = (*record.messages, outcome.message)
            else:
                record.skipped += 1
    return records


def table(records: dict[str, TestRecord], runs: int, only_unstable: bool = False) -> str:
    """Per test: passed/failed/skipped counts, pass rate and a verdict word; unstable ones first."""
    chosen = [r for r in records.values() if not only_unstable or r.flaky or r.broken]
    chosen.sort(key=lambda r: (not r.flaky, not r.broken, r.nodeid))
    header = ("test", "passed", "failed", "skipped", "pass rate", "verdict")
    body = [
        (
            test_name(r.nodeid),
            str(r.passed),
            str(r.failed),
            str(r.skipped),
            "-" if r.pass_rate is None else f"{r.pass_rate:.0%}",
            "FLAKY" if r.flaky else "BROKEN" if r.broken else "stable",
        )
        for r in chosen
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    flaky = sum(1 for r in records.values() if r.flaky)
    broken = sum(1 for r in records.values() if r.broken)
    lines.append(f"{len(records)} tests over {runs} runs: {flaky} flaky, {broken} failing every run")
    return "\n".join(lines)


def write(
    path: Path, records: dict[str, TestRecord], runs: Sequence[suite.SuiteRun], meta: dict[str, object]
) -> Path:
    """Write reports/flake-check.json: per-run summaries and per-test pass rates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **meta,
        "completed_runs": len(runs),
        "runs": [
            {
                "exit_code": r.exit_code,
                "seconds": round(r.finished_at - r.started_at, 1),
                "tests": len(r.results),
                "failed": r.failed,
            }
            for r in runs
        ],
        "flaky": sorted(n for n, r in records.items() if r.flaky),
        "failing_every_run": sorted(n for n, r in records.items() if r.broken),
        "tests": {n: {**asdict(r), "pass_rate": r.pass_rate} for n, r in sorted(records.items())},
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite N times and report; 0 only when every test was stable and passing."""
    parser = argparse.ArgumentParser(prog="python -m drills.flake_check", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many times to run the suite (default 3)")
    parser.add_argument(
        "--paths", nargs="+", default=list(SUITE_PATHS), help="suite paths (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=0, help="pytest-xdist workers per run (0: serial)")
    parser.add_argument(
        "--state-file", type=Path, default=None, help="the stack to use (default: the drills' own)"
    )
    parser.add_argument("--report", type=Path, default=REPORT_PATH)
    parser.add_argument("--timeout", type=float, default=suite.RUN_TIMEOUT_SECONDS)
    args = parser.parse_args(argv)
    if args.runs < 2:
        print("flake check: --runs must be at least 2 (one run cannot show a flake)", file=sys.stderr)
        return 2
    selection = Selection(paths=tuple(args.paths))
    if not suite.existing_paths(selection.paths):
        print(f"flake check: none of {', '.join(args.paths)} exists", file=sys.stderr)
        return 2
    state_file = drill_state_file(args.state_file)
    runs: list[suite.SuiteRun] = []
    started = datetime.now(UTC)
    meta: dict[str, object] = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": None,
        "paths": suite.existing_paths(selection.paths),
        "workers": args.workers,
        "requested_runs": args.runs,
    }
    try:
        with local_stack(state_file) as control:
            for index in range(args.runs):
                run = suite.run(
                    selection,
                    control.state_path,
                    runs_dir(args.report) / f"run-{index + 1:02d}",
                    workers=args.workers,
                    timeout=args.timeout,
                )
                runs.append(run)
                # Written after every run: a long check stopped half-way still leaves its figures.
                write(args.report, tally(runs), runs, meta)
                seconds = run.finished_at - run.started_at
                failed, ran = len(run.failed), len(run.results)
                print(
                    f"flake check: run {index + 1}/{args.runs}: {failed} failed of {ran} in {seconds:.0f} s"
                )
    except StackUnavailable as exc:
        print(f"flake check: {exc}", file=sys.stderr)
        return 1
    records = tally(runs)
    meta["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = write(args.report, records, runs, meta)
    print(table(records, len(runs)))
    print(f"report: {path}")
    unstable = any(r.flaky or r.broken for r in records.values())
    broken_runs = [r for r in runs if r.broken]
    if broken_runs:
        print(
            f"flake check: {len(broken_runs)} run(s) did not finish (pytest error or timeout)",
            file=sys.stderr,
        )
    return 1 if unstable or broken_runs or not records else 0


if __name__ == "__main__":
    sys.exit(main())
