"""Google Cloud clients, pointed at the emulators by the standard *_EMULATOR_HOST variables."""

from __future__ import annotations

import os
from functools import cache

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, pubsub_v1, storage


@cache
def firestore_client(project: str) -> firestore.Client:
    """The server-side Firestore client (bypasses rules, as a Cloud Run service account does)."""
    return firestore.Client(project=project)


@cache
def publisher() -> pubsub_v1.PublisherClient:
    """A Pub/Sub publisher; the library honours PUBSUB_EMULATOR_HOST by itself."""
    return pubsub_v1.PublisherClient()


@cache
def storage_client(project: str) -> storage.Client:
    """A Cloud Storage client; anonymous against the emulator named by STORAGE_EMULATOR_HOST."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def publish(project: str, topic: str, data: bytes, **attributes: str) -> str:
    """Publish one message and wait for its id, so a lost publish is an error, not silence."""
    path = publisher().topic_path(project, topic)
    # The client takes attributes as **kwargs beside retry/timeout; mypy cannot tell them apart.
    future = publisher().publish(path, data, **attributes)  # type: ignore[arg-type]
    return str(future.result(timeout=30))
