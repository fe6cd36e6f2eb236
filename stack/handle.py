"""The one way to get a local stack: choose its state file, then use the stack running there or one
started (and stopped again) here, SIGTERM-safe. The suite's stack plugin, the deploy tool's local
executor, the drills and the benchmarks all go through it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from stack import runner, sigterm
from stack.control import StackControl
from stack.state import REPO_ROOT, STATE_ENV, default_path

# Drills deploy broken revisions: by default on a stack of their own, never the one others use.
DRILL_STATE_FILE = REPO_ROOT / ".stack" / "drills" / "stack.json"


class StackUnavailable(RuntimeError):
    """The stack could not be started or is not a local one (the message says why)."""


def choose_state_file(explicit: Path | str | None = None, *, own: Path, share_running: bool) -> Path:
    """explicit, else $IMAGEFLOW_STACK_FILE, else the default stack when it runs and share_running
    allows it, else own: a path for the caller's own stack (always absolute)."""
    chosen = explicit or os.environ.get(STATE_ENV)
    if chosen:
        return Path(chosen).resolve()
    if share_running and runner.healthy(default_path()):
        return default_path().resolve()
    return own.resolve()


def drill_state_file(explicit: Path | str | None = None) -> Path:
    """The stack of a drill or benchmark: --state-file, $IMAGEFLOW_STACK_FILE or the drills' own."""
    return choose_state_file(explicit, own=DRILL_STATE_FILE, share_running=False)


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
