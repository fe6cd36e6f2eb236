"""Test-only failure plans: one test user's uploads made to fail on purpose, nobody else's.

A release verifies its failure paths on a deployed candidate without breaking any other test that
runs beside it: the suite writes, with admin credentials, a plan document keyed by its own test
user's uid (collection `test_failures`, which firestore.rules' default deny keeps clients out of),
and the services consult it only when IMAGEFLOW_TEST_FAILURES=allowed (config.load refuses that on
production), only for workflows owned by that uid, with one read per delivery and nothing cached.

    {"agents": {"thumbnailer": {"mode": "error"}}, "dashboard": {"mode": "store_fails"}}

Agent modes: `error` (the handler raises), `transient:N` (the first N attempts raise a transient
error, then the work succeeds), `always_5xx` (every attempt raises a transient error), and
`publish_fails:N` (the output message fails to publish on the first N deliveries); the finalizer,
which claims no step, honours `error` (the delivery that would complete the workflow fails it)
and `publish_fails:N`. Dashboard
modes: `store_fails` (storing the original fails), `publish_fails` (queueing the upload fails).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

COLLECTION = "test_failures"
AGENT_MODES = ("error", "transient", "always_5xx", "publish_fails")
DASHBOARD_MODES = ("store_fails", "publish_fails")
# Modes that take a count (`transient:N`, `publish_fails:N`); without one, the count is 1.
COUNTED_MODES = frozenset({"transient", "publish_fails"})


class PlanError(ValueError):
    """A failure plan names an unknown mode (the message names it)."""


class InjectedFailure(RuntimeError):
    """An agent's handler error, raised because the test's failure plan asks for it."""


class InjectedTransientError(ConnectionError):
    """A transient infrastructure error (a 5xx and a redelivery), raised because the plan asks for it."""


@dataclass(frozen=True)
class Mode:
    """One planned failure: its kind and, for counted kinds, how many times it happens."""

    kind: str
    count: int = 1

    @property
    def text(self) -> str:
        """The mode as written in a plan document."""
        return f"{self.kind}:{self.count}" if self.kind in COUNTED_MODES else self.kind


def parse_mode(raw: object, allowed: tuple[str, ...]) -> Mode:
    """A plan's mode string ("error", "transient:3", ...) parsed; PlanError when unknown."""
    if not isinstance(raw, str):
        raise PlanError(f"failure mode {raw!r} is not a string")
    kind, colon, count_text = raw.partition(":")
    if kind not in allowed:
        raise PlanError(f"unknown failure mode {raw!r} (known: {', '.join(allowed)})")
    if not colon:
        return Mode(kind)
    if kind not in COUNTED_MODES or not count_text.isdigit() or int(count_text) < 1:
        raise PlanError(f"failure mode {raw!r}: only {', '.join(sorted(COUNTED_MODES))} take a count >= 1")
    return Mode(kind, int(count_text))


def plan_ref(client: firestore.Client, uid: str) -> firestore.DocumentReference:
    """The plan document of one test user."""
    return client.collection(COLLECTION).document(uid)


def _read(client: firestore.Client, uid: str) -> Mapping[str, Any]:
    if not uid:
        return {}
    snapshot = plan_ref(client, uid).get()
    data = snapshot.to_dict() if snapshot.exists else None
    return data if isinstance(data, Mapping) else {}


def _mode_in(section: object, allowed: tuple[str, ...]) -> Mode | None:
    if not isinstance(section, Mapping) or "mode" not in section:
        return None
    return parse_mode(section["mode"], allowed)


def agent_mode(client: firestore.Client, uid: str, agent: str) -> Mode | None:
    """The failure planned for agent on uid's workflows (None: behave normally); one read."""
    agents = _read(client, uid).get("agents")
    return _mode_in(agents.get(agent) if isinstance(agents, Mapping) else None, AGENT_MODES)


def dashboard_mode(client: firestore.Client, uid: str) -> Mode | None:
    """The failure planned for the dashboard on uid's uploads (None: behave normally); one read."""
    return _mode_in(_read(client, uid).get("dashboard"), DASHBOARD_MODES)
