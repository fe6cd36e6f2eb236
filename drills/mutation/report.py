"""The mutation report: one result per mutant, the score per area, JSON and a short Markdown summary."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drills.mutation.model import AREAS
from drills.report import read_document
from stack.state import REPO_ROOT

# The latest run's report (python -m drills.mutation copies every run's here); the fault drill shows it.
LATEST = REPO_ROOT / "reports" / "mutation" / "latest.json"

# Statuses: killed (a test failed, or the deploy refused the revision), survived (the suite was
# green), equivalent (judged so, not run), timeout, broken (pytest could not run), stack-broke,
# not-run (budget spent or the run stopped). A survivor was green against the whole selection (every
# test of it ran); a timeout is a mutant no test failed against before the bound, never a kill.
KILLED, SURVIVED, EQUIVALENT, TIMEOUT = "killed", "survived", "equivalent", "timeout"
BROKEN, STACK_BROKE, NOT_RUN = "broken", "stack-broke", "not-run"
STATUSES = (KILLED, SURVIVED, EQUIVALENT, TIMEOUT, BROKEN, STACK_BROKE, NOT_RUN)


@dataclass
class MutantResult:
    """What happened to one mutant."""

    id: str
    area: str
    path: str
    line: int
    operator: str
    description: str
    status: str
    diff: str
    services: list[str] = field(default_factory=list)
    killed_by: list[str] = field(default_factory=list)
    message: str = ""
    reason: str = ""
    seconds: float = 0.0
    output_dir: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    tests: int = 0


def _ran(results: Sequence[MutantResult]) -> list[MutantResult]:
    """The results of mutants that were deployed and judged (the ones with a cost to speak of)."""
    return [r for r in results if r.status in (KILLED, SURVIVED, TIMEOUT, BROKEN, STACK_BROKE)]


def seconds(results: Sequence[MutantResult]) -> dict[str, float | None]:
    """Median and max seconds per mutant run (None when none ran)."""
    values = [r.seconds for r in _ran(results)]
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def phase_medians(results: Sequence[MutantResult]) -> dict[str, float]:
    """Median seconds of each phase over the mutants that ran it (where a mutant's time goes)."""
    names = dict.fromkeys(name for r in _ran(results) for name in r.phases)
    return {
        name: round(statistics.median([r.phases[name] for r in _ran(results) if name in r.phases]), 1)
        for name in names
    }


def score(results: Sequence[MutantResult]) -> dict[str, dict[str, Any]]:
    """Per area and in total: counts per status, killed / (killed + survived + timeout), seconds."""
    areas: dict[str, dict[str, Any]] = {}
    for area in [*AREAS, "total"]:
        mine = [r for r in results if area in ("total", r.area)]
        counts = {status: sum(1 for r in mine if r.status == status) for status in STATUSES}
        # A timeout is a mutant the suite did not kill within its bound: it counts against the score.
        judged = counts[KILLED] + counts[SURVIVED] + counts[TIMEOUT]
        areas[area] = {
            **counts,
            "non_equivalent": judged,
            "score": round(counts[KILLED] / judged, 3) if judged else None,
            "seconds": seconds(mine),
        }
    return areas


def document(results: Sequence[MutantResult], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: meta, the score, every result."""
    return {
        **meta,
        "score": score(results),
        "phases": {
            status: phase_medians([r for r in results if r.status == status]) for status in (KILLED, SURVIVED)
        },
        "mutants": [asdict(r) for r in results],
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _wall(doc: dict[str, Any]) -> str:
    """The run's wall time against its budget."""
    wall = f"wall time {doc.get('seconds', 0) / 60:.1f} min"
    budget = doc.get("budget_minutes")
    return f"{wall} of a {budget:g}-min budget" if budget else f"{wall} (no budget)"


def markdown(doc: dict[str, Any]) -> str:
    """A short summary: the score per area, then every surviving mutant with its diff."""
    fault_switch = doc.get("fault_switch_only") or {}
    not_sampled = fault_switch.get("per_area", {})
    lines = [
        f"# Mutation report: {doc.get('label', '')}",
        "",
        f"commit {doc.get('commit', '?')}, seed {doc.get('seed')}, {doc.get('sampled')} mutants sampled "
        f"of {doc.get('candidates')} candidates, tests: {doc.get('tests')}; {_wall(doc)}; "
        f"command: `{doc.get('command', '')}`",
        "",
        "A mutant *survived* only when the whole selection ran green against it (the order puts likely "
        "killers first, it never leaves a test out); a *timeout* is no test failing before the bound.",
        "",
        "| area | killed / non-equivalent | score | survived | timeout | equivalent "
        "| fault-switch only, not sampled | broken / stack / not run | s per mutant (median, max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for area, row in doc["score"].items():
        other = f"{row[BROKEN]} / {row[STACK_BROKE]} / {row[NOT_RUN]}"
        unsampled = fault_switch.get("count", 0) if area == "total" else not_sampled.get(area, 0)
        spent = row.get("seconds") or {}
        lines.append(
            f"| {area} | {row[KILLED]} / {row['non_equivalent']} | {_percent(row['score'])} "
            f"| {row[SURVIVED]} | {row[TIMEOUT]} | {row[EQUIVALENT]} | {unsampled} | {other} "
            f"| {_seconds(spent.get('median'))}, {_seconds(spent.get('max'))} |"
        )
    for status, phases in (doc.get("phases") or {}).items():
        if phases:
            spent = ", ".join(f"{name} {value:g} s" for name, value in phases.items())
            lines += ["", f"Median seconds per phase, {status} mutants: {spent}."]
    not_run: dict[str, int] = {}
    for mutant in doc["mutants"]:
        if mutant["status"] == NOT_RUN:
            not_run[mutant["reason"]] = not_run.get(mutant["reason"], 0) + 1
    for reason, count in not_run.items():
        lines += ["", f"Not run: {count} ({reason})."]
    if doc.get("baseline"):
        base = doc["baseline"]
        tests, spent, green = base["tests"], base["seconds"], base["green"]
        lines += ["", f"Baseline (clean stack): {tests} tests in {spent:.0f} s, green: {green}."]
    for reason in doc.get("reasons", []):
        lines += ["", f"**{reason}**"]
    if doc.get("stale_equivalents"):
        stale = ", ".join(doc["stale_equivalents"])
        lines += ["", f"**equivalent.toml ids the code no longer makes (re-judge them): {stale}**"]
    for area in AREAS:
        for status, title in ((SURVIVED, "surviving mutants"), (TIMEOUT, "timeouts")):
            shown = [m for m in doc["mutants"] if m["status"] == status and m["area"] == area]
            if not shown:
                continue
            lines += ["", f"## {area}: {title} ({len(shown)})", ""]
            for mutant in shown:
                lines += [f"### {mutant['id']}: {mutant['description']}", ""]
                if status == SURVIVED and mutant.get("tests"):
                    lines += [f"Green against all {mutant['tests']} tests of the selection.", ""]
                if mutant.get("message"):
                    lines += [mutant["message"], ""]
                lines += ["```diff", mutant["diff"].rstrip(), "```", ""]
    equivalent = [m for m in doc["mutants"] if m["status"] == EQUIVALENT]
    if equivalent:
        lines += [f"## Judged equivalent ({len(equivalent)})", ""]
        lines += [f"- {m['id']}: {m['reason']}" for m in equivalent]
    if fault_switch.get("by_file"):
        lines += ["", f"## Fault-switch only, not sampled ({fault_switch['count']})", ""]
        lines += [f"- {path}: {len(ids)} ({', '.join(ids)})" for path, ids in fault_switch["by_file"].items()]
    return "\n".join(lines) + "\n"


def write(path: Path, results: Sequence[MutantResult], meta: dict[str, Any]) -> Path:
    """Write the JSON report at path and its summary beside it (.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = document(results, meta)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    path.with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
    return path


# A mutation report is read as any drill report is ({} when there is none or it cannot be read).
read = read_document


def score_line(doc: dict[str, Any]) -> str:
    """One line: the score per area of a report ("" when it has none)."""
    if not doc.get("score"):
        return ""
    parts = [
        f"{area} {row['killed']}/{row['non_equivalent']}"
        for area, row in doc["score"].items()
        if row["non_equivalent"] or area == "total"
    ]
    return f"mutants killed (commit {doc.get('commit', '?')}, seed {doc.get('seed')}): " + ", ".join(parts)


def latest_summary(path: Path = LATEST) -> dict[str, Any] | None:
    """The latest mutation run's score per area, for the fault drill's report (None when there is none)."""
    doc = read(path)
    if not doc.get("score"):
        return None
    keys = ("label", "commit", "seed", "sampled", "tests", "started_at", "complete")
    summary = {k: doc.get(k) for k in keys}
    return {"report": str(path), **summary, "score": doc["score"], "line": score_line(doc)}
