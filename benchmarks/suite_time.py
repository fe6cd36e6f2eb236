"""Wall time of the verification suite on the running local stack: serial vs pytest-xdist `-n 2`.

    .venv/bin/python -m benchmarks.suite_time [--paths tests/e2e tests/rules] [--workers 2]

Runs the suite twice against the same stack (serial, then with --workers xdist workers), each in a
child pytest with its reports under reports/benchmarks/suite-time/, and records wall time, number
of tests and outcomes. Writes reports/benchmarks/suite-time.json and suite-time.png.
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
from drills import suite
from drills.faults_catalogue import SUITE_PATHS, Selection
from drills.local_stack import StackUnavailable, choose_state_file, local_stack


def timed_run(selection: Selection, state_file: Path, workers: int) -> dict[str, Any]:
    """One run of the selection; wall seconds, tests, outcomes and exit code."""
    label = f"n{workers}" if workers else "serial"
    run = suite.run(selection, state_file, OUTPUT_DIR / "suite-time" / label, workers=workers)
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
        "--paths", nargs="+", default=list(SUITE_PATHS), help="suite paths (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="xdist workers of the parallel run (default 2)"
    )
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    selection = Selection(paths=tuple(args.paths))
    if not suite.existing_paths(selection.paths):
        print(f"suite time: none of {', '.join(args.paths)} exists", file=sys.stderr)
        return 2
    try:
        with local_stack(choose_state_file(args.state_file)) as control:
            runs = [timed_run(selection, control.state_path, w) for w in (0, args.workers)]
    except StackUnavailable as exc:
        print(f"suite time: {exc}", file=sys.stderr)
        return 1
    serial, parallel = runs
    result = {
        "paths": suite.existing_paths(selection.paths),
        "serial": serial,
        "parallel": parallel,
        "speedup": round(serial["wall_s"] / parallel["wall_s"], 2) if parallel["wall_s"] else None,
    }
    path = write_json("suite-time", result)
    picture = plot.bars(
        OUTPUT_DIR / "suite-time.png",
        f"Suite wall time ({serial['tests']} tests)",
        {"serial": serial["wall_s"], f"-n {args.workers}": parallel["wall_s"]},
    )
    for run in runs:
        print(f"workers={run['workers']}: {run['wall_s']} s, {run['tests']} tests, {run['outcomes']}")
    print(f"speedup {result['speedup']}x; wrote {path}, {picture}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
