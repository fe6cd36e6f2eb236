"""An agent's push endpoint admits only the push identity and refuses oversized bodies unread.

In-process through Flask's test client (no emulator), and through the real HTTP server of
`python -m imageflow.serve` (waitress) for what only a socket shows: a body refused from its
headers, and a chunked body cut off once past the limit.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from imageflow import config
from imageflow.agents import base, validator
from imageflow.manifest import default as default_manifest
from stack import infra, processes

MANIFEST = default_manifest()
TOKEN = "push-token-for-tests-" + "x" * 20
LIMIT = base.PUSH_BODY_LIMIT_BYTES
SERVER_START_SECONDS = 30.0
SOCKET_TIMEOUT_SECONDS = 10.0


class UnreadableStream(io.RawIOBase):
    """A request body that fails the test if anyone reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        raise AssertionError("the push body was read although its headers already refused it")


def settings(token: str = TOKEN, **env: str) -> config.Settings:
    """Validator settings (ready), with a push token unless token is empty."""
    environ = {"GOOGLE_CLOUD_PROJECT": "demo-imageflow", "IMAGEFLOW_BUCKET": "imageflow-uploads", **env}
    if token:
        environ[config.PUSH_TOKEN_ENV] = token
    return config.load(MANIFEST.agent("validator"), environ)


@pytest.fixture
def app() -> Flask:
    """The validator requiring TOKEN on every push."""
    return validator.create_app(settings())


# An envelope that every check but the envelope's own accepts: 400 proves the push got that far.
NOT_AN_ENVELOPE = {"hello": "world"}


@pytest.mark.parametrize(
    ("query", "status", "outcome"),
    [
        ("", 401, "unauthenticated"),
        ("?token=", 401, "unauthenticated"),
        ("?other=" + TOKEN, 401, "unauthenticated"),
        ("?token=wrong", 403, "forbidden"),
        ("?token=" + TOKEN[:-1], 403, "forbidden"),
        ("?token=" + TOKEN + "x", 403, "forbidden"),
        ("?token=" + TOKEN.upper(), 403, "forbidden"),
    ],
)
def test_a_push_without_the_right_token_is_refused(app: Flask, query: str, status: int, outcome: str) -> None:
    response = app.test_client().post("/" + query, json=base.envelope({"workflow_id": "wf-1"}))
    assert response.status_code == status
    body = response.get_json()
    assert body["outcome"] == outcome
    assert TOKEN not in response.get_data(as_text=True)


def test_a_push_with_the_token_reaches_the_envelope_checks(app: Flask) -> None:
    response = app.test_client().post(f"/?token={TOKEN}", json=NOT_AN_ENVELOPE)
    assert response.status_code == 400
    assert response.get_json()["error"] == "no Pub/Sub message in the envelope"


def test_without_the_setting_no_token_is_required() -> None:
    """On Cloud Run the platform's IAM check admits only the push identity: the agent checks nothing."""
    open_app = validator.create_app(settings(token=""))
    response = open_app.test_client().post("/", json=NOT_AN_ENVELOPE)
    assert response.status_code == 400


def test_the_token_never_shows_in_settings_repr_or_readiness() -> None:
    chosen = settings()
    assert TOKEN not in repr(chosen)
    assert TOKEN not in json.dumps(chosen.readiness())


