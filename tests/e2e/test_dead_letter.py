"""The dead-letter witness is not vacuous: a push that can never succeed really reaches the tap.

Every upload scenario asserts that the dead-letter topic holds nothing of its workflows; this proves
that such a message would have been seen: a message naming no workflow is published on the upload
topic, every agent it triggers answers 404 (never succeeds), and after the manifest's
max_delivery_attempts the message must arrive on the dead-letter topic.
"""

from __future__ import annotations

import json

import allure
import pytest

from fixtures.pubsub import Taps
from fixtures.reporting import labels
from fixtures.target import Target, unique_name
from imageflow import clients
from imageflow.manifest import Manifest

# Pub/Sub backs off between failed pushes (about 15 s for 5 attempts on the emulator; longer on Cloud).
DEAD_LETTER_TIMEOUT_SECONDS = 180


@pytest.mark.e2e
@pytest.mark.destructive
@labels("Pub/Sub", "A message that can never succeed is dead-lettered", allure.severity_level.CRITICAL)
def test_message_for_unknown_workflow_is_dead_lettered_after_max_attempts(
    pubsub_taps: Taps, pipeline_manifest: Manifest, target: Target
) -> None:
    workflow_id = unique_name("dl")
    upload_topic = pubsub_taps.topics[pipeline_manifest.upload_topic]
    payload = {"workflow_id": workflow_id, "owner": "nobody", "bucket": target.bucket, "object": "missing"}
    with allure.step(f"Publish a message for the unknown workflow {workflow_id} on {upload_topic}"):
        clients.publish(target.project, upload_topic, json.dumps(payload).encode(), workflow_id=workflow_id)

    dead = pubsub_taps.wait_for(
        pipeline_manifest.dead_letter_topic, workflow_id, count=1, timeout=DEAD_LETTER_TIMEOUT_SECONDS
    )

    assert dead, f"nothing reached {pipeline_manifest.dead_letter_topic} for {workflow_id}"
    triggered = {
        pipeline_manifest.subscription_name(agent.name, pipeline_manifest.upload_topic)
        for agent in pipeline_manifest.agents
        if pipeline_manifest.upload_topic in agent.triggers
    }
    sources = {m.attributes.get("CloudPubSubDeadLetterSourceSubscription", "") for m in dead}
    assert {s.removeprefix(target.lane) for s in sources} <= triggered, f"dead-lettered from {sources}"
    attempts = {m.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") for m in dead}
    assert attempts == {str(pipeline_manifest.max_delivery_attempts)}, f"delivery counts {attempts}"
