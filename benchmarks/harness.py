"""What the benchmarks share: a dashboard user over HTTP, photos, write-ups (stack/load_users.py: the rest).

Everything goes through the real parts: users register through the /register form (with its CSRF
token), upload through POST /api/uploads, and completion is read from the workflow documents with
the Firestore admin client against the emulator.
"""

from __future__ import annotations

import io
import json
import secrets
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from fixtures.forms import CSRF_HEADER, csrf_token
from fixtures.images import camera_exif, photo
from imageflow.manifest import Manifest
from stack.load_users import epoch
from stack.state import REPO_ROOT

OUTPUT_DIR = REPO_ROOT / "reports" / "benchmarks"
HTTP_TIMEOUT_SECONDS = 60


class BenchmarkError(RuntimeError):
    """A benchmark could not measure what it promised (the message says what went wrong)."""


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95, p99, mean and max of values in seconds (rounded to ms)."""

    def r(v: float | None) -> float | None:
        return round(v, 3) if v is not None else None

    return {
        "count": len(values),
        "p50": r(percentile(values, 0.50)),
        "p95": r(percentile(values, 0.95)),
        "p99": r(percentile(values, 0.99)),
        "mean": r(statistics.fmean(values)) if values else None,
        "max": r(max(values)) if values else None,
    }


def write_json(name: str, data: Mapping[str, Any], directory: Path = OUTPUT_DIR) -> Path:
    """Write reports/benchmarks/<name>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path


def photo_jpeg(seed: int, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A photo-like camera JPEG (gradient sky, sun, shapes, camera EXIF with GPS), distinct per seed."""
    buffer = io.BytesIO()
    photo(size, seed=seed).save(buffer, "JPEG", quality=88, exif=camera_exif())
    return buffer.getvalue()


def bench_email(run: str) -> str:
    """A unique, greppable address for a benchmark user."""
    return f"bench-{run}-{secrets.token_hex(4)}@example.test"


def bench_password() -> str:
    """A throwaway password that meets the dashboard's rule (never printed)."""
    return "Bb1" + secrets.token_urlsafe(12)


class DashboardUser:
    """One user driving the dashboard over HTTP: register through the form, upload through the API."""

    def __init__(self, base_url: str, email: str, password: str) -> None:
        self.base = base_url.rstrip("/")
        self.email = email
        self._password = password
        self.http = requests.Session()

    def register(self) -> None:
        """Create the account through /register (CSRF token from the form); raises BenchmarkError."""
        form = self.http.get(f"{self.base}/register", timeout=HTTP_TIMEOUT_SECONDS)
        token = csrf_token(form.text)
        if form.status_code != 200 or token is None:
            raise BenchmarkError(f"GET /register answered {form.status_code} without a CSRF token")
        answer = self.http.post(
            f"{self.base}/register",
            data={
                "email": self.email,
                "password": self._password,
                "confirm_password": self._password,
                "csrf_token": token,
            },
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        if answer.status_code not in (302, 303):
            raise BenchmarkError(f"registration of {self.email} answered {answer.status_code}")
        # The API's state-changing calls carry the session's CSRF token.
        session = self.http.get(f"{self.base}/api/session", timeout=HTTP_TIMEOUT_SECONDS)
        if session.status_code != 200:
            raise BenchmarkError(f"GET /api/session after registration answered {session.status_code}")
        self.http.headers[CSRF_HEADER] = str(session.json()["csrf_token"])

    def upload(self, files: Sequence[tuple[str, bytes]]) -> list[str]:
        """POST /api/uploads; the accepted workflow ids (BenchmarkError when none was accepted)."""
        parts = [("files", (name, data, "image/jpeg")) for name, data in files]
        answer = self.http.post(f"{self.base}/api/uploads", files=parts, timeout=HTTP_TIMEOUT_SECONDS)
        if answer.status_code != 201:
            raise BenchmarkError(f"upload by {self.email} answered {answer.status_code}: {answer.text[:200]}")
        return [str(a["workflow_id"]) for a in answer.json()["accepted"]]

    def close(self) -> None:
        """Close the HTTP session."""
        self.http.close()


@dataclass
class WorkflowFacts:
    """What one completed (or not) workflow says about itself."""

    workflow_id: str
    status: str
    upload_to_completed: float | None
    agents_once: bool
    agent_seconds: dict[str, float]
    problems: list[str]


def facts(
    workflow_id: str, uploaded_at: float, document: Mapping[str, Any] | None, manifest: Manifest
) -> WorkflowFacts:
    """Latency from the client's upload start to completed_at, per-agent step times, once-each check."""
    if not document:
        return WorkflowFacts(workflow_id, "missing", None, False, {}, ["document never written"])
    steps = document.get("steps") or {}
    problems: list[str] = []
    seconds: dict[str, float] = {}
    for name in manifest.agent_names:
        step = steps.get(name) or {}
        if step.get("status") != "done" or step.get("attempts") != 1:
            problems.append(f"{name}: status {step.get('status')}, attempts {step.get('attempts')}")
        started, finished = epoch(step.get("started_at")), epoch(step.get("finished_at"))
        if started is not None and finished is not None:
            seconds[name] = round(finished - started, 3)
    completed = epoch(document.get("completed_at"))
    status = str(document.get("status"))
    return WorkflowFacts(
        workflow_id=workflow_id,
        status=status,
        upload_to_completed=round(completed - uploaded_at, 3)
        if completed and status == "completed"
        else None,
        agents_once=not problems,
        agent_seconds=seconds,
        problems=problems,
    )