def test_an_oversized_content_length_is_refused_unread(app: Flask) -> None:
    response = app.test_client().post(
        f"/?token={TOKEN}",
        environ_overrides={"wsgi.input": UnreadableStream(), "CONTENT_LENGTH": str(40 * 1024 * 1024)},
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json()["outcome"] == "too-large"


def test_the_size_is_refused_before_the_token_is_asked_for(app: Flask) -> None:
    response = app.test_client().post(
        "/",
        environ_overrides={"wsgi.input": UnreadableStream(), "CONTENT_LENGTH": str(LIMIT + 1)},
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def padded(size: int) -> bytes:
    """A JSON object (not an envelope) of exactly size bytes."""
    frame = b'{"pad": ""}'
    return b'{"pad": "' + b"a" * (size - len(frame)) + b'"}'


@pytest.mark.parametrize(("size", "status"), [(LIMIT, 400), (LIMIT + 1, 413)])
def test_the_limit_is_exact(app: Flask, size: int, status: int) -> None:
    body = padded(size)
    assert len(body) == size
    response = app.test_client().post(
        f"/?token={TOKEN}", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status


@pytest.mark.parametrize(("size", "status"), [(LIMIT, "400"), (LIMIT + 1, "413"), (4 * LIMIT, "413")])
def test_a_streamed_body_is_refused_just_past_the_limit(app: Flask, size: int, status: str) -> None:
    """No Content-Length, a terminated stream: what a server hands over for a chunked body."""
    stream = io.BytesIO(padded(size))
    environ = EnvironBuilder(
        path="/", method="POST", query_string={"token": TOKEN}, content_type="application/json"
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input_terminated": True, "wsgi.input": stream})
    answer, answered, _headers = run_wsgi_app(app, environ)
    assert answered.startswith(status), answered
    assert stream.tell() <= LIMIT + 1, f"{stream.tell()} bytes read of a {size}-byte body"
    if status == "413":
        assert json.loads(b"".join(answer))["outcome"] == "too-large"


# --- through the real HTTP server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def served_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The validator served by `python -m imageflow.serve` (waitress), requiring TOKEN."""
    port = processes.free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env.update(
        {
            "GOOGLE_CLOUD_PROJECT": "demo-imageflow",
            "IMAGEFLOW_BUCKET": "imageflow-uploads",
            "K_REVISION": "validator-push-auth-test",
            config.PUSH_TOKEN_ENV: TOKEN,
        }
    )
    log = tmp_path_factory.mktemp("served-agent") / "validator.log"
    command = [sys.executable, "-m", "imageflow.serve", "validator", "--host", processes.HOST]
    process = processes.start(
        "validator-push-auth", [*command, "--port", str(port)], log, env=env, registry=None
    )
    try:
        processes.wait_http(
            f"http://{processes.HOST}:{port}/healthz", "the served validator", SERVER_START_SECONDS, process
        )
        yield processes.HOST, port
    finally:
        processes.stop_group(process.pgid, popen=process.popen)
    assert TOKEN not in log.read_text(encoding="utf-8", errors="replace"), "the push token was logged"


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), f"not an HTTP answer: {line[:80]!r}"
    return int(line.split()[1])


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_served_agent_refuses_a_40_mb_content_length_from_its_headers(served_agent: tuple[str, int]) -> None:
    host, port = served_agent
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        head = (
            f"POST /?token={TOKEN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {40 * 1024 * 1024}\r\n\r\n"
        )
        # Only the headers and a first kilobyte: an answer now proves the rest was never awaited.
        sock.sendall(head.encode() + b"{" + b" " * 1023)
        answer = read_answer(sock)
    assert status_of(answer) == 413, answer[:200]


def test_served_agent_cuts_off_a_chunked_body_past_the_limit(served_agent: tuple[str, int]) -> None:
    host, port = served_agent
    chunk = b"a" * 8192
    sent = 0
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        head = (
            f"POST /?token={TOKEN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            # Up to 40 MB: the server must stop taking it soon after the limit.
            while sent < 40 * 1024 * 1024:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)
    assert status_of(answer) == 413, answer[:200]
    # Kernel socket buffers take a few megabytes after the server stopped reading; not 40.
    assert sent < 16 * 1024 * 1024, f"{sent} bytes of a chunked body were accepted past a {LIMIT} limit"


def test_served_agent_refuses_a_push_without_the_token(served_agent: tuple[str, int]) -> None:
    host, port = served_agent
    body = json.dumps(base.envelope({"workflow_id": "wf-1"})).encode()
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        head = (
            f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        answer = read_answer(sock)
    assert status_of(answer) == 401, answer[:200]


# --- the local push subscriptions ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"])
def test_a_local_push_endpoint_carries_the_token_the_agent_requires(app: Flask, url: str) -> None:
    endpoint = infra.push_endpoint(url, TOKEN)
    parts = urlsplit(endpoint)
    assert parts.path == "/"
    assert parse_qs(parts.query) == {config.PUSH_TOKEN_PARAM: [TOKEN]}
    # What the emulator then requests: the endpoint's path and query, as the agent receives them.
    response = app.test_client().post(f"{parts.path}?{parts.query}", json=NOT_AN_ENVELOPE)
    assert response.status_code == 400, "a push to the subscription's endpoint did not pass the token check"


def test_without_a_token_the_endpoint_is_the_plain_url() -> None:
    assert infra.push_endpoint("http://127.0.0.1:8080") == "http://127.0.0.1:8080/"
