"""The canary drill: each traffic-only fault through the canary (caught? by which signal?), and clean runs.

    python -m drills.canary_drill [--clean 20] [--faults NAME ...] [--state-file PATH]

Every run is `python -m deploy canary` on one local stack (started here unless one runs), a fault
switched on for the candidates with --revision-env. Per fault: the decision, the phase and signal
that caught it, the seconds from the first step's shift to traffic back on the previous revisions,
and the share of each service's requests the faulty candidates served. Clean runs must all be
promoted: an abort there is a false abort. Writes reports/canary/drill.json; exit 1 when a fault
was promoted or a clean run aborted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stack.handle import StackUnavailable, drill_state_file, local_stack
from stack.state import REPO_ROOT, STATE_ENV

REPORT = REPO_ROOT / "reports" / "canary" / "drill.json"
RUNS = REPO_ROOT / "reports" / "canary" / "drill-runs"
RUN_TIMEOUT_SECONDS = 900
FAULTS = (
    "dashboard.fails_share",
    "dashboard.endpoint_fails_share",
    "dashboard.latency_tripled",
    "dashboard.fails_under_concurrency",
    "dashboard.leak_crash",
    "exif.fails_share",
    "thumbnailer.latency_tripled",
)


def one_run(state_file: Path, fault: str) -> dict[str, Any]:
    """One canary run (fault "" for a clean one): its record's verdict, as the drill reports it."""
    runs = RUNS / (fault or "clean")
    before = set(runs.glob("*.json")) if runs.exists() else set()
    command = [sys.executable, "-m", "deploy", "canary"]
    if fault:
        command += ["--revision-env", f"IMAGEFLOW_FAULTS={fault}"]
    env = {**os.environ, STATE_ENV: str(state_file), "IMAGEFLOW_RUNS_DIR": str(runs)}
    began = time.monotonic()
    output = runs / "console.log"
    runs.mkdir(parents=True, exist_ok=True)
    with output.open("a", encoding="utf-8") as console:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=console, stderr=subprocess.STDOUT)
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT_SECONDS)
        except BaseException:
            # Interrupted or out of time: on SIGINT the run rolls itself back, so no traffic split stays.
            process.send_signal(signal.SIGINT)
            process.wait(timeout=300)
            raise
    wall = round(time.monotonic() - began, 1)
    written = sorted(set(runs.glob("*.json")) - before)
    if not written:
        return {
            "fault": fault,
            "exit_code": returncode,
            "wall_s": wall,
            "error": f"no run record; see {output}",
        }
    record = json.loads(written[-1].read_text(encoding="utf-8"))
    canary = record.get("canary") or {}
    phases = canary.get("phases") or []
    last = phases[-1] if phases else {}
    failing = [s for s in last.get("signals", []) if s.get("verdict") == "fail"]
    return {
        "fault": fault,
        "exit_code": returncode,
        "decision": record.get("decision"),
        "wall_s": wall,
        "caught_in": caught_in(record),
        "signals": [f"{s['service']} {s['name']}" for s in failing],
        "aborted_after_s": canary.get("aborted_after_s"),
        "candidate_share": candidate_share(canary),
        "record": str(written[-1]),
    }


def caught_in(record: dict[str, Any]) -> str | None:
    """The canary phase that aborted, else the plan step that failed (promote refusing a dead candidate)."""
    if record.get("decision") == "promoted":
        return None
    phases = (record.get("canary") or {}).get("phases") or []
    if phases and phases[-1].get("decision") == "abort":
        return str(phases[-1]["name"])
    failed = [s["key"] for s in record.get("steps", []) if s.get("status") == "failed"]
    return f"step {failed[0]}" if failed else None


def candidate_share(canary: dict[str, Any]) -> dict[str, float]:
    """Per service, the share of its requests the candidate served over every phase that ran."""
    shares: dict[str, float] = {}
    candidate = canary.get("candidate") or {}
    totals: dict[str, list[int]] = {}
    for phase in canary.get("phases") or []:
        timeline = phase.get("timeline") or []
        if not timeline:
            continue
        # Each analysis counts the phase's window so far: the last one holds the whole phase.
        for service, revisions in timeline[-1]["services"].items():
            served = totals.setdefault(service, [0, 0])
            for revision, figures in revisions.items():
                served[1] += int(figures["requests"])
                if revision == candidate.get(service):
                    served[0] += int(figures["requests"])
    for service, (mine, everyone) in totals.items():
        shares[service] = round(mine / everyone, 3) if everyone else 0.0
    return shares


def main(argv: Sequence[str] | None = None) -> int:
    """Run the faults and the clean runs; write the report; exit 1 on a miss or a false abort."""
    parser = argparse.ArgumentParser(
        prog="python -m drills.canary_drill", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--clean", type=int, default=20, help="clean runs, every one must be promoted")
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), help="traffic faults to run")
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.faults) - set(FAULTS))
    if unknown or args.clean < 0:
        print(
            f"canary_drill: unknown faults {unknown} (known: {', '.join(FAULTS)}) or --clean < 0",
            file=sys.stderr,
        )
        return 2
    path = drill_state_file(args.state_file)
    results: dict[str, Any] = {"faults": [], "clean": []}
    try:
        with local_stack(path):
            for fault in args.faults:
                outcome = one_run(path, fault)
                results["faults"].append(outcome)
                print(
                    f"{fault}: {outcome.get('decision')} {outcome.get('caught_in')} {outcome.get('signals')}"
                )
                _write(results)
            for index in range(args.clean):
                outcome = one_run(path, "")
                results["clean"].append(outcome)
                print(f"clean {index + 1}/{args.clean}: {outcome.get('decision')} in {outcome['wall_s']}s")
                _write(results)
    except StackUnavailable as exc:
        print(f"canary_drill: {exc}", file=sys.stderr)
        return 1
    missed = [r["fault"] for r in results["faults"] if r.get("decision") == "promoted"]
    false_aborts = [r for r in results["clean"] if r.get("decision") != "promoted"]
    results["summary"] = {"missed": missed, "false_aborts": len(false_aborts), "clean_runs": args.clean}
    _write(results)
    print(
        f"canary drill: {len(missed)} fault(s) promoted, {len(false_aborts)} false abort(s) in {args.clean}"
    )
    return 1 if missed or false_aborts else 0


def _write(results: dict[str, Any]) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
