"""The mutation report: one result per mutant, the score per area, JSON and a short Markdown summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drills.mutation.model import AREAS
from stack.state import REPO_ROOT

# The latest run's report (python -m drills.mutation copies every run's here); the fault drill shows it.
LATEST = REPO_ROOT / "reports" / "mutation" / "latest.json"

# Statuses: killed (a test failed, or the deploy refused the revision), survived (the suite was
# green), equivalent (judged so, not run), timeout, broken (pytest could not run), stack-broke,
# not-run (budget spent or the run stopped).
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


def score(results: Sequence[MutantResult]) -> dict[str, dict[str, Any]]:
    """Per area and in total: counts per status and killed / (killed + survived + timeout)."""
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
        }
    return areas


def document(results: Sequence[MutantResult], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: meta, the score, every result."""
    return {**meta, "score": score(results), "mutants": [asdict(r) for r in results]}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def markdown(doc: dict[str, Any]) -> str:
    """A short summary: the score per area, then every surviving mutant with its diff."""
    lines = [
        f"# Mutation report: {doc.get('label', '')}",
        "",
        f"commit {doc.get('commit', '?')}, seed {doc.get('seed')}, {doc.get('sampled')} mutants sampled "
        f"of {doc.get('candidates')} candidates, tests: {doc.get('tests')}, "
        f"{doc.get('seconds', 0):.0f} s; command: `{doc.get('command', '')}`",
        "",
        "| area | killed | survived | timeout | equivalent | broken / stack / not run | score |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for area, row in doc["score"].items():
        other = f"{row[BROKEN]} / {row[STACK_BROKE]} / {row[NOT_RUN]}"
        lines.append(
            f"| {area} | {row[KILLED]} | {row[SURVIVED]} | {row[TIMEOUT]} | {row[EQUIVALENT]} | {other} "
            f"| {_percent(row['score'])} |"
        )
    for reason in doc.get("reasons", []):
        lines += ["", f"**{reason}**"]
    for area in AREAS:
        survivors = [m for m in doc["mutants"] if m["status"] in (SURVIVED, TIMEOUT) and m["area"] == area]
        if not survivors:
            continue
        lines += ["", f"## {area}: surviving mutants ({len(survivors)})", ""]
        for mutant in survivors:
            lines += [f"### {mutant['id']} ({mutant['status']}): {mutant['description']}", "", "```diff"]
            lines += [mutant["diff"].rstrip(), "```", ""]
    equivalent = [m for m in doc["mutants"] if m["status"] == EQUIVALENT]
    if equivalent:
        lines += [f"## Judged equivalent ({len(equivalent)})", ""]
        lines += [f"- {m['id']}: {m['reason']}" for m in equivalent]
    return "\n".join(lines) + "\n"


def write(path: Path, results: Sequence[MutantResult], meta: dict[str, Any]) -> Path:
    """Write the JSON report at path and its summary beside it (.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = document(results, meta)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    path.with_suffix(".md").write_text(markdown(doc), encoding="utf-8")
    return path


def read(path: Path) -> dict[str, Any]:
    """A mutation report ({} when there is none or it cannot be read)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


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
