"""Time to red: how soon the watcher reports each fault kind of one agent, against that agent's deadline.

    .venv/bin/python -m benchmarks.time_to_red [--agent thumbnailer] [--faults never_fires,errors,...]
        [--uploads 3] [--state-file PATH]

For each fault kind (never_fires, errors, slow, wrong_output by default) the drill's revision with
<agent>.<fault> switched on is deployed on the local stack (drills.fault_drill.Deployment, rolled
back afterwards), one user uploads --uploads photos through the dashboard API, and two watchers wait
on each workflow side by side: "after" holds every agent to its own deadline (the suite's watcher),
"before" is bounded by the workflow deadline alone (agent_deadlines=False).
Time to red: from the upload's start to the watch returning a verdict the pipeline scenario fails
on (not completed, or a problem in the diagnosis). Also given: from the agent's inputs being ready
(the document's times) to red. Goal: every fault red within the agent's deadline + 5 s of the
upload. Writes reports/benchmarks/time-to-red.json and time-to-red.png; exit 1 when a fault was
never red, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore

from benchmarks import plot
from benchmarks.harness import (
    OUTPUT_DIR,
    BenchmarkError,
    DashboardUser,
    bench_email,
    bench_password,
    photo_jpeg,
    write_json,
)
from drills.fault_drill import Deployment, DrillError, check_clean
from drills.faults_catalogue import build
from fixtures.diagnosis import inputs_ready_at
from fixtures.firestore import WatchResult, WorkflowWatcher
from imageflow import manifest as manifest_module
from imageflow.manifest import Manifest
from imageflow.workflow import now
from stack.control import ControlError, RevisionFailed, StackControl
from stack.handle import StackUnavailable, drill_state_file, local_stack
from stack.load_users import StackInfo, remove_users

FAULT_KINDS = ("never_fires", "errors", "slow", "wrong_output")
DEFAULT_AGENT = "thumbnailer"
# Goals: every fault red within the failing agent's deadline plus GOAL_SLACK, and red at most
# MEDIAN_GOAL after the moment it could first be known, in the median over the fault kinds (an agent
# that never fires or is slow can only be called red once its deadline has passed: measured from the
# upload, such faults could never meet a median of a few seconds, however soon the watcher reports).
GOAL_SLACK_SECONDS = 5.0
MEDIAN_GOAL_SECONDS = 5.0
WATCHERS = ("before", "after")


@dataclass
class Sample:
    """One workflow under one fault, as each watcher saw it."""

    fault: str
    workflow_id: str
    watcher: str
    red: bool
    upload_to_red_s: float
    ready_to_red_s: float | None
    status: str | None
    named_agent: bool
    message: str


def _red(result: WatchResult) -> bool:
    """What the pipeline scenario fails on: the workflow did not complete, or an agent misbehaved."""
    return not result.completed or result.diagnosis.problems


def _sample(
    fault: str, agent: str, which: str, result: WatchResult, started: float, manifest: Manifest
) -> Sample:
    """The watch's outcome, timed from the upload's start (monotonic) and from the agent's inputs."""
    red_at, wall = time.monotonic(), now()
    ready: datetime | None = inputs_ready_at(result.document, manifest, agent) if result.document else None
    return Sample(
        fault=fault,
        workflow_id=result.workflow_id,
        watcher=which,
        red=bool(_red(result)),
        upload_to_red_s=round(red_at - started, 3),
        ready_to_red_s=round((wall - ready).total_seconds(), 3) if ready else None,
        status=result.status,
        named_agent=agent in result.message,
        message=result.message[:600],
    )


def one_fault(
    control: StackControl,
    info: StackInfo,
    manifest: Manifest,
    agent: str,
    kind: str,
    uploads: int,
    emails: list[str],
) -> list[Sample]:
    """Deploy <agent>.<kind>, upload, watch every workflow with both watchers at once, roll back."""
    fault = build(manifest)[f"{agent}.{kind}"]
    deployment = Deployment(control, fault)
    user = DashboardUser(info.dashboard_url, bench_email(f"red-{kind.replace('_', '-')}"), bench_password())
    emails.append(user.email)
    watcher = WorkflowWatcher(firestore.Client(project=info.project), manifest, attach=False)
    try:
        revision = deployment.apply()
        print(f"== {fault.name}: {revision} live", flush=True)
        user.register()
        files = [(f"red-{kind}-{i}.jpg", photo_jpeg(seed=300 + i)) for i in range(uploads)]
        started = time.monotonic()
        workflow_ids = user.upload(files)

        def watch(job: tuple[str, str]) -> Sample:
            workflow_id, which = job
            result = watcher.watch(workflow_id, agent_deadlines=which == "after")
            return _sample(kind, agent, which, result, started, manifest)

        jobs = [(w, which) for w in workflow_ids for which in WATCHERS]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            return list(pool.map(watch, jobs))
    finally:
        user.close()
        watcher.client.close()
        deployment.rollback()


def _figures(samples: Sequence[Sample], deadline: float) -> dict[str, Any]:
    """Per fault and watcher: median and max upload->red, and whether every sample met the goal."""
    figures: dict[str, Any] = {}
    for kind in dict.fromkeys(s.fault for s in samples):
        per: dict[str, Any] = {}
        for which in WATCHERS:
            mine = [s for s in samples if s.fault == kind and s.watcher == which]
            times = [s.upload_to_red_s for s in mine if s.red]
            ready = [s.ready_to_red_s for s in mine if s.red and s.ready_to_red_s is not None]
            median_ready = round(statistics.median(ready), 3) if ready else None
            per[which] = {
                "samples": len(mine),
                "red": len(times),
                "median_upload_to_red_s": round(statistics.median(times), 3) if times else None,
                "max_upload_to_red_s": max(times) if times else None,
                "median_ready_to_red_s": median_ready,
                # How long after the agent's own deadline (from its inputs) red came; 0 when before it.
                "past_deadline_s": round(max(0.0, median_ready - deadline), 3)
                if median_ready is not None
                else None,
                "within_deadline_plus_slack": bool(times)
                and len(times) == len(mine)
                and max(times) <= deadline + GOAL_SLACK_SECONDS,
            }
        figures[kind] = per
    return figures


