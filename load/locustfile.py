"""Load scenario (Locust): users register, log in, upload photos, and each upload is watched to its end.

Run headless with bounded users and time against the local stack (the runner
`python -m benchmarks.load` does it and checks the result):

    locust -f load/locustfile.py --headless -u 10 -r 5 -t 60s --host http://127.0.0.1:PORT

Each simulated user registers through the /register form (CSRF token from the form), logs in
through /login, then uploads photo-like camera JPEGs through POST /api/uploads. Every accepted
upload is watched until its workflow document is terminal, read with the emulator's admin bearer
from the Firestore emulator (FIRESTORE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT); the watch reports a
Locust event "WORKFLOW upload->completed" whose response time is upload start -> completed, and a
failure when the workflow did not complete or an agent of the manifest did not run exactly once.
Events aggregate on the master in distributed mode (--master/--worker) like any request.

`CanaryUser` is the traffic of a canary and its bake (deploy/canary.py names it on the command line):
small uploads, each followed through the dashboard's own API (GET /api/workflows/ID) as the workflow
page polls it, so every service of the release carries a steady share of requests.

Only loopback hosts are accepted unless IMAGEFLOW_LOAD_ALLOW_REMOTE=1 (a deliberate choice for a
staging run). IMAGEFLOW_LOAD_LOG names a JSON-lines file where each process appends its uploads
(workflow id, upload time, user email) for the runner's own check and cleanup.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import threading
import time
from typing import Any

import gevent  # type: ignore[import-untyped]
import requests
from locust import HttpUser, between, events, task
from locust.env import Environment

from fixtures.forms import CSRF_HEADER, csrf_token
from fixtures.images import camera_exif, photo
from imageflow import manifest as manifest_module
from load.checks import check_document, is_loopback

WATCH_TIMEOUT_SECONDS = 180.0
WATCH_POLL_SECONDS = 0.5
TERMINAL = ("completed", "failed", "rejected")
RUN_ID = os.environ.get("IMAGEFLOW_LOAD_RUN") or secrets.token_hex(3)
AGENTS = manifest_module.default().agent_names
# A handful of distinct photos, made once per process (Pillow work is not what is measured).
PHOTOS_COUNT = 6
_photos: list[bytes] = []
_log_lock = threading.Lock()


def photos() -> list[bytes]:
    """Photo-like 1600x1200 camera JPEGs with EXIF and GPS (about 200 KB each), built on first use."""
    if not _photos:
        for seed in range(PHOTOS_COUNT):
            buffer = io.BytesIO()
            photo((1600, 1200), seed=seed).save(buffer, "JPEG", quality=88, exif=camera_exif())
            _photos.append(buffer.getvalue())
    return _photos


def record(line: dict[str, Any]) -> None:
    """Append one upload to IMAGEFLOW_LOAD_LOG (if set) for the runner's check and cleanup."""
    path = os.environ.get("IMAGEFLOW_LOAD_LOG")
    if not path:
        return
    with _log_lock, open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


@events.test_start.add_listener
def refuse_remote_hosts(environment: Environment, **_kwargs: object) -> None:
    """Stop at once when the target is not on this machine and no one said that was intended."""
    host = environment.host or ""
    if not is_loopback(host) and os.environ.get("IMAGEFLOW_LOAD_ALLOW_REMOTE") != "1":
        print(
            f"load: refusing {host or 'no host'}: only loopback targets (set IMAGEFLOW_LOAD_ALLOW_REMOTE=1)"
        )
        if environment.runner is not None:
            environment.runner.quit()


