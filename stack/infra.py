"""Pub/Sub topics and push subscriptions from the manifest, and the bucket: idempotent."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage
from google.protobuf import duration_pb2

from imageflow.config import PUSH_TOKEN_PARAM
from imageflow.manifest import Manifest

DEAD_LETTER_AUDIT_SUFFIX = "--audit"


@dataclass
class InfraReport:
    """What ensure() found and what it created."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def dead_letter_audit_subscription(manifest: Manifest, prefix: str = "") -> str:
    """The pull subscription that retains dead letters for inspection."""
    return f"{prefix}{manifest.dead_letter_topic}{DEAD_LETTER_AUDIT_SUFFIX}"


def push_endpoint(url: str, push_token: str = "") -> str:
    """The push endpoint of an agent URL, carrying the verification token in its query string.

    The Pub/Sub emulator sends no OIDC token and no custom header, and the router cannot tell a
    push from any other request, so the token rides in the endpoint URL (Pub/Sub's documented
    verification-token pattern). The URL is then a secret: never printed or recorded.
    """
    endpoint = url.rstrip("/") + "/"
    return f"{endpoint}?{urlencode({PUSH_TOKEN_PARAM: push_token})}" if push_token else endpoint


def ensure_topics_and_subscriptions(
    project: str,
    manifest: Manifest,
    endpoints: Mapping[str, str],
    prefix: str = "",
    report: InfraReport | None = None,
    push_token: str = "",
) -> InfraReport:
    """Create every topic, one push subscription per (agent, trigger) and the dead-letter audit pull.

    endpoints maps agent name -> push endpoint URL (the agent's stable router URL, or a candidate's
    tagged URL for a verification lane); prefix is prepended to every topic and subscription name;
    push_token, when given, is carried by every push (the agents refuse a push without it).
    """
    report = report or InfraReport()
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for topic in manifest.topics:
            path = publisher.topic_path(project, prefix + topic)
            try:
                publisher.create_topic(request={"name": path})
                report.created.append(path)
            except exceptions.AlreadyExists:
                report.existing.append(path)
        dead_letter_path = publisher.topic_path(project, prefix + manifest.dead_letter_topic)
        for agent in manifest.agents:
            endpoint = endpoints.get(agent.name)
            if not endpoint:
                continue
            for topic in agent.triggers:
                name = subscriber.subscription_path(
                    project, prefix + manifest.subscription_name(agent.name, topic)
                )
                request = {
                    "name": name,
                    "topic": publisher.topic_path(project, prefix + topic),
                    "push_config": {"push_endpoint": push_endpoint(endpoint, push_token)},
                    "ack_deadline_seconds": max(10, min(600, int(agent.deadline_seconds))),
                    "dead_letter_policy": {
                        "dead_letter_topic": dead_letter_path,
                        "max_delivery_attempts": manifest.max_delivery_attempts,
                    },
                    "retry_policy": {
                        "minimum_backoff": duration_pb2.Duration(seconds=1),
                        "maximum_backoff": duration_pb2.Duration(seconds=10),
                    },
                }
                try:
                    subscriber.create_subscription(request=request)
                    report.created.append(name)
                except exceptions.AlreadyExists:
                    # Keep an existing subscription but point it at the current endpoint.
                    subscriber.modify_push_config(
                        request={"subscription": name, "push_config": request["push_config"]}
                    )
                    report.existing.append(name)
        audit = subscriber.subscription_path(project, dead_letter_audit_subscription(manifest, prefix))
        try:
            subscriber.create_subscription(request={"name": audit, "topic": dead_letter_path})
            report.created.append(audit)
        except exceptions.AlreadyExists:
            report.existing.append(audit)
    finally:
        subscriber.close()
    return report


def delete_lane(project: str, manifest: Manifest, prefix: str) -> None:
    """Delete a verification lane's subscriptions and topics (prefix must be non-empty)."""
    if not prefix:
        raise ValueError("refusing to delete the live topics: a lane prefix is required")
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        names = [
            prefix + manifest.subscription_name(agent.name, topic)
            for agent in manifest.agents
            for topic in agent.triggers
        ] + [dead_letter_audit_subscription(manifest, prefix)]
        for name in names:
            with contextlib.suppress(exceptions.NotFound):
                subscriber.delete_subscription(
                    request={"subscription": subscriber.subscription_path(project, name)}
                )
        for topic in manifest.topics:
            with contextlib.suppress(exceptions.NotFound):
                publisher.delete_topic(request={"topic": publisher.topic_path(project, prefix + topic)})
    finally:
        subscriber.close()


def ensure_bucket(project: str, bucket: str, report: InfraReport | None = None) -> InfraReport:
    """Create the bucket on the storage emulator if it is missing, with soft delete off.

    The emulator keeps a soft-deleted object (7 days by default, as Google Cloud Storage) in the
    metadata it rewrites whole on every write: with every test's objects deleted and kept, each
    upload grew slower run after run. Locally a deleted object is simply gone.
    """
    report = report or InfraReport()
    client = storage.Client(project=project, credentials=AnonymousCredentials())
    found = client.lookup_bucket(bucket)
    if found is None:
        try:
            found = client.create_bucket(bucket)
            report.created.append(f"gs://{bucket}")
        except exceptions.Conflict:
            found = client.get_bucket(bucket)
            report.existing.append(f"gs://{bucket}")
    else:
        report.existing.append(f"gs://{bucket}")
    if found.soft_delete_policy.retention_duration_seconds:
        found.soft_delete_policy.retention_duration_seconds = 0
        found.patch()
    return report


def ensure(
    project: str,
    bucket: str,
    manifest: Manifest,
    endpoints: Mapping[str, str],
    prefix: str = "",
    push_token: str = "",
) -> InfraReport:
    """Topics, subscriptions and the bucket (the bucket only for the live topics, prefix "")."""
    report = ensure_topics_and_subscriptions(project, manifest, endpoints, prefix, push_token=push_token)
    if not prefix:
        ensure_bucket(project, bucket, report)
    return report
