"""The local stack a drill or benchmark runs against: a running one, or one started (and stopped) here."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from drills import sigterm
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


@contextlib.contextmanager
def local_stack(state_file: Path, say: Callable[[str], None] = print) -> Iterator[StackControl]:
    """A control handle on a healthy stack at state_file; one started here is stopped on exit, or SIGTERM."""
    with sigterm.exit_on_sigterm(), _healthy_stack(state_file, say) as control:
        yield control


@contextlib.contextmanager
def _healthy_stack(state_file: Path, say: Callable[[str], None]) -> Iterator[StackControl]:
    """A running stack at state_file, started (and stopped on exit) here if none answers."""
    started: runner.StartedStack | None = None
    try:
        if not runner.healthy(state_file):
            say(f"starting a local stack ({state_file})")
            try:
                # Bounded by the start's own timeouts; a SIGTERM meanwhile acts once `started` is known.
                with sigterm.deferred():
                    started = runner.start(state_file, say=say)
            except runner.StackError as exc:
                raise StackUnavailable(f"the local stack did not start: {exc}") from exc
        control = StackControl(state_file)
        if control.state.environment != "local":
            raise StackUnavailable(f"the stack at {state_file} is {control.state.environment}, not local")
        yield control
    finally:
        if started is not None:
            say("stopping the local stack started for this run")
            started.stop()
