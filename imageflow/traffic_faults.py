"""Faults only traffic shows (IMAGEFLOW_FAULTS), injected at the edge of every service as WSGI middleware.

A lane verification sends a few requests one at a time: each of these faults lets them all through.
Under real traffic they break a share of requests, slow every one, fail above a level of concurrency
or crash the process after a while: what the canary analysis and the bake are there to catch. The
middleware wraps the service from outside (imageflow.serve), so the service's own code is the real
code path. Off by default, refused on staging and production like every fault switch (config).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Faults every service (dashboard and agents) understands: switch name f"{service}.{fault}".
TRAFFIC_FAULTS: dict[str, str] = {
    "fails_share": "answer 500 to one request in FAIL_EVERY (deliveries are redelivered by Pub/Sub)",
    "latency_tripled": "every request takes three times as long as it did (well under the deadline)",
    "fails_under_concurrency": "answer 503 while more than CONCURRENCY_LIMIT requests are in flight",
    "leak_crash": "keep memory from every request and crash after LEAK_REQUESTS requests",
}
# Only the dashboard's: one endpoint, the workflow page's polling, fails a share of its requests.
ENDPOINT_FAULT = "dashboard.endpoint_fails_share"
ENDPOINT_PREFIX = "/api/workflows/"

FAIL_EVERY = 4
CONCURRENCY_LIMIT = 2
# Requests served before the leak ends the process (a lane verification sends far fewer).
LEAK_REQUESTS = 150
LEAK_BYTES_PER_REQUEST = 64 * 1024
# Health probes never fail: the stack (and Cloud Run) would stop routing to the revision at once.
PROBES = ("/healthz", "/readyz")

Start = Callable[..., Any]
App = Callable[[dict[str, Any], Start], Iterable[bytes]]


def catalogue(services: Iterable[str]) -> dict[str, str]:
    """Every traffic fault switch for these services, with a one-line description."""
    generic = {f"{s}.{fault}": text for s in services for fault, text in TRAFFIC_FAULTS.items()}
    return {**generic, ENDPOINT_FAULT: "GET /api/workflows/ID answers 500 to one request in FAIL_EVERY"}


class TrafficFaults:
    """The WSGI middleware: the service's app, with the traffic faults switched on for it."""

    def __init__(self, app: App, service: str, faults: Iterable[str]) -> None:
        self.app = app
        on = {f.split(".", 1)[1] for f in faults if f.startswith(f"{service}.")}
        self.on = on
        self._lock = threading.Lock()
        self._served = 0
        self._in_flight = 0
        self._kept: list[bytes] = []
        # Waited on, never set: a delay that a shutdown does not need to interrupt (daemon threads).
        self._never = threading.Event()

    def __call__(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        """Serve one request through the switched-on faults."""
        path = str(environ.get("PATH_INFO", ""))
        if path in PROBES:
            return self.app(environ, start)
        with self._lock:
            self._served += 1
            self._in_flight += 1
            number, concurrent = self._served, self._in_flight
            if "leak_crash" in self.on:
                self._kept.append(bytes(LEAK_BYTES_PER_REQUEST))
        try:
            if "leak_crash" in self.on and number > LEAK_REQUESTS:
                # Out of memory, as the kernel would end it: no answer, no cleanup.
                os._exit(137)
            if "fails_under_concurrency" in self.on and concurrent > CONCURRENCY_LIMIT:
                return _answer(start, "503 Service Unavailable", "overloaded")
            failing_endpoint = "endpoint_fails_share" in self.on and path.startswith(ENDPOINT_PREFIX)
            if ("fails_share" in self.on or failing_endpoint) and number % FAIL_EVERY == 0:
                return _answer(start, "500 Internal Server Error", "internal error")
            began = time.monotonic()
            body = _collected(self.app(environ, start))
            if "latency_tripled" in self.on:
                self._never.wait(2 * (time.monotonic() - began))
            return body
        finally:
            with self._lock:
                self._in_flight -= 1


def _collected(answer: Iterable[bytes]) -> list[bytes]:
    """The whole body of an app's answer, its iterable closed as WSGI requires."""
    try:
        return list(answer)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()


def _answer(start: Start, status: str, text: str) -> Iterator[bytes]:
    """A plain-text error answer."""
    body = f"{text}\n".encode()
    start(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    yield body


def wrap(app: App, service: str, faults: Iterable[str]) -> App:
    """The app, wrapped only when one of its traffic faults is switched on."""
    middleware = TrafficFaults(app, service, faults)
    return middleware if middleware.on & (set(TRAFFIC_FAULTS) | {"endpoint_fails_share"}) else app
