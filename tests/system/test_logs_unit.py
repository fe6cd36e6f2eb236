"""The services' JSON log lines: Cloud Logging's fields, trace correlation, per-request fields, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from imageflow import config, logs
from imageflow.agents import base
from imageflow.dashboard.app import create_app as create_dashboard
from imageflow.manifest import default as default_manifest

MANIFEST = default_manifest()
PROJECT = "demo-imageflow"
TRACE_ID = "105445aa7843bc8bf206b12000100000"
GOOD_HEADER = f"{TRACE_ID}/1;o=1"
REPO = Path(__file__).resolve().parents[2]


class Captured:
    """The JSON lines one test's records produced, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def entries(self) -> list[dict[str, Any]]:
        """Every line so far, each parsed on its own."""
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def about(self, needle: str) -> list[dict[str, Any]]:
        """The entries whose message contains needle."""
        return [e for e in self.entries() if needle in e["message"]]


def capture(formatter: logging.Formatter) -> Iterator[Captured]:
    """A handler with formatter on the imageflow logger, for the length of one test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    package = logging.getLogger("imageflow")
    previous = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        package.removeHandler(handler)
        package.setLevel(previous)


@pytest.fixture
def captured() -> Iterator[Captured]:
    """The imageflow logger's lines as JSON (no defaults, no known secrets)."""
    yield from capture(logs.JsonFormatter())


log = logging.getLogger("imageflow.tests.logs")


# --- the trace header ---------------------------------------------------------------------------


def test_a_trace_header_gives_the_trace_the_span_in_hex_and_the_sampling_flag() -> None:
    assert logs.trace_fields(GOOD_HEADER, PROJECT) == {
        logs.TRACE_KEY: f"projects/{PROJECT}/traces/{TRACE_ID}",
        logs.SPAN_KEY: "0000000000000001",
        logs.SAMPLED_KEY: True,
    }
    assert logs.trace_fields(f"{TRACE_ID.upper()}/18446744073709551615;o=0", PROJECT) == {
        logs.TRACE_KEY: f"projects/{PROJECT}/traces/{TRACE_ID}",
        logs.SPAN_KEY: "ffffffffffffffff",
        logs.SAMPLED_KEY: False,
    }
    assert logs.trace_fields(TRACE_ID, PROJECT) == {logs.TRACE_KEY: f"projects/{PROJECT}/traces/{TRACE_ID}"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "nonsense",
        TRACE_ID[:-1],
        TRACE_ID + "0",
        f"{TRACE_ID[:-1]}g/1;o=1",
        f"{TRACE_ID}/abc;o=1",
        f"{TRACE_ID}/1;o=x",
        f"{TRACE_ID}/1;o=1;extra",
        f"projects/x/traces/{TRACE_ID}",
        f"{TRACE_ID}/1\n;o=1",
    ],
)
def test_a_malformed_trace_header_gives_no_trace_field(header: str | None) -> None:
    assert logs.trace_fields(header, PROJECT) == {}


def test_span_zero_or_past_64_bits_is_left_out_and_no_project_gives_no_trace() -> None:
    assert logs.SPAN_KEY not in logs.trace_fields(f"{TRACE_ID}/0;o=1", PROJECT)
    assert logs.SPAN_KEY not in logs.trace_fields(f"{TRACE_ID}/18446744073709551616;o=1", PROJECT)
    assert logs.trace_fields(GOOD_HEADER, "") == {}


# --- the formatter ------------------------------------------------------------------------------


def test_a_line_is_one_json_object_with_cloud_loggings_fields(captured: Captured) -> None:
    log.warning("delivery workflow=%s ok\nsecond line", "wf-1")
    log.info("plain")
    first, second = captured.entries()
    assert first["severity"] == "WARNING"
    assert first["message"] == "delivery workflow=wf-1 ok\nsecond line"
    assert first["logger"] == "imageflow.tests.logs"
    stamp = datetime.fromisoformat(first["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert second["severity"] == "INFO"
    assert captured.stream.getvalue().count("\n") == 2, "a multi-line message must stay on one line"


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
    ],
)
def test_levels_become_cloud_logging_severities(level: int, severity: str) -> None:
    record = logging.LogRecord("imageflow", level, __file__, 1, "m", None, None)
    assert json.loads(logs.JsonFormatter().format(record))["severity"] == severity


