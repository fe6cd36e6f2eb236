"""The run record: what a session deployed, verified, promoted or rolled back, as JSON and Markdown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class CommandEntry:
    """One command (or local action) a step ran, with its exit code and duration."""

    command: str
    exit_code: int | None
    duration_s: float
    error: str = ""
    # A streamed command's last output lines, secrets masked (the console saw all of them).
    output: list[str] = field(default_factory=list)


@dataclass
class StepEntry:
    """One step of the plan (or the rollback) as it happened."""

    index: int
    key: str
    title: str
    status: str = "pending"
    started_at: str = ""
    duration_s: float = 0.0
    detail: str = ""
    commands: list[CommandEntry] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything a session did, in order, for the audit trail."""

    session: str
    environment: str
    kind: str
    commit: str
    run_id: str
    dry_run: bool = False
    started_at: str = field(default_factory=now)
    finished_at: str = ""
    revisions_before: dict[str, str] = field(default_factory=dict)
    revisions_candidate: dict[str, str] = field(default_factory=dict)
    revisions_after: dict[str, str] = field(default_factory=dict)
    backup: str = ""
    steps: list[StepEntry] = field(default_factory=list)
    verification: dict[str, object] = field(default_factory=dict)
    # The canary steps and the bake: per phase its windows, signals and decision (deploy/canary.py).
    canary: dict[str, object] = field(default_factory=dict)
    rollback: list[StepEntry] = field(default_factory=list)
    manual_commands: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    decision: str = ""
    reason: str = ""
    exit_code: int | None = None
    current: StepEntry | None = field(default=None, repr=False)

    def begin(self, index: int, key: str, title: str, *, rollback: bool = False) -> StepEntry:
        """Open a step entry; commands run from now on are recorded in it."""
        entry = StepEntry(index=index, key=key, title=title, status="running", started_at=now())
        (self.rollback if rollback else self.steps).append(entry)
        self.current = entry
        return entry

    def command(self, entry: CommandEntry) -> None:
        """Record a command in the open step (or a preflight entry when none is open)."""
        if self.current is None:
            self.begin(0, "preflight", "preflight")
        assert self.current is not None
        self.current.commands.append(entry)

    def to_dict(self) -> dict[str, object]:
        """The record as plain JSON-able data."""
        data = asdict(self)
        data.pop("current", None)
        return data

    def write(self, target: Path) -> tuple[Path, Path]:
        """Write <timestamp>-<session>.json and .md into target; return both paths."""
        self.finished_at = self.finished_at or now()
        target.mkdir(parents=True, exist_ok=True)
        stamp = self.started_at.replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
        base = target / f"{stamp}-{self.session}-{self.run_id}"
        json_path = base.with_suffix(".json")
        md_path = base.with_suffix(".md")
        json_path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        md_path.write_text(markdown(self), encoding="utf-8")
        return json_path, md_path


def _steps_table(entries: list[StepEntry]) -> list[str]:
    lines = ["| # | step | status | duration | commands |", "| --- | --- | --- | --- | --- |"]
    for e in entries:
        codes = ", ".join(str(c.exit_code) for c in e.commands) or "-"
        lines.append(
            f"| {e.index} | {e.title} | {e.status} | {e.duration_s:.1f}s | {len(e.commands)} (exit {codes}) |"
        )
    return lines


def markdown(record: RunRecord) -> str:
    """A readable summary of the record."""
    lines = [
        f"# {record.session} on {record.environment} ({record.kind})",
        "",
        f"- decision: **{record.decision or 'none'}**" + (f" — {record.reason}" if record.reason else ""),
        f"- exit code: {record.exit_code}",
        f"- commit: `{record.commit}`, run id `{record.run_id}`" + (", dry run" if record.dry_run else ""),
        f"- started {record.started_at}, finished {record.finished_at}",
        f"- backup: {record.backup or 'none'}",
        "",
        "## Revisions",
        "",
        "| service | before | candidate | after |",
        "| --- | --- | --- | --- |",
    ]
    services = dict.fromkeys([*record.revisions_before, *record.revisions_candidate, *record.revisions_after])
    for s in services:
        lines.append(
            f"| {s} | {record.revisions_before.get(s, '-')} | {record.revisions_candidate.get(s, '-')}"
            f" | {record.revisions_after.get(s, '-')} |"
        )
    lines += ["", "## Steps", "", *_steps_table(record.steps)]
    if record.verification:
        lines += ["", "## Verification", ""]
        lines += [f"- {k}: {v}" for k, v in record.verification.items()]
    phases = record.canary.get("phases") if record.canary else None
    if isinstance(phases, list) and phases:
        lines += [
            "",
            "## Canary",
            "",
            "| phase | windows | seconds | decision | why |",
            "| --- | --- | --- | --- | --- |",
        ]
        for phase in phases:
            why = "; ".join(phase.get("reasons") or []) or "-"
            cells = [phase["name"], phase["windows"], f"{phase['seconds']:.1f}s", phase["decision"], why]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        if record.canary.get("picture"):
            lines += ["", f"Success rate and latency per revision: `{record.canary['picture']}`"]
    if record.rollback:
        lines += ["", "## Rollback", "", *_steps_table(record.rollback)]
    if record.manual_commands:
        lines += ["", "## Manual commands still to run (rollback did not finish)", "", "```"]
        lines += record.manual_commands
        lines += ["```"]
    if record.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in record.warnings]
    lines += ["", "## Commands", ""]
    for e in [*record.steps, *record.rollback]:
        for c in e.commands:
            lines.append(f"- [{e.key}] `{c.command}` -> {c.exit_code} in {c.duration_s:.1f}s")
    return "\n".join(lines) + "\n"
