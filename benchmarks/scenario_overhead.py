"""The suite's own cost around one upload: the scenario's time minus the workflow's own latency.

    .venv/bin/python -m benchmarks.scenario_overhead [--runs 3] [--state-file PATH]

Runs the JPEG upload scenario (log in, upload in the browser, watch the workflow, check every agent,
the taps, the page) --runs times in each login mode, the modes alternating so both meet the same
stack: the page logged in through the login form (--login-through-ui) and the session minted over
HTTP with its cookie injected (fixtures/sessions.py, the suite's default). Each run is one child
pytest whose first test is a warm-up (one format upload), so the run's one-off costs (browser
launch, taps, the worker's cookie-shape login) land there and the scenario is timed as it runs
inside a suite. The scenario's time is pytest's setup + call + teardown from its junit report; the
workflow's latency is created -> completed of its document, logged by the watcher
(IMAGEFLOW_WATCH_LOG; the scenario's is the last line, as it runs last). Writes
reports/benchmarks/scenario-overhead.json and scenario-overhead.png.
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

from benchmarks import plot
from benchmarks.harness import OUTPUT_DIR, write_json
from drills import suite
from drills.faults_catalogue import Selection
from fixtures.firestore import WATCH_LOG_ENV
from fixtures.sessions import UI_LOGIN_OPTION
from stack.handle import StackUnavailable, drill_state_file, local_stack

UPLOADS = "tests/e2e/test_upload.py"
SCENARIO_NAME = "test_upload_jpeg_completes_with_every_agent_exactly_once"
WARM_UP = "test_upload_of_format_completes_with_every_agent_exactly_once"
# pytest runs its arguments in the order given: the warm-up first, then the scenario.
SCENARIO = Selection(
    paths=(f"{UPLOADS}::{WARM_UP}", f"{UPLOADS}::{SCENARIO_NAME}"), keep=("tiny_png", SCENARIO_NAME)
)
# Login modes compared, with the pytest arguments that choose them.
MODES: dict[str, tuple[str, ...]] = {"ui_login": (UI_LOGIN_OPTION,), "injected_session": ()}
# The goal: the suite's own cost of the upload scenario beyond the workflow (seconds).
OVERHEAD_GOAL_S = 1.0


def scenario_seconds(junit: Path, name: str = SCENARIO_NAME) -> float:
    """The setup + call + teardown time of the junit test cases named name (any parameters)."""
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    return sum(float(case.get("time", "0")) for case in cases if case.get("name", "").startswith(name))


def one_run(state_file: Path, mode: str, index: int) -> dict[str, Any]:
    """Run warm-up and scenario once in mode; the scenario's time, the workflow's latency, the difference."""
    output = OUTPUT_DIR / "scenario-overhead" / f"{mode}-{index}"
    watch_log = output / "watch.jsonl"
    output.mkdir(parents=True, exist_ok=True)
    watch_log.unlink(missing_ok=True)
    os.environ[WATCH_LOG_ENV] = str(watch_log)
    try:
        run = suite.run(SCENARIO, state_file, output, extra=MODES[mode])
    finally:
        os.environ.pop(WATCH_LOG_ENV, None)
    if not run.green or len(run.results) != len(SCENARIO.keep) or not watch_log.exists():
        raise RuntimeError(f"{mode} run {index} was not green; see {output / 'pytest.log'}")
    workflows = [json.loads(line) for line in watch_log.read_text(encoding="utf-8").splitlines()]
    workflow_s = float(workflows[-1]["workflow_s"])
    total_s = scenario_seconds(output / "junit.xml")
    return {
        "scenario_s": round(total_s, 2),
        "workflow_s": round(workflow_s, 3),
        "overhead_s": round(total_s - workflow_s, 2),
    }


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The runs and the median of each figure."""
    return {
        "runs": list(runs),
        **{
            f"median_{key}": statistics.median(r[key] for r in runs)
            for key in ("scenario_s", "workflow_s", "overhead_s")
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario --runs times per login mode and write the medians and ratios; exit 1 when red."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scenario_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    try:
        with local_stack(drill_state_file(args.state_file)) as control:
            for index in range(args.runs):
                for mode in MODES:
                    runs[mode].append(one_run(control.state_path, mode, index))
    except (StackUnavailable, RuntimeError) as exc:
        print(f"scenario overhead: {exc}", file=sys.stderr)
        return 1
    modes = {mode: medians(mode_runs) for mode, mode_runs in runs.items()}
    ui, injected = modes["ui_login"], modes["injected_session"]
    result = {
        "scenario": SCENARIO_NAME,
        "warm_up": f"{WARM_UP}[tiny_png]",
        "modes": modes,
        "overhead_ratio_ui_to_injected": round(ui["median_overhead_s"] / injected["median_overhead_s"], 2)
        if injected["median_overhead_s"] > 0
        else None,
        "scenario_ratio_ui_to_injected": round(ui["median_scenario_s"] / injected["median_scenario_s"], 2),
        "overhead_goal_s": OVERHEAD_GOAL_S,
        "goal_met": injected["median_overhead_s"] <= OVERHEAD_GOAL_S,
    }
    path = write_json("scenario-overhead", result)
    picture = plot.bars(
        OUTPUT_DIR / "scenario-overhead.png",
        f"Upload scenario: suite overhead beyond the workflow (median of {args.runs})",
        {mode: m["median_overhead_s"] for mode, m in modes.items()},
    )
    for mode, m in modes.items():
        print(
            f"{mode}: upload scenario median {m['median_scenario_s']}s, of which the workflow "
            f"{m['median_workflow_s']}s; suite overhead {m['median_overhead_s']}s"
        )
    print(
        f"overhead UI login / injected session: {result['overhead_ratio_ui_to_injected']}x; "
        f"goal <= {OVERHEAD_GOAL_S}s {'met' if result['goal_met'] else 'NOT met'}; wrote {path}, {picture}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
