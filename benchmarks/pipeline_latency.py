"""Pipeline latency and throughput on the running local stack, through the dashboard's real API.

    .venv/bin/python -m benchmarks.pipeline_latency [--uploads 20] [--concurrent 20] [--state-file PATH]

Sequential: one user uploads --uploads photo-like camera JPEGs one after the other, each waited to
completion; upload-to-completed p50/p95/p99 (client upload start -> the workflow's completed_at)
and per agent the step's started->finished time. Concurrent: --concurrent users upload one photo
each at the same moment; every workflow must complete with every agent exactly once; throughput
is completed workflows per second from the first upload to the last completion. Benchmark users
and their data are deleted at the end. Writes reports/benchmarks/pipeline-latency.json and PNGs.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import plot
from benchmarks.harness import (
    OUTPUT_DIR,
    BenchmarkError,
    DashboardUser,
    WorkflowFacts,
    bench_email,
    bench_password,
    facts,
    photo_jpeg,
    summary,
    write_json,
)
from imageflow import manifest as manifest_module
from imageflow.manifest import Manifest
from stack.handle import StackUnavailable, drill_state_file, local_stack
from stack.load_users import StackInfo, epoch, remove_users, wait_terminal

COMPLETION_TIMEOUT_SECONDS = 180.0


def sequential(
    info: StackInfo, manifest: Manifest, count: int, run: str, emails: list[str]
) -> list[WorkflowFacts]:
    """One user, count uploads one after another, each waited to its end."""
    user = DashboardUser(info.dashboard_url, bench_email(run), bench_password())
    emails.append(user.email)
    user.register()
    results: list[WorkflowFacts] = []
    try:
        for index in range(count):
            uploaded_at = time.time()
            (workflow_id,) = user.upload([(f"photo-{index:03d}.jpg", photo_jpeg(seed=index))])
            document = wait_terminal(info.project, [workflow_id], COMPLETION_TIMEOUT_SECONDS).get(workflow_id)
            results.append(facts(workflow_id, uploaded_at, document, manifest))
    finally:
        user.close()
    return results


def concurrent(
    info: StackInfo, manifest: Manifest, count: int, run: str, emails: list[str]
) -> tuple[list[WorkflowFacts], float]:
    """count users upload one photo each at once; (facts, seconds first upload -> last completion)."""
    users = [DashboardUser(info.dashboard_url, bench_email(run), bench_password()) for _ in range(count)]
    emails.extend(u.email for u in users)
    with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
        list(pool.map(lambda u: u.register(), users))
    photos = [photo_jpeg(seed=1000 + i) for i in range(count)]
    go = threading.Barrier(count)
    uploaded: dict[str, float] = {}
    lock = threading.Lock()

    def upload(index: int) -> None:
        go.wait()
        started = time.time()
        (workflow_id,) = users[index].upload([(f"concurrent-{index:03d}.jpg", photos[index])])
        with lock:
            uploaded[workflow_id] = started

    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(upload, range(count)))
    finally:
        for user in users:
            user.close()
    documents = wait_terminal(info.project, list(uploaded), COMPLETION_TIMEOUT_SECONDS)
    results = [facts(w, uploaded[w], documents.get(w), manifest) for w in uploaded]
    ends = [epoch(d.get("completed_at")) for d in documents.values()]
    finished = [e for e in ends if e is not None]
    span = (max(finished) - min(uploaded.values())) if finished else float("nan")
    return results, span


def per_agent(results: Sequence[WorkflowFacts], manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Per agent: summary of its step's started->finished seconds."""
    return {
        name: summary([r.agent_seconds[name] for r in results if name in r.agent_seconds])
        for name in manifest.agent_names
    }


def measure(info: StackInfo, manifest: Manifest, uploads: int, concurrency: int, run: str) -> dict[str, Any]:
    """Both measurements; the users are removed whatever happens."""
    emails: list[str] = []
    try:
        serial = sequential(info, manifest, uploads, run, emails)
        parallel, span = concurrent(info, manifest, concurrency, run, emails)
    finally:
        remove_users(info, emails)
    latencies = [r.upload_to_completed for r in serial if r.upload_to_completed is not None]
    parallel_latencies = [r.upload_to_completed for r in parallel if r.upload_to_completed is not None]
    completed = sum(1 for r in parallel if r.status == "completed")
    return {
        "sequential": {
            "uploads": uploads,
            "completed": len(latencies),
            "upload_to_completed_s": summary(latencies),
            "per_agent_step_s": per_agent(serial, manifest),
            "every_agent_once": all(r.agents_once for r in serial),
            "problems": {r.workflow_id: r.problems for r in serial if r.problems},
        },
        "concurrent": {
            "uploads": concurrency,
            "completed": completed,
            "all_completed": completed == concurrency,
            "every_agent_once": all(r.agents_once for r in parallel),
            "upload_to_completed_s": summary(parallel_latencies),
            "per_agent_step_s": per_agent(parallel, manifest),
            "seconds_first_upload_to_last_completion": round(span, 3),
            "throughput_workflows_per_s": round(completed / span, 3) if span and span == span else None,
            "problems": {r.workflow_id: r.problems for r in parallel if r.problems},
        },
        "samples": {"sequential": [asdict(r) for r in serial], "concurrent": [asdict(r) for r in parallel]},
    }


def plots(result: dict[str, Any], directory: Path = OUTPUT_DIR) -> list[Path]:
    """The latency CDFs and the per-agent percentiles."""
    samples = result["samples"]
    series = {
        name: [s["upload_to_completed"] for s in samples[name] if s["upload_to_completed"] is not None]
        for name in ("sequential", "concurrent")
    }
    return [
        plot.cdf(directory / "pipeline-latency.png", "Upload to completed (via the dashboard API)", series),
        plot.grouped_percentiles(
            directory / "pipeline-agents.png",
            "Agent step time started->finished (sequential uploads)",
            result["sequential"]["per_agent_step_s"],
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write JSON and PNGs; exit 1 when a workflow did not complete with every agent once."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline_latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--uploads", type=int, default=20, help="sequential uploads (default 20)")
    parser.add_argument("--concurrent", type=int, default=20, help="simultaneous uploads (default 20)")
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.uploads < 1 or args.concurrent < 1:
        print("pipeline latency: --uploads and --concurrent must be at least 1", file=sys.stderr)
        return 2
    manifest = manifest_module.default()
    run = time.strftime("%H%M%S")
    try:
        with local_stack(drill_state_file(args.state_file)) as control:
            info = StackInfo.of(control.state)
            result = measure(info, manifest, args.uploads, args.concurrent, run)
    except (StackUnavailable, BenchmarkError) as exc:
        print(f"pipeline latency: {exc}", file=sys.stderr)
        return 1
    path = write_json("pipeline-latency", result)
    pictures = plots(result)
    seq, par = result["sequential"], result["concurrent"]
    print(
        f"sequential {seq['completed']}/{seq['uploads']}: upload->completed "
        f"p50 {seq['upload_to_completed_s']['p50']} s, p95 {seq['upload_to_completed_s']['p95']} s"
    )
    for name, stats in seq["per_agent_step_s"].items():
        print(f"  {name:<12} p50 {stats['p50']} s  p95 {stats['p95']} s")
    print(
        f"concurrent {par['completed']}/{par['uploads']} completed, "
        f"every agent once: {par['every_agent_once']}, "
        f"throughput {par['throughput_workflows_per_s']} workflows/s"
    )
    print(f"wrote {path} and {', '.join(str(p) for p in pictures)}")
    ok = seq["every_agent_once"] and par["all_completed"] and par["every_agent_once"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
