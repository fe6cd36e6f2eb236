"""The local stack a drill or benchmark runs against: a running one, or one started (and stopped) here."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from stack import runner
from stack.control import StackControl
from stack.state import REPO_ROOT, STATE_ENV

# Drills deploy broken revisions: by default on a stack of their own, never the one others use.
DRILL_STATE_FILE = REPO_ROOT / ".stack" / "drills" / "stack.json"


class StackUnavailable(RuntimeError):
    """The stack could not be started or is not a local one (the message says why)."""


def choose_state_file(explicit: Path | str | None) -> Path:
    """--state-file, else $IMAGEFLOW_STACK_FILE, else the drills' own state file (always absolute)."""
    chosen = explicit or os.environ.get(STATE_ENV) or DRILL_STATE_FILE
    return Path(chosen).resolve()


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # An exception, so the finally blocks stop the suite run and the stack this run started.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def local_stack(state_file: Path, say: Callable[[str], None] = print) -> Iterator[StackControl]:
    """A control handle on a healthy stack at state_file; one started here is stopped on exit, or SIGTERM."""
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with _healthy_stack(state_file, say) as control:
            yield control
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


@contextlib.contextmanager
def _healthy_stack(state_file: Path, say: Callable[[str], None]) -> Iterator[StackControl]:
    started: runner.StartedStack | None = None
    if not runner.healthy(state_file):
        say(f"starting a local stack ({state_file})")
        try:
            started = runner.start(state_file, say=say)
        except runner.StackError as exc:
            raise StackUnavailable(f"the local stack did not start: {exc}") from exc
    try:
        control = StackControl(state_file)
        if control.state.environment != "local":
            raise StackUnavailable(f"the stack at {state_file} is {control.state.environment}, not local")
        yield control
    finally:
        if started is not None:
            say("stopping the local stack started for this run")
            started.stop()