def _verdicts(figures: dict[str, Any]) -> dict[str, Any]:
    """The goal per watcher: every fault within deadline + slack; medians over the faults."""
    result: dict[str, Any] = {}
    for which in WATCHERS:
        medians = [f[which]["median_upload_to_red_s"] for f in figures.values()]
        known = [m for m in medians if m is not None]
        median = round(statistics.median(known), 3) if known else None
        past = [
            f[which]["past_deadline_s"] for f in figures.values() if f[which]["past_deadline_s"] is not None
        ]
        result[which] = {
            "every_fault_within_deadline_plus_slack": all(
                f[which]["within_deadline_plus_slack"] for f in figures.values()
            ),
            "median_upload_to_red_s": median,
            "median_goal_met": bool(past) and statistics.median(past) <= MEDIAN_GOAL_SECONDS,
            "median_past_deadline_s": round(statistics.median(past), 3) if past else None,
        }
    return result


def measure(
    control: StackControl, manifest: Manifest, agent: str, kinds: Sequence[str], uploads: int
) -> dict[str, Any]:
    """Every fault kind in turn; the benchmark users are removed whatever happens."""
    info = StackInfo.of(control.state)
    check_clean(control, [build(manifest)[f"{agent}.{k}"] for k in kinds])
    deadline = manifest.agent(agent).deadline_seconds
    emails: list[str] = []
    samples: list[Sample] = []
    try:
        for kind in kinds:
            samples += one_fault(control, info, manifest, agent, kind, uploads, emails)
    finally:
        remove_users(info, emails)
    figures = _figures(samples, deadline)
    return {
        "agent": agent,
        "deadline_s": deadline,
        "goal": f"every fault red within {deadline:g}s + {GOAL_SLACK_SECONDS:g}s of the upload; "
        f"median at most {MEDIAN_GOAL_SECONDS:g}s past the agent's deadline (past_deadline_s, 0 before it)",
        "measured": "upload start (client) to the watch returning a red verdict; "
        "ready_to_red: the agent's inputs ready (document times) to red",
        "uploads_per_fault": uploads,
        "faults": figures,
        "verdict": _verdicts(figures),
        "samples": [asdict(s) for s in samples],
    }


def chart(result: dict[str, Any], directory: Path = OUTPUT_DIR) -> Path:
    """Median upload->red per fault, before and after, the agent's deadline + slack drawn over each."""
    groups = {
        kind: {which: per[which]["median_upload_to_red_s"] for which in WATCHERS}
        for kind, per in result["faults"].items()
    }
    limit = result["deadline_s"] + GOAL_SLACK_SECONDS
    return plot.grouped_bars(
        directory / "time-to-red.png",
        f"Time to red, {result['agent']} faults (dashed: deadline {result['deadline_s']:g}s + "
        f"{GOAL_SLACK_SECONDS:g}s)",
        groups,
        WATCHERS,
        limits=dict.fromkeys(groups, limit),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write JSON and the PNG; exit 1 when a fault was never red."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.time_to_red", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--agent", default=DEFAULT_AGENT, help=f"the failing agent (default {DEFAULT_AGENT})")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma list of fault kinds")
    parser.add_argument("--uploads", type=int, default=3, help="workflows per fault (default 3)")
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    manifest = manifest_module.default()
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    catalogue = build(manifest)
    unknown = [k for k in kinds if f"{args.agent}.{k}" not in catalogue]
    if unknown or args.uploads < 1:
        why = f"no fault {args.agent}.{', '.join(unknown)}" if unknown else "--uploads must be at least 1"
        print(f"time to red: {why} (see python -m drills.fault_drill --list)", file=sys.stderr)
        return 2
    try:
        with local_stack(drill_state_file(args.state_file)) as control:
            result = measure(control, manifest, args.agent, kinds, args.uploads)
    except (StackUnavailable, BenchmarkError, DrillError, RevisionFailed, ControlError) as exc:
        print(f"time to red: {exc}", file=sys.stderr)
        return 1
    path = write_json("time-to-red", result)
    picture = chart(result)
    print(f"time to red of {result['agent']} faults (deadline {result['deadline_s']:g}s), upload -> red:")
    for kind, per in result["faults"].items():
        cells = [
            f"{w} median {per[w]['median_upload_to_red_s']} s (max {per[w]['max_upload_to_red_s']})"
            for w in WATCHERS
        ]
        print(f"  {kind:<13} " + "   ".join(cells))
    for which, verdict in result["verdict"].items():
        print(
            f"  {which}: every fault within deadline + {GOAL_SLACK_SECONDS:g}s: "
            f"{verdict['every_fault_within_deadline_plus_slack']}; "
            f"median {verdict['median_upload_to_red_s']} s; "
            f"median past the deadline {verdict['median_past_deadline_s']} s"
        )
    print(f"wrote {path} and {picture}")
    never = [k for k, per in result["faults"].items() if per["after"]["red"] < per["after"]["samples"]]
    if never:
        print(f"time to red: never red under {', '.join(never)}", file=sys.stderr)
    return 1 if never else 0


if __name__ == "__main__":
    sys.exit(main())
