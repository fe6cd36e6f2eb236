"""The fault drill's verdicts, its JSON report and its terminal table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drills.suite import SuiteRun


@dataclass
class DrillRow:
    """What happened to one fault: deployed, caught (by which tests, how fast), rolled back, green again."""

    fault: str
    part: str
    caught: bool
    tests: list[str] = field(default_factory=list)
    seconds_to_detect: float | None = None
    expected: list[str] = field(default_factory=list)
    clean_after: bool | None = None
    clean_failures: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    error: str = ""
    output_dir: str = ""


def test_name(nodeid: str) -> str:
    """The test's own name (with parameters) from its node id."""
    return nodeid.rsplit("::", 1)[-1]


def judge(
    fault: str,
    part: str,
    expected: Sequence[str],
    deployed_at: float,
    under_fault: SuiteRun,
    clean: SuiteRun | None,
    baseline_failures: Sequence[str] = (),
) -> DrillRow:
    """The row of one fault: caught = a test failed with the fault that did not fail without it.

    A test that also fails on the clean revision (the baseline, or the confirm run after the
    rollback) is not evidence the fault was seen; a run pytest could not even finish catches nothing.
    """
    not_evidence = set(baseline_failures) | set(clean.failed if clean is not None else [])
    evidence = [n for n in under_fault.failed if n not in not_evidence]
    caught = bool(evidence) and not under_fault.broken
    first = min(
        (under_fault.results[n].first_failed_at or under_fault.finished_at for n in evidence), default=None
    )
    error = ""
    if under_fault.broken:
        error = f"the suite run under the fault did not finish (pytest exit {under_fault.exit_code})"
    elif not under_fault.results:
        error = "no test was selected for this fault"
    return DrillRow(
        fault=fault,
        part=part,
        caught=caught,
        tests=evidence,
        seconds_to_detect=round(first - deployed_at, 1) if caught and first is not None else None,
        expected=list(expected),
        clean_after=clean.green if clean is not None else None,
        clean_failures=clean.failed if clean is not None else [],
        messages={n: under_fault.results[n].message for n in evidence},
        error=error,
        output_dir=under_fault.output_dir,
    )


def verdict(rows: Sequence[DrillRow], baseline: SuiteRun | None) -> tuple[bool, list[str]]:
    """(ok, reasons): ok only if the baseline was green, every fault caught, every clean run green."""
    reasons: list[str] = []
    if baseline is not None and not baseline.green:
        failed = ", ".join(test_name(n) for n in baseline.failed) or f"pytest exit {baseline.exit_code}"
        reasons.append(f"the suite is red on the clean revisions before the drill: {failed}")
    for row in rows:
        if not row.caught:
            reasons.append(f"{row.fault} was not caught" + (f" ({row.error})" if row.error else ""))
        if row.clean_after is False:
            count = len(row.clean_failures)
            why = f"{count} failed" if count else "the run did not finish"
            reasons.append(f"after rolling back {row.fault} the suite is not green: {why}")
    return not reasons, reasons


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def table(rows: Sequence[DrillRow], width: int = 72) -> str:
    """The terminal table: fault, part, caught, seconds to detect, clean after, failing tests."""
    header = ("fault", "part", "caught", "detect s", "clean after", "tests that failed")
    body = []
    for row in rows:
        names = ", ".join(test_name(n) for n in row.tests) or (row.error or "-")
        if len(names) > width:
            names = names[: width - 3] + "..."
        body.append(
            (
                row.fault,
                row.part,
                _cell(row.caught),
                _cell(row.seconds_to_detect),
                _cell(row.clean_after),
                names,
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(
    path: Path,
    rows: Sequence[DrillRow],
    baseline: SuiteRun | None,
    ok: bool,
    reasons: Sequence[str],
    meta: dict[str, Any],
    mutation: dict[str, Any] | None = None,
) -> Path:
    """Write reports/fault-drill.json: the verdict, the baseline, one row per fault and the mutation score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **meta,
        "ok": ok,
        "reasons": list(reasons),
        "caught": sum(1 for r in rows if r.caught),
        "faults": len(rows),
        "baseline": None
        if baseline is None
        else {
            "green": baseline.green,
            "tests": len(baseline.results),
            "failed": baseline.failed,
            "seconds": round(baseline.finished_at - baseline.started_at, 1),
        },
        "rows": [asdict(r) for r in rows],
        # Beside the switches: the score of the latest mutation run (python -m drills.mutation).
        "mutation": mutation,
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def read_document(path: Path) -> dict[str, Any]:
    """An earlier report as a whole ({} when there is none or it cannot be read)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def read_rows(path: Path) -> list[DrillRow]:
    """The rows of an earlier report ([] when there is none or it cannot be read)."""
    try:
        return [DrillRow(**row) for row in read_document(path).get("rows", [])]
    except TypeError:
        return []
