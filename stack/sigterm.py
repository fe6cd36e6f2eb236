"""SIGTERM (a CI timeout) as SystemExit, so finally blocks stop what a drill started."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

_deferring = False
_pending: list[int] = []


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    if _deferring:
        _pending.append(signum)
        return
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143); the previous handler is restored after."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGTERM waits until the block ends: a child being started is always known to whoever stops it."""
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if _pending:
        raise SystemExit(128 + _pending.pop())
