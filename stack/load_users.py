"""The load users of a local stack: where its parts are, their workflows awaited, the users deleted.

Shared by the benchmarks and the canary's background traffic (load/traffic.py); emulator only: the
Auth emulator's admin bearer lists and deletes accounts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from google.cloud import firestore

from imageflow import clients
from imageflow.workflow import COLLECTION, TERMINAL
from stack.state import StackState

HTTP_TIMEOUT_SECONDS = 60
POLL_SECONDS = 0.25
EMULATOR_ADMIN = {"Authorization": "Bearer owner"}


@dataclass
class StackInfo:
    """Where the running stack's parts are (from its state file)."""

    dashboard_url: str
    project: str
    bucket: str
    auth_host: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, state: StackState) -> StackInfo:
        """From a stack state; the client env (emulator hosts) is applied to this process."""
        os.environ.update(state.env)
        return cls(
            dashboard_url=state.dashboard_url.rstrip("/"),
            project=state.project,
            bucket=state.bucket,
            auth_host=state.emulators["auth"],
            env=dict(state.env),
        )


def epoch(value: object) -> float | None:
    """A Firestore timestamp (datetime) as epoch seconds."""
    return value.timestamp() if isinstance(value, datetime) else None


def wait_terminal(
    project: str, workflow_ids: Iterable[str], timeout: float, stop: threading.Event | None = None
) -> dict[str, dict[str, Any]]:
    """Read the workflows until each is terminal or timeout passes; {id: document} of what was read.

    A benchmark's wait is a bounded poll of batch reads (one round trip for all documents), so
    that hundreds of workflows cost no listener each.
    """
    db = clients.firestore_client(project)
    pending = set(workflow_ids)
    documents: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    waiter = stop or threading.Event()
    while pending and time.monotonic() < deadline:
        refs = [db.collection(COLLECTION).document(w) for w in sorted(pending)]
        for snapshot in db.get_all(refs):
            if snapshot.exists:
                document = snapshot.to_dict() or {}
                documents[snapshot.id] = document
                if document.get("status") in TERMINAL:
                    pending.discard(snapshot.id)
        if pending and waiter.wait(POLL_SECONDS):  # bounded-poll
            break
    return documents


def lookup_uids(auth_host: str, project: str, emails: Sequence[str]) -> dict[str, str]:
    """{email: uid} of these accounts on the Auth emulator (admin bearer, emulator only)."""
    if not emails:
        return {}
    url = f"http://{auth_host}/identitytoolkit.googleapis.com/v1/projects/{project}/accounts:lookup"
    answer = requests.post(
        url, json={"email": list(emails)}, headers=EMULATOR_ADMIN, timeout=HTTP_TIMEOUT_SECONDS
    )
    answer.raise_for_status()
    return {str(u["email"]): str(u["localId"]) for u in answer.json().get("users") or []}


def remove_users(info: StackInfo, emails: Sequence[str]) -> int:
    """Delete the benchmark users' workflows, stored objects and accounts; how many things went."""
    uids = lookup_uids(info.auth_host, info.project, emails)
    db = clients.firestore_client(info.project)
    bucket = clients.storage_client(info.project).bucket(info.bucket)
    removed = 0
    for uid in uids.values():
        for snapshot in (
            db.collection(COLLECTION).where(filter=firestore.FieldFilter("owner", "==", uid)).stream()
        ):
            snapshot.reference.delete()
            removed += 1
        for prefix in (f"originals/{uid}/", f"thumbnails/{uid}/"):
            for blob in bucket.list_blobs(prefix=prefix):
                blob.delete()
                removed += 1
        url = f"http://{info.auth_host}/identitytoolkit.googleapis.com/v1/projects/{info.project}/accounts:delete"
        requests.post(url, json={"localId": uid}, headers=EMULATOR_ADMIN, timeout=HTTP_TIMEOUT_SECONDS)
        removed += 1
    return removed
