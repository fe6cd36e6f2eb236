"""Cold start of the whole local stack: `stack up` until every service is live, then `stack down`.

    .venv/bin/python -m benchmarks.stack_start [--runs 3]

Each run starts a complete stack (emulators, router, infrastructure, one revision per service) on
its own state file, times it until the start returns (every revision ready and routed), then stops
it all and times that too. The median of --runs is reported. Writes
reports/benchmarks/stack-start.json and stack-start.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import plot
from benchmarks.harness import OUTPUT_DIR, write_json
from stack import runner
from stack.state import REPO_ROOT

BENCH_STATE_FILE = REPO_ROOT / ".stack" / "bench-start" / "stack.json"


def one_cold_start(state_file: Path) -> dict[str, float]:
    """Start and stop one whole stack; seconds for each."""
    began = time.monotonic()
    started = runner.start(state_file, say=lambda line: None)
    up = time.monotonic() - began
    began = time.monotonic()
    started.stop()
    down = time.monotonic() - began
    return {"up_s": round(up, 2), "down_s": round(down, 2)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cold starts, write JSON and PNG."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stack_start", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="cold starts to take the median of (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        print("stack start: --runs must be at least 1", file=sys.stderr)
        return 2
    if runner.healthy(BENCH_STATE_FILE):
        print(f"stack start: a stack already runs on {BENCH_STATE_FILE}; stop it first", file=sys.stderr)
        return 1
    runs: list[dict[str, float]] = []
    try:
        for index in range(args.runs):
            runs.append(one_cold_start(BENCH_STATE_FILE))
            print(f"run {index + 1}: up {runs[-1]['up_s']} s, down {runs[-1]['down_s']} s", flush=True)
    except runner.StackError as exc:
        print(f"stack start: run {len(runs) + 1} failed: {exc}", file=sys.stderr)
        return 1
    result = {
        "runs": runs,
        "median_up_s": round(statistics.median(r["up_s"] for r in runs), 2),
        "median_down_s": round(statistics.median(r["down_s"] for r in runs), 2),
        "note": "cold start: emulators, router, topics/subscriptions/bucket, one ready revision per service",
    }
    path = write_json("stack-start", result)
    bars = {f"up #{i + 1}": r["up_s"] for i, r in enumerate(runs)} | {
        f"down #{i + 1}": r["down_s"] for i, r in enumerate(runs)
    }
    picture = plot.bars(
        OUTPUT_DIR / "stack-start.png", f"Local stack cold start (median up {result['median_up_s']} s)", bars
    )
    print(
        f"median up {result['median_up_s']} s, median down {result['median_down_s']} s; "
        f"wrote {path}, {picture}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
