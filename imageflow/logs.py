"""Service logs in Cloud Logging's structured JSON: one object per line, with each request's own fields."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType

from flask import Flask, g, request

TRACE_HEADER = "X-Cloud-Trace-Context"
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
REDACTED = "[redacted]"
# TRACE_ID/SPAN_ID;o=OPTIONS: a 32-hex trace id, a decimal span id and the sampling flag, both optional.
_TRACE_CONTEXT = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]+))?")
# Credentials whatever their origin: JWTs (ID tokens, OIDC push tokens) and credential query parameters.
_CREDENTIALS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    re.compile(
        r"(?i)(?<![a-z0-9_])((?:token|key|api_key|access_token|id_token|refresh_token|password|secret)=)[^&\s'\"]+"
    ),
)
# Secrets shorter than this are not searched for: they would mask ordinary words.
_SHORTEST_SECRET = 4
# Cloud Logging's names for Python's levels, highest first.
_SEVERITIES = (
    (logging.CRITICAL, "CRITICAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARNING"),
    (logging.INFO, "INFO"),
    (logging.DEBUG, "DEBUG"),
)
_HOOK_TOKEN = "_imageflow_log_fields"

_fields: ContextVar[Mapping[str, object]] = ContextVar("imageflow_log_fields", default=MappingProxyType({}))


def current_fields() -> dict[str, object]:
    """The fields bound to the running request or delivery."""
    return dict(_fields.get())


def bind(**fields: object) -> Token[Mapping[str, object]]:
    """Add fields to every line logged from here in this request or delivery, until reset(token)."""
    return _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v not in ("", None)}})


def reset(token: Token[Mapping[str, object]]) -> None:
    """Drop the fields bound since the token's bind()."""
    _fields.reset(token)


def trace_fields(header: str | None, project: str) -> dict[str, object]:
    """Cloud Logging's trace fields from an X-Cloud-Trace-Context header; {} when malformed or no project."""
    match = _TRACE_CONTEXT.fullmatch((header or "").strip())
    if match is None or not project:
        return {}
    trace_id, span, options = match.groups()
    fields: dict[str, object] = {TRACE_KEY: f"projects/{project}/traces/{trace_id.lower()}"}
    # The header's span id is decimal; Cloud Logging wants the 16-hex form of the 64-bit value.
    if span is not None and 0 < int(span) < 2**64:
        fields[SPAN_KEY] = f"{int(span):016x}"
    if options is not None:
        fields[SAMPLED_KEY] = options == "1"
    return fields


def _severity(levelno: int) -> str:
    """Cloud Logging's severity for a Python level (a custom level takes the nearest one below)."""
    for floor, name in _SEVERITIES:
        if levelno >= floor:
            return name
    return "DEFAULT"


def redact_credentials(text: str) -> str:
    """The text with anything credential-shaped masked: JWTs and credential query parameters."""
    text = _CREDENTIALS[0].sub(REDACTED, text)
    return _CREDENTIALS[1].sub(lambda m: m.group(1) + REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One Cloud Logging JSON object per record, secrets and credentials masked."""

    def __init__(self, defaults: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.defaults = {k: v for k, v in (defaults or {}).items() if v}
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """The text with every known secret and anything credential-shaped masked."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return redact_credentials(text)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, object] = {
            "severity": _severity(record.levelno),
            "message": self.redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "logger": record.name,
            **self.defaults,
            **_fields.get(),
        }
        if record.exc_info:
            entry["stack_trace"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(defaults: Mapping[str, str], secrets: Iterable[str]) -> None:
    """Log JSON to stderr in a service process that configured no logging (a test's handlers stay)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(defaults, secrets))
    # On the root logger the server's own lines are JSON too, and waitress's basicConfig() adds none.
    root.addHandler(handler)
    logging.getLogger("imageflow").setLevel(logging.INFO)


def install(app: Flask, project: str, **fields: str) -> None:
    """Bind the service's fields and the request's trace to every line logged while a request is served."""

    @app.before_request
    def bind_request() -> None:
        view_args = request.view_args or {}
        workflow_id = view_args.get("workflow_id")
        trace = trace_fields(request.headers.get(TRACE_HEADER), project)
        setattr(g, _HOOK_TOKEN, bind(**fields, **trace, workflow_id=str(workflow_id or "")))

    @app.teardown_request
    def unbind_request(_exc: BaseException | None) -> None:
        token = g.pop(_HOOK_TOKEN, None)
        if token is not None:
            reset(token)
