"""The plan as code: the ordered steps of a deploy for an environment, bound to an executor."""

from __future__ import annotations

from typing import Protocol

from deploy.context import RunContext
from deploy.steps import TITLES, Change, Step


class Executor(Protocol):
    """What an executor offers: one method per step key, and the changes it made so far."""

    changes: list[Change]


def step_keys(ctx: RunContext) -> list[str]:
    """The plan's step keys, in order, for this run (the backup only where it is asked for)."""
    keys = ["infrastructure", "secrets"]
    if ctx.backup:
        keys.append("backup")
    return [*keys, "candidates", "rules", "verify", "promote", "monitoring", "checklist"]


def build(ctx: RunContext, executor: Executor) -> list[Step]:
    """The steps of the plan, each bound to how the executor does and checks it."""
    return [
        Step(key, TITLES[key], getattr(executor, key), getattr(executor, f"check_{key}", None))
        for key in step_keys(ctx)
    ]
