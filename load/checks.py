"""Pure checks of the load scenario (no Locust import, so tests can use them without gevent patching)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def is_loopback(url: str) -> bool:
    """True when url's host is 127.0.0.0/8, ::1 or localhost."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _value(fields: dict[str, Any], name: str) -> Any:  # noqa: ANN401 - Firestore REST values are untyped
    """A scalar from Firestore REST fields ({"name": {"stringValue": ...}})."""
    cell = fields.get(name) or {}
    return next(iter(cell.values()), None) if isinstance(cell, dict) else None


def check_document(document: dict[str, Any], agents: Sequence[str]) -> tuple[str, list[str]]:
    """(status, problems) of a workflow document read through Firestore REST."""
    fields = document.get("fields") or {}
    status = str(_value(fields, "status") or "")
    steps = ((fields.get("steps") or {}).get("mapValue") or {}).get("fields") or {}
    problems = []
    for agent in agents:
        step = ((steps.get(agent) or {}).get("mapValue") or {}).get("fields") or {}
        step_status, attempts = _value(step, "status"), _value(step, "attempts")
        if step_status != "done" or str(attempts) != "1":
            problems.append(f"{agent} {step_status} x{attempts}")
    return status, problems


def read_log(path: Path) -> tuple[dict[str, float], list[str]]:
    """({workflow_id: upload time}, emails of every user that registered) from the locustfile's log."""
    uploads: dict[str, float] = {}
    emails: list[str] = []
    if not path.exists():
        return uploads, emails
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = json.loads(raw)
        if line.get("email") and line["email"] not in emails:
            emails.append(line["email"])
        if line.get("event") == "upload":
            uploads[str(line["workflow_id"])] = float(line["uploaded_at"])
    return uploads, emails
