"""Burst limits on login and registration: fixed-window counters in Firestore, shared by every instance.

The counters live in Firestore rather than in process memory so that the limit holds across the
instances (and revisions) of the service; the ``ratelimits`` collection is closed to clients by
firestore.rules' default deny. Limits come from ``IMAGEFLOW_RATE_LIMITS``, e.g.
``login_account=5/300,login_ip=200/300,register_ip=100/300`` (count/window seconds), so a test
target can tighten or loosen them without a code change.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud import firestore

from imageflow import clients
from imageflow.config import ConfigError
from imageflow.dashboard.session_store import SessionStoreUnavailable

COLLECTION = "ratelimits"
ENV_KEY = "IMAGEFLOW_RATE_LIMITS"
TIMEOUT_SECONDS = 10.0


class RateLimitConfigError(ConfigError):
    """IMAGEFLOW_RATE_LIMITS cannot be parsed (the message says which entry)."""


@dataclass(frozen=True)
class Limit:
    """At most count events per window of window_seconds."""

    count: int
    window_seconds: int


@dataclass(frozen=True)
class RateLimits:
    """The dashboard's limits: failed logins per account and per client, registrations per client."""

    # Failed logins and refused registrations of one email address (password guessing, probing).
    login_account: Limit = Limit(5, 300)
    # Every client seen as one address locally (the router): high enough for a parallel suite.
    login_ip: Limit = Limit(200, 300)
    register_ip: Limit = Limit(100, 300)


def parse_rate_limits(raw: str) -> RateLimits:
    """RateLimits from "name=count/seconds,..." (unset names keep their defaults)."""
    limits = RateLimits()
    known = set(RateLimits.__dataclass_fields__)
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        name, _, value = entry.partition("=")
        count, _, window = value.partition("/")
        name = name.strip()
        if name not in known or not count.strip().isdigit() or not window.strip().isdigit():
            raise RateLimitConfigError(
                f"{ENV_KEY} entry {entry!r} is not name=count/seconds with name in {', '.join(sorted(known))}"
            )
        limit = Limit(int(count), int(window))
        if limit.count < 1 or limit.window_seconds < 1:
            raise RateLimitConfigError(f"{ENV_KEY} entry {entry!r}: count and window must be at least 1")
        limits = replace(limits, **{name: limit})
    return limits


def limits_from_environment(environ: dict[str, str] | None = None) -> RateLimits:
    """The limits configured in IMAGEFLOW_RATE_LIMITS (defaults when unset)."""
    return parse_rate_limits((environ if environ is not None else os.environ).get(ENV_KEY, ""))


class RateLimiter:
    """Counts events per (kind, key) in the current window and says how long a blocked caller waits."""

    def __init__(self, project: str) -> None:
        self.project = project

    def _window(self, limit: Limit) -> tuple[int, int]:
        """The current window's start and the seconds left in it."""
        at = time.time()
        start = int(at // limit.window_seconds) * limit.window_seconds
        return start, max(1, math.ceil(start + limit.window_seconds - at))

    def _ref(self, kind: str, key: str, start: int) -> firestore.DocumentReference:
        digest = hashlib.sha256(f"{kind}\n{key}\n{start}".encode()).hexdigest()
        return clients.firestore_client(self.project).collection(COLLECTION).document(digest)

    def retry_after(self, kind: str, key: str, limit: Limit) -> int | None:
        """Seconds until this key may try again, or None when it is under its limit."""
        start, left = self._window(limit)
        try:
            snapshot = self._ref(kind, key, start).get(timeout=TIMEOUT_SECONDS)
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"rate limit not read ({type(exc).__name__})") from None
        count = int((snapshot.to_dict() or {}).get("count", 0)) if snapshot.exists else 0
        return left if count >= limit.count else None

    def hit(self, kind: str, key: str, limit: Limit) -> None:
        """Count one event for this key in the current window."""
        start, _ = self._window(limit)
        expires_at = datetime.fromtimestamp(start + limit.window_seconds, UTC) + timedelta(minutes=1)
        try:
            self._ref(kind, key, start).set(
                {"count": firestore.Increment(1), "kind": kind, "expires_at": expires_at},
                merge=True,
                timeout=TIMEOUT_SECONDS,
            )
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"rate limit not counted ({type(exc).__name__})") from None
