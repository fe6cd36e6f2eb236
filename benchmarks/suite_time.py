"""Wall time of the release suite on one local stack: serial against pytest-xdist workers, as ratios.

    .venv/bin/python -m benchmarks.suite_time [--paths tests/e2e] [--workers 2 [3 auto ...]]

Runs the suite serially, then with each --workers count (default: the gate's, deploy/verify.py),
one after the other against the same stack, each in a child pytest with its reports under
reports/benchmarks/suite-time/, and records wall time, number of tests, outcomes and the speed-up
over the serial run. Writes reports/benchmarks/suite-time.json and suite-time.png.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import plot
from benchmarks.harness import OUTPUT_DIR, write_json
from deploy.verify import DEFAULT_WORKERS
from drills import suite
from drills.faults_catalogue import Selection
from stack.handle import StackUnavailable, drill_state_file, local_stack

# What the gate verifies with (deploy/verify.py suite_command), and the wall time it should take.
RELEASE_SUITE = "tests/e2e"
WALL_GOAL_S = 30.0


def timed_run(selection: Selection, state_file: Path, workers: str) -> dict[str, Any]:
    """One run of the selection on workers xdist workers ("0": serial); wall seconds, tests, outcomes."""
    serial = workers == "0"
    label = "serial" if serial else f"n{workers}"
    # "-n 0" said outright: without a -n the test command runs on its default workers.
    extra = ("-n", workers)
    run = suite.run(selection, state_file, OUTPUT_DIR / "suite-time" / label, extra=extra)
    outcomes = Counter(r.outcome for r in run.results.values())
    return {
        "workers": workers,
        "wall_s": round(run.finished_at - run.started_at, 1),
        "tests": len(run.results),
        "outcomes": dict(outcomes),
        "failed": run.failed,
        "exit_code": run.exit_code,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Time both runs, write JSON and PNG; exit 1 when either run was not green."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite_time", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--paths", nargs="+", default=[RELEASE_SUITE], help="suite paths (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        nargs="+",
        default=[DEFAULT_WORKERS],
        help="xdist worker counts of the parallel runs, e.g. 2 3 auto (default: the gate's, %(default)s)",
    )
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    selection = Selection(paths=tuple(args.paths))
    if not suite.existing_paths(selection.paths):
        print(f"suite time: none of {', '.join(args.paths)} exists", file=sys.stderr)
        return 2
    counts = list(dict.fromkeys(w for w in args.workers if w != "0"))
    try:
        with local_stack(drill_state_file(args.state_file)) as control:
            serial = timed_run(selection, control.state_path, "0")
            parallel = [timed_run(selection, control.state_path, w) for w in counts]
    except StackUnavailable as exc:
        print(f"suite time: {exc}", file=sys.stderr)
        return 1
    for run in parallel:
        run["speedup"] = round(serial["wall_s"] / run["wall_s"], 2) if run["wall_s"] else None
    fastest = min(parallel, key=lambda r: r["wall_s"], default=None)
    result = {
        "paths": suite.existing_paths(selection.paths),
        "serial": serial,
        "parallel": parallel,
        "gate_workers": DEFAULT_WORKERS,
        "fastest_workers": fastest["workers"] if fastest else None,
        "goal_wall_s": WALL_GOAL_S,
    }
    path = write_json("suite-time", result)
    picture = plot.bars(
        OUTPUT_DIR / "suite-time.png",
        f"Release suite wall time ({serial['tests']} tests)",
        {"serial": serial["wall_s"], **{f"-n {r['workers']}": r["wall_s"] for r in parallel}},
    )
    print(f"serial: {serial['wall_s']} s, {serial['tests']} tests, {serial['outcomes']}")
    for run in parallel:
        print(
            f"-n {run['workers']}: {run['wall_s']} s, {run['tests']} tests, {run['outcomes']}, "
            f"{run['speedup']}x the serial speed"
        )
    print(f"goal <= {WALL_GOAL_S} s; wrote {path}, {picture}")
    return 0 if all(r["exit_code"] == 0 for r in [serial, *parallel]) else 1


if __name__ == "__main__":
    sys.exit(main())