class Uploader(HttpUser):
    """A user who registers, logs in, and keeps uploading photos."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        """Register and log in through the forms (each POST carries the form's CSRF token)."""
        self.email = f"load-{RUN_ID}-{secrets.token_hex(4)}@example.test"
        self._password = "Ld1" + secrets.token_urlsafe(12)
        self.watch = requests.Session()
        self.count = 0
        self._form("/register", {"confirm_password": self._password}, "register")
        self.client.post("/logout", data={"csrf_token": self._csrf("/")}, name="POST /logout")
        self._form("/login", {"next": "/"}, "login")
        # The API's state-changing calls carry the session's CSRF token.
        session = self.client.get("/api/session", name="GET /api/session")
        if session.ok:
            self.client.headers[CSRF_HEADER] = str(session.json().get("csrf_token", ""))

    def _csrf(self, path: str) -> str:
        page = self.client.get(path, name=f"GET {path}")
        return csrf_token(page.text) or ""

    def _form(self, path: str, extra: dict[str, str], what: str) -> None:
        data = {"email": self.email, "password": self._password, "csrf_token": self._csrf(path), **extra}
        with self.client.post(
            path, data=data, allow_redirects=False, name=f"POST {path}", catch_response=True
        ) as answer:
            if answer.status_code not in (302, 303):
                answer.failure(f"{what} answered {answer.status_code}")
                return
            answer.success()
        record({"email": self.email, "event": what})

    @task
    def upload_photo(self) -> None:
        """Upload one photo and watch its workflow to its end."""
        self.count += 1
        image = photos()[self.count % len(photos())]
        started = time.time()
        with self.client.post(
            "/api/uploads",
            files=[("files", (f"load-{self.count:04d}.jpg", image, "image/jpeg"))],
            name="POST /api/uploads",
            catch_response=True,
        ) as answer:
            if answer.status_code != 201:
                answer.failure(f"upload answered {answer.status_code}")
                return
            accepted = answer.json().get("accepted") or []
            if not accepted:
                answer.failure("upload accepted nothing")
                return
            answer.success()
        workflow_id = str(accepted[0]["workflow_id"])
        record({"email": self.email, "event": "upload", "workflow_id": workflow_id, "uploaded_at": started})
        # Like a person on the workflow page: this user waits for the outcome before the next upload.
        self._watch(workflow_id, started)

    def _watch(self, workflow_id: str, started: float) -> None:
        """Poll the workflow document (admin bearer, emulator) until terminal; report it as an event."""
        host, project = os.environ.get("FIRESTORE_EMULATOR_HOST"), os.environ.get("GOOGLE_CLOUD_PROJECT")
        if not host or not project:
            return  # no emulator to read from: the workflow is not watched (a remote target)
        url = f"http://{host}/v1/projects/{project}/databases/(default)/documents/workflows/{workflow_id}"
        status, problems = "", ["never read"]
        deadline = started + WATCH_TIMEOUT_SECONDS
        while time.time() < deadline:
            answer = self.watch.get(url, headers={"Authorization": "Bearer owner"}, timeout=30)
            if answer.status_code == 200:
                status, problems = check_document(answer.json(), AGENTS)
                if status in TERMINAL:
                    break
            gevent.sleep(WATCH_POLL_SECONDS)
        elapsed_ms = (time.time() - started) * 1000
        error = None
        if status != "completed":
            error = RuntimeError(f"workflow ended {status or 'unread'} (not completed)")
        elif problems:
            error = RuntimeError("agents not exactly once: " + ", ".join(problems))
        events.request.fire(
            request_type="WORKFLOW",
            name="upload->completed",
            response_time=elapsed_ms,
            response_length=0,
            exception=error,
            context={},
        )


# Small photos for the canary's traffic: many workflows a second on two cores, every agent at work.
CANARY_PHOTO_SIZE = (480, 360)
CANARY_POLL_SECONDS = 0.25
_canary_photos: list[bytes] = []


class CanaryUser(Uploader):
    """A user whose uploads are followed through the dashboard's API, as the workflow page does."""

    wait_time = between(0.2, 0.6)

    @task
    def upload_photo(self) -> None:
        """Upload one small photo and poll its workflow through GET /api/workflows/ID to its end."""
        if not _canary_photos:
            for seed in range(PHOTOS_COUNT):
                buffer = io.BytesIO()
                photo(CANARY_PHOTO_SIZE, seed=seed).save(buffer, "JPEG", quality=85, exif=camera_exif())
                _canary_photos.append(buffer.getvalue())
        self.count += 1
        image = _canary_photos[self.count % len(_canary_photos)]
        answer = self.client.post(
            "/api/uploads",
            files=[("files", (f"canary-{self.count:04d}.jpg", image, "image/jpeg"))],
            name="POST /api/uploads",
        )
        accepted = (answer.json().get("accepted") or []) if answer.status_code == 201 else []
        if not accepted:
            return
        workflow_id = str(accepted[0]["workflow_id"])
        record(
            {"email": self.email, "event": "upload", "workflow_id": workflow_id, "uploaded_at": time.time()}
        )
        deadline = time.time() + WATCH_TIMEOUT_SECONDS
        while time.time() < deadline:
            page = self.client.get(f"/api/workflows/{workflow_id}", name="GET /api/workflows/[id]")
            if page.status_code == 200 and page.json().get("status") in TERMINAL:
                return
            gevent.sleep(CANARY_POLL_SECONDS)