def test_an_exception_goes_to_stack_trace_with_secrets_masked() -> None:
    session_secret, push_token = "s3ss10n-secret-value", "push-token-value"
    formatter = logs.JsonFormatter(
        {"service": "dashboard", "revision": "dashboard-00001"}, [session_secret, push_token]
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
    record: logging.LogRecord
    try:
        raise RuntimeError(
            f"POST http://127.0.0.1/?token={push_token}&x=1 with Bearer {jwt}: {session_secret}"
        )
    except RuntimeError:
        record = logging.LogRecord(
            "imageflow", logging.ERROR, __file__, 1, "failed: %s", (session_secret,), sys.exc_info()
        )
    handler.emit(record)
    text = stream.getvalue()
    entry = json.loads(text)
    assert entry["message"] == f"failed: {logs.REDACTED}"
    assert "Traceback (most recent call last)" in entry["stack_trace"]
    assert "RuntimeError: POST http://127.0.0.1/?token=[redacted]&x=1" in entry["stack_trace"]
    assert entry["service"] == "dashboard"
    assert entry["revision"] == "dashboard-00001"
    for secret in (session_secret, push_token, jwt):
        assert secret not in text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET /?token=abc&x=1", "GET /?token=[redacted]&x=1"),
        (
            "POST https://h/v1/accounts:signIn?key=AIzaSy123",
            "POST https://h/v1/accounts:signIn?key=[redacted]",
        ),
        ("refresh_token=r1 password=hunter2", "refresh_token=[redacted] password=[redacted]"),
        ("delivery status=400 ms=5 exit_code=1 monkey=3", "delivery status=400 ms=5 exit_code=1 monkey=3"),
    ],
)
def test_credential_parameters_are_masked_and_ordinary_fields_kept(text: str, masked: str) -> None:
    assert logs.JsonFormatter().redact(text) == masked


