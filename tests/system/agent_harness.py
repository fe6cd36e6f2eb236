"""The agents' harness against the emulators: the backend, test uploads and push helpers.

Every topic is created under a prefix unique to the test module (IMAGEFLOW_TOPIC_PREFIX as a deployed
agent would have it), so the agents of a running stack never see these messages and these tests
never see theirs. The fixtures that build them live in this folder's conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from google.api_core import exceptions as google_exceptions
from google.cloud import firestore, pubsub_v1, storage
from werkzeug.test import TestResponse

from fixtures.target import unique_name
from imageflow import workflow
from imageflow.agents import base
from imageflow.manifest import default as default_manifest

MANIFEST = default_manifest()
EMULATOR_KEYS = ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")
DEFAULT_PROJECT = "demo-imageflow"
DEFAULT_BUCKET = "imageflow-uploads"
# How long a pull waits for a message that must already be there (the publish was awaited).
PULL_TIMEOUT_SECONDS = 5.0
REVISION = "agents-test-00001"


def unique(prefix: str) -> str:
    """A greppable unique name: <prefix>-<run>-<worker>-<random>."""
    return unique_name(prefix)


@dataclass
class Backend:
    """The emulators a test module talks to, and the topic prefix it owns."""

    project: str
    bucket_name: str
    prefix: str
    db: firestore.Client
    bucket: storage.Bucket
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient

    def tap(self, topic: str) -> str:
        """The pull subscription that records what was published to a (prefixed) topic."""
        return self.subscriber.subscription_path(self.project, f"{topic}--tap")

    def published(self, topic: str, workflow_id: str, expect: int = 1) -> list[dict[str, Any]]:
        """A workflow's messages on a topic: waits (bounded) for `expect`, then checks there are no more."""
        messages: list[dict[str, Any]] = []
        subscription = self.tap(topic)
        # Each publish was awaited before the agent answered, so the messages are already there;
        # once `expect` arrived, one short extra pull proves there is no surplus.
        for _ in range(expect + 3):
            wait = PULL_TIMEOUT_SECONDS if len(messages) < expect else 1.0
            try:
                response = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 20}, timeout=wait
                )
            except google_exceptions.DeadlineExceeded:
                response = None
            received = list(response.received_messages) if response else []
            if received:
                ack_ids = [m.ack_id for m in received]
                self.subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
            for item in received:
                # Leftovers of earlier tests on this module's topics are acknowledged and ignored.
                if item.message.attributes.get("workflow_id") == workflow_id:
                    data = json.loads(item.message.data)
                    messages.append({"data": data, "attributes": dict(item.message.attributes)})
            if not received and len(messages) >= expect:
                break
        return messages


@dataclass
class Upload:
    """A workflow document and its original in storage, made for one test."""

    workflow_id: str
    owner: str
    object_name: str
    data: bytes

    def message(self, bucket: str) -> dict[str, str]:
        """The message data the dashboard publishes for this upload."""
        return {
            "workflow_id": self.workflow_id,
            "owner": self.owner,
            "bucket": bucket,
            "object": self.object_name,
        }


MakeUpload = Callable[..., Upload]
MakeApp = Callable[..., Flask]


def delete_prefix(bucket: storage.Bucket, prefix: str) -> None:
    """Delete every object under prefix."""
    for blob in bucket.list_blobs(prefix=prefix):
        blob.delete()


def push(
    app: Flask, upload: Upload, bucket: str, attributes: Mapping[str, str] | None = None
) -> TestResponse:
    """Deliver the upload's message to the agent as a Pub/Sub push would."""
    envelope = base.envelope(
        upload.message(bucket), {"workflow_id": upload.workflow_id, **(attributes or {})}
    )
    return app.test_client().post("/", json=envelope)


def document(backend: Backend, upload: Upload) -> dict[str, Any]:
    """The upload's workflow document as it is now."""
    snapshot = workflow.workflow_ref(backend.db, upload.workflow_id).get()
    assert snapshot.exists, f"workflow {upload.workflow_id} is gone"
    return snapshot.to_dict() or {}


def step(backend: Backend, upload: Upload, name: str) -> dict[str, Any]:
    """One step of the upload's workflow document as it is now."""
    return dict(document(backend, upload)["steps"][name])


def output_topic(backend: Backend, name: str, lane: str = "") -> str:
    """The (prefixed) output topic of an agent, in a lane when given."""
    return f"{lane}{backend.prefix}{MANIFEST.agent(name).output_topic}"
