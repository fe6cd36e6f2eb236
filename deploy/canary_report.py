"""The canary in the run's reports: its picture, and a result with a step per phase in the Allure report.

The gate's verification generates the HTML report (reports/allure/<target>) before the canary starts.
When the canary is over (aborted, or baked), its verdict becomes one more result in the same results
folder, with the picture attached, and the report is generated again. The results folder still holds
the history that first generate read, so the report's Trend counts the run once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from deploy import canary_picture
from deploy.canary import CanaryRun, Phase
from deploy.context import RunContext
from deploy.verify import ALLURE_RESULTS
from fixtures.allure_report import generate_allure_html, report_dir

PICTURE_NAME = "success rate and latency per revision"


def is_over(run: CanaryRun) -> bool:
    """The canary has its verdict: a phase did not advance, or the bake did."""
    return bool(run.phases) and (run.phases[-1].name == "bake" or run.phases[-1].decision != "advance")


def _step(phase: Phase, began_ms: int) -> dict[str, Any]:
    """One phase as an Allure step: its decision and reasons, a sub-step per signal."""
    status = "passed" if phase.decision == "advance" else "failed"
    signals = [
        {
            "name": f"{s['service']} {s['name']}: {s['verdict']} (n={s['samples'][0]}/{s['samples'][1]})",
            "status": {"pass": "passed", "fail": "failed"}.get(s["verdict"], "skipped"),
            "stage": "finished",
            "start": began_ms,
            "stop": began_ms + int(phase.seconds * 1000),
        }
        for s in phase.signals
    ]
    return {
        "name": f"{phase.name}: {phase.decision} after {phase.seconds:.1f}s, {phase.windows} window(s)",
        "status": status,
        "statusDetails": {"message": "\n".join(phase.reasons)} if phase.reasons else {},
        "stage": "finished",
        "start": began_ms,
        "stop": began_ms + int(phase.seconds * 1000),
        "steps": signals,
    }


def allure_result(run: CanaryRun, run_id: str, target: str, picture: Path | None, results: Path) -> Path:
    """Write the canary's Allure result (and its picture as an attachment) into results; its path."""
    # One id per run: the result's file name is fixed, so writing it again replaces it.
    uid = hashlib.sha256(f"canary {run_id}".encode()).hexdigest()[:32]
    stop_ms = int(time.time() * 1000)
    start_ms = stop_ms - int(sum(p.seconds for p in run.phases) * 1000)
    steps, at = [], start_ms
    for phase in run.phases:
        steps.append(_step(phase, at))
        at += int(phase.seconds * 1000)
    failed = [p for p in run.phases if p.decision != "advance"]
    attachments = []
    if picture is not None and picture.exists():
        source = f"{uid}-attachment.png"
        (results / source).write_bytes(picture.read_bytes())
        attachments.append({"name": PICTURE_NAME, "source": source, "type": "image/png"})
    result = {
        "uuid": uid,
        "historyId": hashlib.sha256(f"canary {target}".encode()).hexdigest()[:32],
        "name": f"canary and bake on {target}",
        "fullName": "deploy.canary_and_bake",
        "status": "failed" if failed else "passed",
        "statusDetails": {"message": f"canary aborted at {failed[0].name}: " + "\n".join(failed[0].reasons)}
        if failed
        else {},
        "stage": "finished",
        "start": start_ms,
        "stop": stop_ms,
        "steps": steps,
        "attachments": attachments,
        "labels": [
            {"name": "suite", "value": "progressive promotion"},
            {"name": "feature", "value": "canary"},
            {"name": "severity", "value": "critical"},
        ],
    }
    path = results / f"{uid}-result.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def keep(run: CanaryRun, ctx: RunContext, *, verified: bool) -> dict[str, Any]:
    """The canary's part of the run record; once over, its picture and its place in the report.

    Only a run whose verification wrote this run's results gets the canary in its report: a canary
    alone (`python -m deploy canary`) would add itself to an earlier run's report.
    """
    run_id, target, reports = ctx.run_id, ctx.env.name, ctx.sources.reports_dir
    data = run.as_dict()
    if not is_over(run):
        return data
    timeline = [point for phase in run.phases for point in phase.timeline]
    picture = None
    if timeline:
        picture = canary_picture.draw(
            reports / "canary" / f"canary-{run_id}.png", f"canary {run_id}: {PICTURE_NAME}", timeline
        )
        data["picture"] = str(picture)
    results = reports / ALLURE_RESULTS
    if not (verified and results.is_dir()):
        data["allure"] = "not in a report: no verification wrote results in this run"
        return data
    data["allure_result"] = str(allure_result(run, run_id, target, picture, results))
    report = report_dir(reports, target)
    if (report / "index.html").exists():
        try:
            data["allure"] = str(generate_allure_html(results, report))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            data["allure"] = f"report not generated again: {exc}"
    return data
