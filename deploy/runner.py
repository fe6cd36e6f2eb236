"""Run a plan's steps in order; on a failure undo exactly what the run changed, newest first."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from deploy.record import RunRecord
from deploy.shell import Shell
from deploy.steps import Change, Step, StepFailed, VerificationFailed

# Exit codes of every session: CI tells them apart without parsing output.
EXIT_OK = 0
EXIT_FAILED = 1  # a step or the verification failed; what changed was rolled back
EXIT_BAD_INPUT = 2  # refused before any step ran
EXIT_ROLLBACK_FAILED = 3  # the rollback itself failed: manual commands printed


def run_steps(steps: Sequence[Step], changes: list[Change], record: RunRecord, shell: Shell) -> int:
    """Run steps; on failure roll back the registered changes and return the exit code."""
    total = len(steps)
    for index, step in enumerate(steps, start=1):
        label = f"[{index}/{total}] {step.title}"
        shell.say(f"{label} ...")
        entry = record.begin(index, step.key, step.title)
        started = time.monotonic()
        try:
            entry.detail = step.run() or ""
            if step.check is not None:
                step.check()
        except (StepFailed, KeyboardInterrupt, SystemExit, Exception) as exc:
            if not isinstance(exc, StepFailed):
                # An interrupt, a SIGTERM (SystemExit from stack.sigterm) or a bug mid-step must still
                # undo what the run changed: a canary step left half-way would keep its traffic split.
                exc = StepFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            entry.duration_s = round(time.monotonic() - started, 3)
            entry.status = "failed"
            entry.detail = str(exc)
            shell.say(f"{label} ... FAILED in {entry.duration_s:.1f}s: {exc}")
            if isinstance(exc, VerificationFailed):
                record.verification.setdefault("passed", False)
            record.reason = f"{step.title} failed: {exc}"
            for later in steps[index:]:
                record.steps.append(
                    type(entry)(
                        index=steps.index(later) + 1, key=later.key, title=later.title, status="not run"
                    )
                )
            return rollback(changes, record, shell)
        entry.duration_s = round(time.monotonic() - started, 3)
        # A step that cannot apply here (monitoring locally) says so; it is never reported as passed.
        entry.status = "not applicable" if entry.detail.startswith("not applicable") else "done"
        suffix = f" ({entry.detail})" if entry.detail else ""
        shell.say(f"{label} ... {entry.status} in {entry.duration_s:.1f}s{suffix}")
    record.current = None
    return EXIT_OK


def rollback(changes: list[Change], record: RunRecord, shell: Shell, *, session: bool = False) -> int:
    """Undo changes newest first; if an undo fails, stop and print the commands left to run."""
    if not changes:
        shell.say("rollback: the run changed nothing, nothing to undo")
        record.decision = "rolled back (nothing changed)"
        return EXIT_FAILED
    pending = list(reversed(changes))
    shell.say(
        f"rollback: {len(pending)} change(s) to apply, in order"
        if session
        else f"rollback: undoing {len(pending)} change(s), newest first"
    )
    for position, change in enumerate(pending, start=1):
        label = f"[undo {position}/{len(pending)}] {change.what}"
        shell.say(f"{label} ...")
        entry = record.begin(position, "undo", change.what, rollback=True)
        started = time.monotonic()
        try:
            change.undo()
        except StepFailed as exc:
            entry.status = "failed"
            entry.detail = str(exc)
            entry.duration_s = round(time.monotonic() - started, 3)
            remaining = [c.manual for c in pending[position - 1 :]]
            record.manual_commands = remaining
            record.decision = "ROLLBACK FAILED"
            shell.say(f"{label} ... FAILED: {exc}")
            shell.say("!" * 78)
            shell.say("ROLLBACK FAILED. The environment is half rolled back. Run these by hand, in order:")
            for command in remaining:
                shell.say(f"  {command}")
            shell.say("!" * 78)
            record.current = None
            return EXIT_ROLLBACK_FAILED
        entry.status = "done"
        entry.duration_s = round(time.monotonic() - started, 3)
        shell.say(f"{label} ... done in {entry.duration_s:.1f}s")
    changes.clear()
    record.decision = "rolled back"
    record.current = None
    return EXIT_FAILED


def run_rollback(find: Callable[[], list[Change]], record: RunRecord, shell: Shell) -> int:
    """The rollback session: find what to go back to, then apply it in order, stopping loudly on failure."""
    shell.say("[1/2] find previous revisions and rules ...")
    record.begin(1, "find", "find previous revisions and rules")
    try:
        changes = find()
    except StepFailed as exc:
        record.steps[-1].status = "failed"
        record.decision, record.reason = "rollback not started", str(exc)
        shell.say(f"[1/2] find previous revisions and rules ... FAILED: {exc}")
        return EXIT_FAILED
    record.steps[-1].status = "done"
    shell.say("[1/2] find previous revisions and rules ... done")
    shell.say("[2/2] roll back ...")
    code = rollback(list(reversed(changes)), record, shell, session=True)
    if code == EXIT_ROLLBACK_FAILED:
        return code
    record.reason = "rollback session applied every change"
    shell.say("[2/2] roll back ... done")
    return EXIT_OK
