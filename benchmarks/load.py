"""Load run: Locust headless against the running local stack, then every workflow checked to its end.

    .venv/bin/python -m benchmarks.load [--users 10] [--spawn-rate 5] [--seconds 60]

Starts `locust -f load/locustfile.py --headless` (bounded users and run time, loopback host: the
stack's dashboard URL) in its own process group. Afterwards every upload the users made is read with
the Firestore admin client against the emulator: each workflow must have completed with every
agent of the manifest exactly once. Reports throughput (completed workflows per second, first
upload to last completion), upload-to-completed p50/p95/p99, Locust's per-request statistics and
errors. Load users and their data are deleted. Writes reports/benchmarks/load.json and PNGs.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import plot
from benchmarks.harness import OUTPUT_DIR, facts, summary, write_json
from imageflow import manifest as manifest_module
from load.checks import read_log
from stack.handle import StackUnavailable, drill_state_file, local_stack
from stack.load_users import StackInfo, remove_users, wait_terminal
from stack.state import REPO_ROOT

LOCUSTFILE = REPO_ROOT / "load" / "locustfile.py"
LOAD_DIR = OUTPUT_DIR / "load"
COMPLETION_TIMEOUT_SECONDS = 240.0
EXTRA_RUN_SECONDS = 240.0
# Users still watching an upload when the run time ends may finish it (the locustfile waits at most 180 s).
STOP_TIMEOUT_SECONDS = 90


def run_locust(info: StackInfo, users: int, spawn_rate: float, seconds: int, log: Path) -> tuple[int, float]:
    """Run Locust headless; (exit code, wall seconds). Its process group is always stopped."""
    LOAD_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "Uploader",
        "--headless",
        "--only-summary",
    ]
    command += ["-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds}s"]
    command += ["--stop-timeout", str(STOP_TIMEOUT_SECONDS)]
    command += ["--host", info.dashboard_url, "--csv", str(LOAD_DIR / "locust"), "--loglevel", "WARNING"]
    env = {
        **os.environ,
        **info.env,
        "IMAGEFLOW_LOAD_LOG": str(log),
        "IMAGEFLOW_LOAD_RUN": time.strftime("%H%M%S"),
    }
    began = time.monotonic()
    with (LOAD_DIR / "locust.log").open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=seconds + EXTRA_RUN_SECONDS)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    return code, time.monotonic() - began


def locust_stats(prefix: Path) -> list[dict[str, Any]]:
    """Locust's aggregated per-request rows from <prefix>_stats.csv (count, failures, percentiles, rps)."""
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                {
                    "type": row["Type"],
                    "name": row["Name"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "p50_ms": _number(row.get("50%")),
                    "p95_ms": _number(row.get("95%")),
                    "p99_ms": _number(row.get("99%")),
                    "requests_per_s": _number(row.get("Requests/s")),
                }
            )
    return rows


def locust_failures(prefix: Path) -> list[dict[str, Any]]:
    """Locust's failures (method, name, error, occurrences)."""
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [
            {
                "method": r["Method"],
                "name": r["Name"],
                "error": r["Error"],
                "occurrences": int(r["Occurrences"]),
            }
            for r in csv.DictReader(handle)
        ]


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load, check every workflow, write JSON and PNGs; exit 1 on any error or incomplete workflow."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--spawn-rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (1 <= args.users <= 200 and 1 <= args.seconds <= 1800):
        print("load: --users must be 1..200 and --seconds 1..1800", file=sys.stderr)
        return 2
    manifest = manifest_module.default()
    log = LOAD_DIR / "uploads.jsonl"
    LOAD_DIR.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    try:
        with local_stack(drill_state_file(args.state_file)) as control:
            info = StackInfo.of(control.state)
            emails: list[str] = []
            try:
                code, wall = run_locust(info, args.users, args.spawn_rate, args.seconds, log)
                uploads, emails = read_log(log)
                documents = wait_terminal(info.project, list(uploads), COMPLETION_TIMEOUT_SECONDS)
            finally:
                emails = emails or read_log(log)[1]
                removed = remove_users(info, emails)
    except StackUnavailable as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 1
    results = [facts(w, t, documents.get(w), manifest) for w, t in uploads.items()]
    completed = [r for r in results if r.status == "completed"]
    latencies = [r.upload_to_completed for r in results if r.upload_to_completed is not None]
    ends = [
        r.upload_to_completed + uploads[r.workflow_id] for r in completed if r.upload_to_completed is not None
    ]
    span = (max(ends) - min(uploads.values())) if ends else 0.0
    stats = locust_stats(LOAD_DIR / "locust")
    failures = locust_failures(LOAD_DIR / "locust")
    result = {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "seconds": args.seconds,
        "locust_exit_code": code,
        "locust_wall_s": round(wall, 1),
        "uploads": len(uploads),
        "completed": len(completed),
        "all_completed": bool(uploads) and len(completed) == len(uploads),
        "every_agent_once": bool(results) and all(r.agents_once for r in results),
        "throughput_workflows_per_s": round(len(completed) / span, 3) if span else None,
        "upload_to_completed_s": summary(latencies),
        "requests": stats,
        "errors": failures,
        "error_count": sum(f["occurrences"] for f in failures),
        "problems": {r.workflow_id: r.problems for r in results if r.problems},
        "cleanup_removed": removed,
    }
    path = write_json("load", result)
    start = min(uploads.values()) if uploads else 0.0
    pictures = [
        plot.cdf(
            OUTPUT_DIR / "load.png",
            f"Upload to completed under load ({args.users} users)",
            {"load": latencies},
        ),
        plot.timeline(
            OUTPUT_DIR / "load-timeline.png",
            "Upload to completed by upload time",
            [
                (uploads[r.workflow_id] - start, r.upload_to_completed)
                for r in results
                if r.upload_to_completed
            ],
            "seconds to completed",
        ),
    ]
    lat = result["upload_to_completed_s"]
    print(
        f"{result['uploads']} uploads by {args.users} users in {args.seconds} s: "
        f"{result['completed']} completed, every agent once: {result['every_agent_once']}, "
        f"throughput {result['throughput_workflows_per_s']}/s, upload->completed "
        f"p50 {lat['p50']} s p95 {lat['p95']} s p99 {lat['p99']} s, errors {result['error_count']}"
    )
    print(f"wrote {path}, {', '.join(str(p) for p in pictures)}")
    ok = code == 0 and result["all_completed"] and result["every_agent_once"] and not failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
