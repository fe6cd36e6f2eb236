"""How fast the suite notices a workflow update: realtime listener vs a one-second polling loop.

Run against any emulator named by FIRESTORE_EMULATOR_HOST, else the local stack's (the drills'
stack, started here and stopped after when none runs; part of `nox -s benchmarks`):

    .venv/bin/python -m benchmarks.detection_latency [--updates 30] [--state-file PATH]

One workflow-like document is written, then updated N times the way the finalizer does. A realtime
listener (on_snapshot + an Event, the watcher's mechanism) and a plain one-second polling loop watch
it side by side; each records when it first saw each update. Writes are spaced by a random jitter
so the polling loop's phase is not always the same. Results go to
reports/benchmarks/detection-latency.json (median and p95 in milliseconds for both) and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from google.cloud import firestore

from benchmarks import plot
from fixtures.firestore import WorkflowWatcher
from imageflow import manifest as manifest_module
from imageflow.workflow import COLLECTION, new_document, now
from stack.handle import drill_state_file, local_stack
from stack.state import REPO_ROOT

OUTPUT = REPO_ROOT / "reports" / "benchmarks" / "detection-latency.json"
POLL_INTERVAL_SECONDS = 1.0
SEEN_TIMEOUT_SECONDS = 10.0


class Observer:
    """First time (monotonic) each sequence number was seen by one detection method."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.changed = threading.Condition()

    def saw(self, document: Mapping[str, Any] | None) -> None:
        """Record the document's sequence number if it is new."""
        if not document:
            return
        seq = document.get("bench_seq")
        if isinstance(seq, int) and seq not in self.seen:
            with self.changed:
                self.seen[seq] = time.monotonic()
                self.changed.notify_all()

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until seq was seen, at most timeout seconds."""
        with self.changed:
            return self.changed.wait_for(lambda: seq in self.seen, timeout=timeout)


def _percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of values."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def _summary(latencies: list[float]) -> dict[str, Any]:
    millis = [round(v * 1000, 1) for v in latencies]
    return {
        "samples": len(millis),
        "median_ms": round(statistics.median(millis), 1) if millis else None,
        "p95_ms": _percentile(millis, 0.95) if millis else None,
        "p99_ms": _percentile(millis, 0.99) if millis else None,
        "max_ms": max(millis) if millis else None,
        "latencies_ms": millis,
    }


def run(updates: int, project: str) -> dict[str, Any]:
    """Write one document, update it updates times, and measure both detection methods."""
    client = firestore.Client(project=project)
    manifest = manifest_module.default()
    workflow_id = f"bench-{secrets.token_hex(6)}"
    ref = client.collection(COLLECTION).document(workflow_id)
    listener_seen, polling_seen = Observer(), Observer()
    stop = threading.Event()

    def on_snapshot(docs: list[Any], _changes: object, _read_time: object) -> None:
        for doc in docs:
            if doc.exists:
                listener_seen.saw(doc.to_dict())

    def poll() -> None:
        while not stop.is_set():
            snapshot = ref.get()
            polling_seen.saw(snapshot.to_dict() if snapshot.exists else None)
            stop.wait(POLL_INTERVAL_SECONDS)  # the one-second polling loop being compared

    document = new_document(workflow_id, "bench-owner", {"filename": "bench.jpg"}, manifest)
    document["bench_seq"] = 0
    written: dict[int, float] = {}
    listener = None
    poller = threading.Thread(target=poll, daemon=True)
    try:
        ref.set(document)
        listener = ref.on_snapshot(on_snapshot)
        poller.start()
        if not (
            listener_seen.wait_for(0, SEEN_TIMEOUT_SECONDS) and polling_seen.wait_for(0, SEEN_TIMEOUT_SECONDS)
        ):
            raise RuntimeError("the first write was never seen by both observers")
        jitter = random.Random(7)
        for seq in range(1, updates + 1):
            # A random pause so that the write falls anywhere in the polling loop's second.
            stop.wait(jitter.uniform(0.0, POLL_INTERVAL_SECONDS))
            written[seq] = time.monotonic()
            finished = now()
            ref.update(
                {
                    "bench_seq": seq,
                    "status": "completed" if seq == updates else "processing",
                    "updated_at": finished,
                    "steps.finalizer.status": "done",
                    "steps.finalizer.finished_at": finished,
                    "events": firestore.ArrayUnion(
                        [{"at": finished, "agent": "finalizer", "event": f"bench-{seq}"}]
                    ),
                }
            )
            for name, observer in (("listener", listener_seen), ("polling", polling_seen)):
                if not observer.wait_for(seq, SEEN_TIMEOUT_SECONDS):
                    raise RuntimeError(
                        f"update {seq} was never seen by the {name} within {SEEN_TIMEOUT_SECONDS}s"
                    )
    finally:
        stop.set()
        if listener is not None:
            listener.unsubscribe()
        poller.join(timeout=POLL_INTERVAL_SECONDS + 5)
    try:
        # What one WorkflowWatcher.watch() costs on top: subscribing until the first snapshot answers.
        watcher = WorkflowWatcher(client, manifest, attach=False)
        watch_overhead = [watcher.watch(workflow_id, timeout=SEEN_TIMEOUT_SECONDS).elapsed for _ in range(10)]
    finally:
        ref.delete()
    listener_latency = [listener_seen.seen[s] - written[s] for s in written]
    polling_latency = [polling_seen.seen[s] - written[s] for s in written]
    return {
        "updates": updates,
        "project": project,
        "firestore": os.environ.get("FIRESTORE_EMULATOR_HOST", "firestore.googleapis.com"),
        "measured": "from the start of the update call to the first time the method saw the new value",
        "listener": _summary(listener_latency),
        "polling_1s": _summary(polling_latency),
        "watch_call_on_ended_workflow": _summary(watch_overhead),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=30, help="number of updates to measure (>= 30)")
    parser.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-imageflow"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.updates < 30:
        print("detection_latency: --updates must be at least 30", file=sys.stderr)
        return 2
    try:
        if os.environ.get("FIRESTORE_EMULATOR_HOST"):
            result = run(args.updates, args.project)
        else:
            # The local stack's emulator (started here, and stopped after, when none runs).
            with local_stack(drill_state_file(args.state_file)) as control:
                host = control.state.env.get("FIRESTORE_EMULATOR_HOST", "")
                if not host:
                    raise RuntimeError(f"the stack at {control.state_path} names no Firestore emulator")
                os.environ["FIRESTORE_EMULATOR_HOST"] = host
                result = run(args.updates, args.project)
    except RuntimeError as exc:
        print(f"detection_latency: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    chart = plot.grouped_percentiles(
        args.output.with_suffix(".png"),
        f"Detection latency of a workflow update ({result['updates']} updates)",
        {
            name: {
                "p50": result[name]["median_ms"] / 1000,
                "p95": result[name]["p95_ms"] / 1000,
                "p99": result[name]["p99_ms"] / 1000,
            }
            for name in ("listener", "polling_1s")
        },
    )
    print(f"detection latency over {result['updates']} updates ({result['firestore']}):")
    for name in ("listener", "polling_1s"):
        print(f"  {name:<11} median {result[name]['median_ms']} ms   p95 {result[name]['p95_ms']} ms")
    overhead = result["watch_call_on_ended_workflow"]
    print(
        f"  one watch() on an ended workflow (subscribe + first snapshot): median {overhead['median_ms']} ms"
    )
    print(f"written to {args.output} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
