"""The agents as deployed on the local stack: real processes behind real Pub/Sub push subscriptions.

The dashboard is bypassed on purpose (its own tests cover it): each test writes a workflow document
and an original as the dashboard would, publishes the upload message to the stack's upload topic,
and watches the document. Local target only: it writes with admin rights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from google.cloud import firestore, pubsub_v1, storage

from fixtures import images, promises
from fixtures.firestore import WorkflowWatcher
from fixtures.pubsub import Taps
from fixtures.target import Target, unique_name
from imageflow import clients, workflow
from imageflow.manifest import Manifest


@dataclass(frozen=True)
class StackUpload:
    """A workflow written the way the dashboard writes one."""

    workflow_id: str
    owner: str
    message: bytes


Publish = Callable[[StackUpload], None]
MakeStackUpload = Callable[[str], StackUpload]


@pytest.fixture
def stack_target(target: Target) -> Target:
    """The target, which must be the local stack (these tests write with admin rights)."""
    if not target.is_local:
        pytest.skip("writes workflow documents directly: local stack only")
    return target


@pytest.fixture
def make_stack_upload(
    stack_target: Target,
    firestore_admin: firestore.Client,
    pipeline_manifest: Manifest,
    request: pytest.FixtureRequest,
) -> MakeStackUpload:
    """Factory: an original in the stack's bucket and its workflow document, both deleted after."""
    bucket: storage.Bucket = clients.storage_client(stack_target.project).bucket(stack_target.bucket)

    def make(kind: str) -> StackUpload:
        workflow_id = unique_name("e2e-agents")
        owner = unique_name("uid")
        sample = images.SAMPLES[kind]
        object_name = f"originals/{owner}/{workflow_id}/{sample.filename}"
        ref = workflow.workflow_ref(firestore_admin, workflow_id)
        # Cleanup first, so that a half-made upload is still removed.
        request.addfinalizer(ref.delete)
        for prefix in (f"{promises.ORIGINALS_PREFIX}/{owner}/", f"{promises.THUMBNAILS_PREFIX}/{owner}/"):
            request.addfinalizer(lambda p=prefix: [b.delete() for b in bucket.list_blobs(prefix=p)])
        data = sample.generate()
        bucket.blob(object_name).upload_from_string(data, content_type=sample.content_type)
        image = {
            "bucket": stack_target.bucket,
            "object": object_name,
            "filename": sample.filename,
            "content_type": sample.content_type,
            "bytes": len(data),
            "gps_removed": False,
        }
        ref.set(workflow.new_document(workflow_id, owner, image, pipeline_manifest))
        message = {
            "workflow_id": workflow_id,
            "owner": owner,
            "bucket": stack_target.bucket,
            "object": object_name,
        }
        return StackUpload(workflow_id, owner, json.dumps(message).encode())

    return make


@pytest.fixture
def publish_upload(stack_target: Target, pipeline_manifest: Manifest) -> Publish:
    """Publish an upload message to the stack's upload topic, as the dashboard does."""
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(stack_target.project, stack_target.lane + pipeline_manifest.upload_topic)

    def publish(upload: StackUpload) -> None:
        attributes = {"workflow_id": upload.workflow_id}
        if stack_target.lane:
            attributes["lane"] = stack_target.lane
        publisher.publish(topic, upload.message, **attributes).result(timeout=30)

    return publish


@pytest.mark.parametrize("kind", ["jpeg_with_exif_gps", "png_with_alpha", "gif"])
def test_every_agent_runs_once_and_the_workflow_completes(
    kind: str,
    make_stack_upload: MakeStackUpload,
    publish_upload: Publish,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    stack_target: Target,
    pipeline_manifest: Manifest,
) -> None:
    upload = make_stack_upload(kind)
    publish_upload(upload)

    result = workflow_watcher.watch(upload.workflow_id)

    assert result.completed, str(result)
    assert not result.diagnosis.problems, str(result)
    for agent in pipeline_manifest.agents:
        step = result.step(agent.name)
        assert (step["status"], step["attempts"]) == ("done", 1), f"{agent.name}: {step}"
        assert set(agent.outputs) <= set(result.output(agent.name)), agent.name
        messages = pubsub_taps.wait_for(agent.output_topic, upload.workflow_id)
        assert len(messages) == 1, f"{agent.output_topic}: {len(messages)} messages"
    thumbnail = result.output("thumbnailer")["object"]
    bucket = clients.storage_client(stack_target.project).bucket(stack_target.bucket)
    assert bucket.blob(thumbnail).exists(), f"thumbnail {thumbnail} was reported but not written"


def test_a_duplicated_upload_message_is_processed_once(
    make_stack_upload: MakeStackUpload,
    publish_upload: Publish,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> None:
    upload = make_stack_upload("plain_jpeg")
    publish_upload(upload)
    publish_upload(upload)  # at-least-once delivery, made certain

    first = pipeline_manifest.agents[0].name
    result = workflow_watcher.watch(upload.workflow_id)
    assert result.completed, str(result)
    settled = workflow_watcher.watch(
        upload.workflow_id, until=lambda doc: bool(doc) and doc["steps"][first]["deliveries"] >= 2, timeout=15
    )
    assert settled.reached, f"the second upload message never reached {first}: {settled}"
    for agent in pipeline_manifest.agent_names:
        assert settled.step(agent)["attempts"] == 1, f"{agent} did the work again: {settled.step(agent)}"


@pytest.mark.parametrize(
    ("kind", "reason"), [("corrupt_jpeg", "file is truncated"), ("svg", "format SVG is not allowed")]
)
def test_a_bad_upload_is_rejected_and_nothing_else_runs(
    kind: str,
    reason: str,
    make_stack_upload: MakeStackUpload,
    publish_upload: Publish,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> None:
    upload = make_stack_upload(kind)
    publish_upload(upload)

    result = workflow_watcher.watch(upload.workflow_id)

    assert result.reached, str(result)
    assert (result.status, (result.document or {}).get("reason")) == ("rejected", reason)
    first = pipeline_manifest.agents[0].name
    skipped = {a: result.step(a)["status"] for a in pipeline_manifest.agent_names if a != first}
    assert set(skipped.values()) == {"skipped"}, skipped
