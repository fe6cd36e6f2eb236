"""Faults only traffic shows: a lane's few requests pass, and what each promises breaks under load."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from imageflow import faults, traffic_faults
from imageflow.config import ConfigError, parse_faults
from imageflow.manifest import default as default_manifest
from imageflow.traffic_faults import FAIL_EVERY, LEAK_REQUESTS, TrafficFaults, wrap

Start = Callable[..., Any]


def ok_app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
    """A service that always answers 200."""
    start("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def status_of(app: Callable[[dict[str, Any], Start], Iterable[bytes]], path: str = "/") -> int:
    """The status code one request to path gets."""
    seen: list[str] = []
    body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda status, headers: seen.append(status))
    b"".join(body)
    return int(seen[0].split()[0])


def test_an_app_without_traffic_faults_is_served_as_it_is() -> None:
    assert wrap(ok_app, "dashboard", ["dashboard.registration_broken", "exif.fails_share"]) is ok_app


def test_fails_share_fails_exactly_one_request_in_every_four_and_never_a_probe() -> None:
    app = wrap(ok_app, "exif", ["exif.fails_share"])
    statuses = [status_of(app) for _ in range(40)]
    assert statuses.count(500) == 40 // FAIL_EVERY
    assert statuses[: FAIL_EVERY - 1] == [200] * (FAIL_EVERY - 1), "a lane's first requests must pass"
    assert {status_of(app, "/readyz") for _ in range(8)} == {200}


def test_the_endpoint_fault_breaks_only_the_workflow_api() -> None:
    app = wrap(ok_app, "dashboard", [traffic_faults.ENDPOINT_FAULT])
    assert {status_of(app, "/") for _ in range(12)} == {200}
    polled = [status_of(app, "/api/workflows/w1") for _ in range(12)]
    assert 500 in polled
    assert polled.count(200) >= 6


def test_latency_tripled_waits_twice_the_time_the_request_took(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(traffic_faults.time, "monotonic", lambda: clock[0])

    def slow_app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        clock[0] += 0.05  # the request's own work: 50 ms
        return ok_app(environ, start)

    app = wrap(slow_app, "thumbnailer", ["thumbnailer.latency_tripled"])
    assert isinstance(app, TrafficFaults)
    waited: list[float] = []
    monkeypatch.setattr(app, "_never", type("Never", (), {"wait": lambda self, s: waited.append(s)})())
    assert status_of(app) == 200
    assert waited == [pytest.approx(0.1)]


def test_fails_under_concurrency_passes_requests_one_at_a_time_and_fails_above_the_limit() -> None:
    limit = traffic_faults.CONCURRENCY_LIMIT
    inside = threading.Barrier(limit + 1)
    release = threading.Event()

    def holding_app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        if not release.is_set():
            inside.wait(timeout=10)
            release.wait(timeout=10)
        return ok_app(environ, start)

    app = wrap(holding_app, "dashboard", ["dashboard.fails_under_concurrency"])
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(status_of(app))) for _ in range(limit)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)  # `limit` requests are now in flight
    assert status_of(app) == 503
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [200] * limit
    assert [status_of(app) for _ in range(3)] == [200, 200, 200], "one at a time always passes"


def test_leak_crash_ends_the_process_after_its_number_of_requests() -> None:
    script = (
        "from imageflow.traffic_faults import wrap\n"
        "from tests.system.test_traffic_faults import ok_app, status_of\n"
        "app = wrap(ok_app, 'exif', ['exif.leak_crash'])\n"
        f"for n in range({LEAK_REQUESTS}):\n"
        "    assert status_of(app) == 200\n"
        "print('served', flush=True)\n"
        "status_of(app)\n"
        "print('still alive', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.split() == ["served"], result.stderr
    assert result.returncode == 137


def test_every_traffic_fault_is_a_known_switch_and_refused_where_real_users_are() -> None:
    agents = default_manifest().agent_names
    # The agents warn about switches they do not know: every traffic fault of an agent is known.
    assert faults.unknown(traffic_faults.catalogue(agents), agents) == []
    assert "dashboard.fails_share" in traffic_faults.catalogue(["dashboard"])
    for environment in ("staging", "production"):
        with pytest.raises(ConfigError, match="refused"):
            parse_faults("exif.fails_share", environment)