def test_fields_bound_in_one_thread_never_reach_another(captured: Captured) -> None:
    both_bound = threading.Barrier(2, timeout=10)
    both_logged = threading.Barrier(2, timeout=10)

    def deliver(workflow_id: str) -> None:
        token = logs.bind(workflow_id=workflow_id, agent=f"agent-of-{workflow_id}")
        try:
            both_bound.wait()  # both threads hold their fields when either logs
            log.info("working on %s", workflow_id)
            both_logged.wait()
            log.info("done with %s", workflow_id)
        finally:
            logs.reset(token)

    threads = [threading.Thread(target=deliver, args=(wid,)) for wid in ("wf-a", "wf-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "a logging thread never finished"
    log.info("after both")
    for wid in ("wf-a", "wf-b"):
        lines = captured.about(wid)
        assert len(lines) == 2
        assert all(e["workflow_id"] == wid and e["agent"] == f"agent-of-{wid}" for e in lines), lines
    (after,) = captured.about("after both")
    assert "workflow_id" not in after
    assert "agent" not in after


# --- the services -------------------------------------------------------------------------------


class DoneAgent(base.Agent):
    """An agent whose delivery succeeds without Firestore, to see the lines of one delivery."""

    def deliver(self, delivery: base.Delivery) -> base.Outcome:
        """Log, as real work would, and succeed."""
        base.log.info("working on workflow=%s", delivery.workflow_id)
        return base.Outcome(200, "done")


def agent_app() -> Flask:
    settings = config.load(
        MANIFEST.agent("thumbnailer"),
        {"GOOGLE_CLOUD_PROJECT": PROJECT, "IMAGEFLOW_BUCKET": "b", "K_REVISION": "thumbnailer-00007"},
    )
    return base.create_agent_app("thumbnailer", lambda job: {}, settings, agent_class=DoneAgent)


def test_an_agents_delivery_lines_carry_workflow_agent_revision_and_trace(captured: Captured) -> None:
    client = agent_app().test_client()
    response = client.post(
        "/", json=base.envelope({"workflow_id": "wf-traced"}), headers={logs.TRACE_HEADER: GOOD_HEADER}
    )
    assert response.status_code == 200
    lines = captured.about("wf-traced")
    assert [e["message"].split()[0] for e in lines] == ["working", "delivery"]
    for entry in lines:
        assert entry["workflow_id"] == "wf-traced"
        assert entry["agent"] == "thumbnailer"
        assert entry["revision"] == "thumbnailer-00007"
        assert entry[logs.TRACE_KEY] == f"projects/{PROJECT}/traces/{TRACE_ID}"
        assert entry[logs.SPAN_KEY] == "0000000000000001"
    assert logs.current_fields() == {}, "a request's fields outlived it"


def test_a_malformed_trace_header_is_no_error_and_no_trace_field(captured: Captured) -> None:
    client = agent_app().test_client()
    response = client.post(
        "/", json=base.envelope({"workflow_id": "wf-untraced"}), headers={logs.TRACE_HEADER: "x/y;o=?"}
    )
    assert response.status_code == 200
    (delivery,) = [e for e in captured.about("wf-untraced") if e["message"].startswith("delivery")]
    assert delivery["workflow_id"] == "wf-untraced"
    assert logs.TRACE_KEY not in delivery
    assert logs.SPAN_KEY not in delivery


def test_a_refused_push_logs_no_workflow_id_and_the_next_request_inherits_none(captured: Captured) -> None:
    client = agent_app().test_client()
    assert client.post("/", json=base.envelope({"workflow_id": "wf-first"})).status_code == 200
    assert client.post("/", data=b"not json", content_type="application/json").status_code == 400
    refused = captured.about("outcome=bad-request")
    assert len(refused) == 1
    assert "workflow_id" not in refused[0]


def test_a_service_process_writes_json_lines_with_its_fields(tmp_path: Path) -> None:
    """In a process with no logging set up (as under serve.py), the dashboard logs JSON, secrets masked."""
    secret = "dashboard-session-secret-value"
    script = (
        "import logging\n"
        "from imageflow.dashboard.app import create_app\n"
        "app = create_app()\n"
        f"logging.getLogger('imageflow.dashboard').warning('leaked %s', {secret!r})\n"
        f"app.test_client().get('/workflows/wf-page', headers={{'{logs.TRACE_HEADER}': '{GOOD_HEADER}'}})\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")},
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "K_REVISION": "dashboard-00003",
        "SESSION_SECRET": secret,
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert entries, "the dashboard logged nothing"
    assert all(e["service"] == "dashboard" and e["revision"] == "dashboard-00003" for e in entries), entries
    assert secret not in done.stderr
    assert any(e["message"] == f"leaked {logs.REDACTED}" for e in entries)


def test_a_dashboard_request_line_carries_the_pages_workflow_id_and_trace(captured: Captured) -> None:
    settings = config.load(
        MANIFEST.dashboard,
        {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "IMAGEFLOW_BUCKET": "b",
            "SESSION_SECRET": "a-session-secret",
            "FIREBASE_API_KEY": "k",
            "K_REVISION": "dashboard-00004",
        },
    )
    app = create_dashboard(settings)

    def boom(workflow_id: str) -> str:
        raise RuntimeError(f"broken page of {workflow_id}")

    # A page that fails: the dashboard's own error handler writes the line under test.
    app.add_url_rule("/workflows/<workflow_id>/boom", view_func=boom)
    response = app.test_client().get("/workflows/wf-page/boom", headers={logs.TRACE_HEADER: GOOD_HEADER})
    assert response.status_code == 500
    (entry,) = captured.about("unhandled RuntimeError")
    assert entry["severity"] == "ERROR"
    assert entry["workflow_id"] == "wf-page"
    assert entry["service"] == "dashboard"
    assert entry["revision"] == "dashboard-00004"
    assert entry[logs.TRACE_KEY] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert "agent" not in entry
    assert logs.current_fields() == {}
