"""Pure units of the dashboard (no emulator): value decoding, names, checks, redirects, error mapping."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from fixtures.reporting import labels
from imageflow.dashboard import auth
from imageflow.dashboard.documents import jsonable, step_rows, thumbnail_candidates
from imageflow.dashboard.firestore_rest import sort_newest_first
from imageflow.dashboard.firestore_values import decode_fields, decode_value, parse_timestamp
from imageflow.dashboard.sessions import safe_next
from imageflow.dashboard.uploads import MIB, check, clean_filename, human_size, max_upload_bytes


@labels("dashboard units", "firestore values")
def test_decode_every_value_type() -> None:
    fields: dict[str, Any] = {
        "s": {"stringValue": "x"},
        "i": {"integerValue": "9007199254740993"},
        "d": {"doubleValue": 0.5},
        "b": {"booleanValue": True},
        "n": {"nullValue": None},
        "t": {"timestampValue": "2026-11-30T10:00:01.123456789Z"},
        "m": {
            "mapValue": {
                "fields": {"inner": {"arrayValue": {"values": [{"integerValue": "1"}, {"nullValue": None}]}}}
            }
        },
        "empty_map": {"mapValue": {}},
        "empty_array": {"arrayValue": {}},
    }
    assert decode_fields(fields) == {
        "s": "x",
        "i": 9007199254740993,
        "d": 0.5,
        "b": True,
        "n": None,
        "t": datetime(2026, 11, 30, 10, 0, 1, 123456, tzinfo=UTC),
        "m": {"inner": [1, None]},
        "empty_map": {},
        "empty_array": [],
    }


@labels("dashboard units", "firestore values")
def test_unknown_value_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown Firestore value type"):
        decode_value({"vectorValue": {}})


@labels("dashboard units", "firestore values")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.5Z", datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("2026-01-02T03:04:05.000000001+00:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@labels("dashboard units", "documents")
def test_jsonable_and_newest_first() -> None:
    older = {"workflow_id": "a", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    newer = {"workflow_id": "b", "created_at": datetime(2026, 1, 2, tzinfo=UTC)}
    undated = {"workflow_id": "c", "created_at": None}
    assert [d["workflow_id"] for d in sort_newest_first([older, undated, newer])] == ["b", "a", "c"]
    assert jsonable({"at": newer["created_at"], "list": [b"\x01"]}) == {
        "at": "2026-01-02T00:00:00+00:00",
        "list": ["01"],
    }


@labels("dashboard units", "documents")
def test_steps_in_manifest_order_and_thumbnail_candidates() -> None:
    doc: dict[str, Any] = {
        "workflow_id": "w1",
        "owner": "u1",
        "agents": ["first", "second"],
        "steps": {"second": {"output": {"object": "thumbnails/u1/w1.png"}}, "first": {}, "extra": {}},
    }
    assert [name for name, _ in step_rows(doc)] == ["first", "second", "extra"]
    assert thumbnail_candidates(doc) == ["thumbnails/u1/w1.png", "thumbnails/u1/w1.jpg"]
    # An object outside the owner's thumbnails folder is never served.
    doc["steps"]["second"]["output"]["object"] = "originals/other/secret.jpg"
    assert thumbnail_candidates(doc) == ["thumbnails/u1/w1.jpg", "thumbnails/u1/w1.png"]


@labels("dashboard units", "uploads")
@pytest.mark.parametrize(
    ("raw", "display", "safe"),
    [
        ("photo.jpg", "photo.jpg", "photo.jpg"),
        ("../../etc/x.png", "x.png", "x.png"),
        ("C:\\Users\\me\\pic.GIF", "pic.GIF", "pic.gif"),
        ("line\nbreak.jpg", "linebreak.jpg", "linebreak.jpg"),
        (b"caf\xe9.jpg", "caf\ufffd.jpg", "caf.jpg"),
        ("", "upload", "upload"),
        (None, "upload", "upload"),
        ("a" * 300 + ".jpeg", "a" * 145 + ".jpeg", "a" * 145 + ".jpeg"),
    ],
    ids=[
        "plain",
        "traversal",
        "windows-path",
        "control-char",
        "latin1-bytes",
        "empty",
        "none",
        "long",
    ],
)
def test_clean_filename(raw: str | bytes | None, display: str, safe: str) -> None:
    name = clean_filename(raw)
    assert (name.display, name.safe) == (display, safe)


@labels("dashboard units", "uploads")
def test_clean_filename_with_lone_surrogates() -> None:
    # How undecodable bytes arrive through surrogateescape; built here, as reports cannot hold them.
    name = clean_filename(b"\xe9t\xe9.jpg".decode("utf-8", "surrogateescape"))
    assert (name.display, name.safe) == ("\ufffdt\ufffd.jpg", "t.jpg")


@labels("dashboard units", "uploads")
def test_checks_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    name = clean_filename("a.png")
    assert check(name, "image/png", b"x", 10) is None
    assert check(name, "application/octet-stream", b"x", 10) is None
    assert check(name, "image/png", b"", 10) == "a.png is empty."
    assert check(name, "image/png", b"x" * 11, 10) == "a.png is larger than 10 bytes."
    assert check(name, "text/html", b"x", 10) == "a.png: only JPEG, PNG, WebP and GIF images are accepted."
    assert check(clean_filename("a.svg"), "image/png", b"x", 10) is not None
    assert human_size(10 * MIB) == "10 MiB"
    assert (
        human_size(1536) == "1536 bytes" or human_size(1536) == "1.5 KiB" or human_size(1536) == "1536 bytes"
    )
    assert human_size(2048) == "2 KiB"
    monkeypatch.setenv("IMAGEFLOW_MAX_UPLOAD_BYTES", "not-a-number")
    assert max_upload_bytes() == 10 * MIB
    monkeypatch.setenv("IMAGEFLOW_MAX_UPLOAD_BYTES", "2048")
    assert max_upload_bytes() == 2048


@labels("dashboard units", "redirects")
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/workflows/1?x=2", "/workflows/1?x=2"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/path\r\nSet-Cookie: x", "/"),
    ],
)
def test_safe_next(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@labels("dashboard units", "auth")
@pytest.mark.parametrize(
    ("code", "message", "field"),
    [
        ("EMAIL_EXISTS", auth.EMAIL_EXISTS, "email"),
        ("INVALID_EMAIL", auth.INVALID_EMAIL, "email"),
        ("WEAK_PASSWORD : Password should be at least 6 characters", auth.WEAK_PASSWORD, "password"),
        ("INVALID_LOGIN_CREDENTIALS", auth.WRONG_CREDENTIALS, "form"),
        ("EMAIL_NOT_FOUND", auth.WRONG_CREDENTIALS, "form"),
        ("INVALID_PASSWORD", auth.WRONG_CREDENTIALS, "form"),
        ("TOO_MANY_ATTEMPTS_TRY_LATER", auth.GENERIC_ERROR, "form"),
    ],
)
def test_auth_errors_mapped_to_contract_messages(code: str, message: str, field: str) -> None:
    error = auth._map_error(code)
    assert (error.message, error.field) == (message, field)


@labels("dashboard units", "auth")
def test_password_and_email_rules() -> None:
    assert auth.strong_password("abcdefg1")
    assert not auth.strong_password("abcdefgh")
    assert not auth.strong_password("12345678")
    assert not auth.strong_password("abc1")
    assert auth.valid_email("a.b+c@example.test")
    assert not auth.valid_email("a@b")
    assert not auth.valid_email("a b@example.test")


class DropsFirstConnection(BaseHTTPRequestHandler):
    """Identity Toolkit stand-in: the first request's connection is closed unanswered, then it signs in."""

    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what was asked from `requests`."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests.append(self.path.rsplit(":", 1)[-1])
        if len(type(self).requests) == 1:
            self.close_connection = True
            return
        body = json.dumps(
            {"localId": "u1", "idToken": "t", "refreshToken": "r", "expiresIn": "3600"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky_identity_toolkit() -> Iterator[tuple[str, list[str]]]:
    """(host:port, paths asked) of a stand-in that drops the first connection it gets."""
    handler = type("Handler", (DropsFirstConnection,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()


@labels("dashboard units", "auth client")
def test_sign_in_is_sent_again_when_the_connection_broke(
    flaky_identity_toolkit: tuple[str, list[str]],
) -> None:
    """A connection closed before any answer is sent once more for sign-in (nothing was done yet)."""
    host, asked = flaky_identity_toolkit
    tokens = auth.AuthClient("key", "p", emulator_host=host).sign_in("a@example.test", "pw123456")
    assert (tokens.uid, asked) == ("u1", ["signInWithPassword", "signInWithPassword"])


@labels("dashboard units", "auth client")
def test_sign_up_is_not_sent_twice(flaky_identity_toolkit: tuple[str, list[str]]) -> None:
    """Sign-up creates an account: a broken connection is the generic error, never a second request."""
    host, asked = flaky_identity_toolkit
    with pytest.raises(auth.AuthError) as refused:
        auth.AuthClient("key", "p", emulator_host=host).sign_up("a@example.test", "pw123456")
    assert (refused.value.message, refused.value.code, asked) == (
        auth.GENERIC_ERROR,
        "UNREACHABLE:ConnectionError",
        ["signUp"],
    )
