"""The suite's own cost around one upload: the scenario's time minus the workflow's own latency.

    .venv/bin/python -m benchmarks.scenario_overhead [--runs 5] [--state-file PATH]

Runs the JPEG upload scenario (register, log in, upload in the browser, watch the workflow, check
every agent, the taps, the page) --runs times on the local stack. The scenario's time is pytest's
setup + call + teardown from its junit report; the workflow's latency is created -> completed of its
document, logged by the watcher (IMAGEFLOW_WATCH_LOG). Writes reports/benchmarks/scenario-overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import OUTPUT_DIR, write_json
from drills import suite
from drills.faults_catalogue import Selection
from drills.local_stack import StackUnavailable, choose_state_file, local_stack
from fixtures.firestore import WATCH_LOG_ENV

SCENARIO = Selection(
    paths=("tests/e2e/test_upload.py",), keep=("test_upload_jpeg_completes_with_every_agent_exactly_once",)
)


def scenario_seconds(junit: Path) -> float:
    """The scenario's setup + call + teardown time from a junit report of one test."""
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    return sum(float(case.get("time", "0")) for case in cases)


def one_run(state_file: Path, index: int) -> dict[str, Any]:
    """Run the scenario once; its time, the workflow's own latency and the difference."""
    output = OUTPUT_DIR / "scenario-overhead" / f"run-{index}"
    watch_log = output / "watch.jsonl"
    output.mkdir(parents=True, exist_ok=True)
    watch_log.unlink(missing_ok=True)
    os.environ[WATCH_LOG_ENV] = str(watch_log)
    try:
        run = suite.run(SCENARIO, state_file, output)
    finally:
        os.environ.pop(WATCH_LOG_ENV, None)
    if not run.green or not watch_log.exists():
        raise RuntimeError(f"run {index} was not green; see {output / 'pytest.log'}")
    workflows = [json.loads(line) for line in watch_log.read_text(encoding="utf-8").splitlines()]
    workflow_s = max(w["workflow_s"] for w in workflows)
    total_s = scenario_seconds(output / "junit.xml")
    return {
        "scenario_s": round(total_s, 2),
        "workflow_s": round(workflow_s, 3),
        "overhead_s": round(total_s - workflow_s, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario --runs times and write the medians; exit 1 when a run was red."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scenario_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        with local_stack(choose_state_file(args.state_file)) as control:
            runs = [one_run(control.state_path, i) for i in range(args.runs)]
    except (StackUnavailable, RuntimeError) as exc:
        print(f"scenario overhead: {exc}", file=sys.stderr)
        return 1
    result = {
        "scenario": SCENARIO.keep[0],
        "runs": runs,
        "median_scenario_s": statistics.median(r["scenario_s"] for r in runs),
        "median_workflow_s": statistics.median(r["workflow_s"] for r in runs),
        "median_overhead_s": statistics.median(r["overhead_s"] for r in runs),
    }
    write_json("scenario-overhead", result)
    print(
        f"upload scenario: median {result['median_scenario_s']}s, of which the workflow "
        f"{result['median_workflow_s']}s; suite overhead {result['median_overhead_s']}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
