"""The vocabulary of a plan: steps, the changes they make, and how they fail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class StepFailed(RuntimeError):
    """A step could not do or check itself; the message is one line."""


class VerificationFailed(StepFailed):
    """The suite ran against the candidates and was red."""


class PreflightError(ValueError):
    """Bad input found before any step ran (one-line message, exit 2)."""


@dataclass(frozen=True)
class Change:
    """One thing a run changed, with how to undo it and the command a human runs if that fails."""

    what: str
    undo: Callable[[], object]
    manual: str


@dataclass(frozen=True)
class Step:
    """One step of the plan: it does itself, checks itself, and registers what it changed."""

    key: str
    title: str
    run: Callable[[], str]
    check: Callable[[], None] | None = None


# The plan's steps in order, with the seed plan's section in the title's docstring sense.
TITLES = {
    "infrastructure": "infrastructure (topics, subscriptions, dead-letter, bucket, database)",
    "secrets": "secrets present",
    "backup": "backup Firestore",
    "candidates": "deploy candidates",
    "rules": "deploy firestore.rules",
    "verify": "verify candidates",
    "canary": "canary steps (traffic shares, analysis per window)",
    "promote": "promote candidates",
    "bake": "bake at 100 % (watched against the previous release)",
    "monitoring": "monitoring active",
    "checklist": "post-launch checklist",
}
