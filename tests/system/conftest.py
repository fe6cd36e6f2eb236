"""Fixtures of the reference system's tests: the emulators' backend, test uploads and agent apps."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Sequence

import agent_harness as harness
import pytest
from flask import Flask
from google.api_core import exceptions as google_exceptions
from google.cloud import pubsub_v1

from fixtures import images, promises
from imageflow import clients, config, workflow
from imageflow.agents import base
from imageflow.manifest import Manifest


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[harness.Backend]:
    """The emulators, a bucket and this module's prefixed topics with pull taps (deleted after).

    The emulators named by FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST
    when all are set, else the `local_stack` fixture's.
    """
    if not all(os.environ.get(key) for key in harness.EMULATOR_KEYS):
        request.getfixturevalue("local_stack")
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or harness.DEFAULT_PROJECT
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", project)
    bucket_name = os.environ.get("IMAGEFLOW_BUCKET") or harness.DEFAULT_BUCKET
    storage_client = clients.storage_client(project)
    try:
        bucket = storage_client.get_bucket(bucket_name)
    except google_exceptions.NotFound:
        bucket = storage_client.create_bucket(bucket_name)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    prefix = harness.unique("agents") + "--"
    lanes = ("", "lane-itest--")
    created: list[tuple[str, str]] = []
    try:
        for lane in lanes:
            for spec in harness.MANIFEST.agents:
                topic = f"{lane}{prefix}{spec.output_topic}"
                topic_path = publisher.topic_path(project, topic)
                subscription = subscriber.subscription_path(project, f"{topic}--tap")
                # Registered before the create, so a half-made pair is still removed.
                created.append((topic_path, subscription))
                publisher.create_topic(name=topic_path)
                subscriber.create_subscription(name=subscription, topic=topic_path)
        yield harness.Backend(
            project,
            bucket_name,
            prefix,
            clients.firestore_client(project),
            bucket,
            publisher,
            subscriber,
        )
    finally:
        for topic_path, subscription in created:
            with contextlib.suppress(google_exceptions.NotFound):
                subscriber.delete_subscription(subscription=subscription)
            with contextlib.suppress(google_exceptions.NotFound):
                publisher.delete_topic(topic=topic_path)


@pytest.fixture
def make_upload(backend: harness.Backend, request: pytest.FixtureRequest) -> harness.MakeUpload:
    """Factory: an uploaded image with its workflow document; both deleted after the test."""

    def make(kind: str = "plain_jpeg", done: Sequence[str] = (), data: bytes | None = None) -> harness.Upload:
        workflow_id = harness.unique("e2e-agents")
        owner = harness.unique("uid")
        sample = images.SAMPLES[kind]
        content = sample.generate() if data is None else data
        object_name = f"{promises.ORIGINALS_PREFIX}/{owner}/{workflow_id}/{sample.filename}"
        ref = workflow.workflow_ref(backend.db, workflow_id)
        request.addfinalizer(ref.delete)
        for prefix in (promises.ORIGINALS_PREFIX, promises.THUMBNAILS_PREFIX):
            request.addfinalizer(lambda p=prefix: harness.delete_prefix(backend.bucket, f"{p}/{owner}/"))
        backend.bucket.blob(object_name).upload_from_string(content, content_type=sample.content_type)
        image = {
            "bucket": backend.bucket_name,
            "object": object_name,
            "filename": sample.filename,
            "content_type": sample.content_type,
            "bytes": len(content),
            "gps_removed": False,
        }
        document = workflow.new_document(workflow_id, owner, image, harness.MANIFEST)
        for name in done:
            document["steps"][name].update(status="done", attempts=1, published=True, output={})
        ref.set(document)
        return harness.Upload(workflow_id, owner, object_name, content)

    return make


@pytest.fixture
def make_app(backend: harness.Backend) -> harness.MakeApp:
    """Factory: an agent's app on this module's topics, with optional faults, manifest and test failures."""

    def make(
        name: str, faults: str = "", manifest: Manifest | None = None, *, test_failures: bool = False
    ) -> Flask:
        chosen = manifest or harness.MANIFEST
        environ = {
            "GOOGLE_CLOUD_PROJECT": backend.project,
            "IMAGEFLOW_BUCKET": backend.bucket_name,
            "K_REVISION": harness.REVISION,
            "IMAGEFLOW_TOPIC_PREFIX": backend.prefix,
            "IMAGEFLOW_FAULTS": faults,
            **({config.TEST_FAILURES_KEY: config.TEST_FAILURES_ALLOWED} if test_failures else {}),
        }
        settings = config.load(chosen.agent(name), environ)
        module = importlib.import_module(chosen.agent(name).module)
        if manifest is None:
            app: Flask = module.create_app(settings)
            return app
        # A changed manifest (e.g. a short deadline): the same handler through the shared factory.
        agent_class = getattr(module, "Finalizer", base.Agent)
        fake = getattr(module, "fake_output", base.placeholder_output)
        return base.create_agent_app(
            name, module.handle, settings, fake=fake, agent_class=agent_class, manifest=manifest
        )

    return make
