"""Dashboard fault switches, failed storage/publishing, and verification lanes, in-process."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.api_core import exceptions as google_exceptions
from google.cloud import pubsub_v1
from google.cloud.firestore_v1.base_query import FieldFilter
from google.pubsub_v1.types import ReceivedMessage

from fixtures import images
from fixtures.dashboard import (
    DashboardClient,
    DashboardFactory,
    FilePart,
    SignedIn,
    element_text,
    picked_up,
    text,
)
from fixtures.firestore import WorkflowWatcher
from fixtures.reporting import labels
from fixtures.users import IdentityToolkit, TestUser, UserFactory
from imageflow import clients
from imageflow.dashboard import auth, faults
from imageflow.manifest import Manifest
from imageflow.workflow import COLLECTION
from stack.state import StackState

# How long a message that must NOT arrive is waited for: the pipeline moves in well under a second.
ABSENCE_WAIT_SECONDS = 3.0


def jpeg(name: str = "photo.jpg") -> FilePart:
    """A real JPEG."""
    return FilePart(name, images.plain_jpeg(), "image/jpeg")


def object_exists(stack: StackState, name: str) -> bool:
    """True when the object is in the stack's bucket."""
    return bool(clients.storage_client(stack.project).bucket(stack.bucket).blob(name).exists())


@dataclass
class Lane:
    """A verification lane's upload topic with a pull subscription on it."""

    prefix: str
    topic: str
    subscription: str
    subscriber: pubsub_v1.SubscriberClient

    def pull(self, timeout: float) -> list[ReceivedMessage]:
        """Messages that arrive within timeout (a blocking pull: waits on the server, not a sleep)."""
        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 10}, timeout=timeout
            )
        except google_exceptions.DeadlineExceeded:
            return []
        return list(response.received_messages)


@pytest.fixture
def lane(
    local_stack: StackState, pipeline_manifest: Manifest, pubsub_subscriber: pubsub_v1.SubscriberClient
) -> Iterator[Lane]:
    """A private lane (`lane-sys<random>--`) with its upload topic and a subscription, deleted after."""
    prefix = f"lane-sys{secrets.token_hex(4)}--"
    publisher = clients.publisher()
    topic = publisher.topic_path(local_stack.project, prefix + pipeline_manifest.upload_topic)
    subscription = pubsub_subscriber.subscription_path(local_stack.project, prefix + "dashboard-test")
    try:
        publisher.create_topic(name=topic)
        pubsub_subscriber.create_subscription(name=subscription, topic=topic)
        yield Lane(prefix, topic, subscription, pubsub_subscriber)
    finally:
        # Deleting what was never created is harmless: NotFound is the only error expected.
        with contextlib.suppress(google_exceptions.NotFound):
            pubsub_subscriber.delete_subscription(subscription=subscription)
        with contextlib.suppress(google_exceptions.NotFound):
            publisher.delete_topic(topic=topic)


@labels("dashboard", "lanes")
def test_lane_header_publishes_to_the_lane_topic_with_attribute(signed_in: SignedIn, lane: Lane) -> None:
    response = signed_in.client.upload_api([jpeg()], headers={"X-Imageflow-Lane": lane.prefix})
    assert response.status_code == 201, text(response)
    workflow_id = response.get_json()["accepted"][0]["workflow_id"]
    signed_in.client.workflow_ids.remove(workflow_id)  # nothing serves the lane: it never completes
    received = lane.pull(timeout=30)
    assert received, f"nothing arrived on {lane.topic} within 30 s"
    message = received[0].message
    assert message.attributes["lane"] == lane.prefix
    assert message.attributes["workflow_id"] == workflow_id
    data = json.loads(message.data)
    assert data["workflow_id"] == workflow_id
    assert data["owner"] == signed_in.user.uid
    assert data["object"].startswith(f"originals/{signed_in.user.uid}/{workflow_id}/")


@labels("dashboard", "lanes")
@pytest.mark.parametrize("header", ["lane-UPPER--", "../image-uploaded", "lane-x", "x" * 80])
def test_invalid_lane_header_ignored(
    signed_in: SignedIn, workflow_watcher: WorkflowWatcher, pipeline_manifest: Manifest, header: str
) -> None:
    response = signed_in.client.upload_api([jpeg()], headers={"X-Imageflow-Lane": header})
    assert response.status_code == 201, text(response)
    # Published to the live topic: the stack's agents pick it up.
    workflow_id = response.get_json()["accepted"][0]["workflow_id"]
    result = workflow_watcher.watch(workflow_id, until=picked_up(pipeline_manifest))
    assert result.reached, f"no agent took the upload from the live topic: {result}"


@labels("dashboard", "faults")
def test_storage_failure_withdraws_the_upload_and_asks_to_retry(
    signed_in_factory: Callable[..., SignedIn], local_stack: StackState
) -> None:
    session = signed_in_factory(IMAGEFLOW_BUCKET=f"imageflow-missing-{secrets.token_hex(4)}")
    response = session.client.upload_api([jpeg("lost.jpg")])
    # A service failure may succeed later: 503, and no workflow the user would wait on for ever.
    assert response.status_code == 503
    assert response.get_json()["rejected"] == [
        {"filename": "lost.jpg", "reason": "lost.jpg could not be stored. Please try again."}
    ]
    assert _workflows_of(local_stack, session.user.uid) == [], "a withdrawn upload left its workflow"


@labels("dashboard", "faults")
def test_publish_failure_withdraws_the_upload_and_its_original(
    signed_in_factory: Callable[..., SignedIn], local_stack: StackState
) -> None:
    session = signed_in_factory(IMAGEFLOW_TOPIC_PREFIX=f"missing-{secrets.token_hex(4)}-")
    response = session.client.upload_api([jpeg("unqueued.jpg")])
    assert response.status_code == 503
    [refusal] = response.get_json()["rejected"]
    assert refusal["reason"] == "unqueued.jpg could not be queued for processing. Please try again."
    assert _workflows_of(local_stack, session.user.uid) == [], "a withdrawn upload left its workflow"
    stored = [
        blob.name
        for blob in clients.storage_client(local_stack.project)
        .bucket(local_stack.bucket)
        .list_blobs(prefix=f"originals/{session.user.uid}/")
    ]
    assert stored == [], f"a withdrawn upload left its original: {stored}"


def _workflows_of(stack: StackState, uid: str) -> list[dict[str, Any]]:
    query = (
        clients.firestore_client(stack.project)
        .collection(COLLECTION)
        .where(filter=FieldFilter("owner", "==", uid))
    )
    return [snapshot.to_dict() or {} for snapshot in query.stream()]


@labels("dashboard", "faults")
def test_fault_registration_broken(
    make_dashboard: DashboardFactory, fresh_credentials: TestUser, identity_toolkit: IdentityToolkit
) -> None:
    client = DashboardClient(make_dashboard(IMAGEFLOW_FAULTS=faults.REGISTRATION_BROKEN).test_client())
    response = client.register(fresh_credentials.email, fresh_credentials.password)
    assert response.status_code >= 400
    assert element_text(text(response), "form-error") == auth.GENERIC_ERROR
    assert identity_toolkit.account_exists(fresh_credentials.email) is False


@labels("dashboard", "faults")
def test_fault_login_accepts_wrong_password(make_dashboard: DashboardFactory, new_user: TestUser) -> None:
    client = DashboardClient(
        make_dashboard(IMAGEFLOW_FAULTS=faults.LOGIN_ACCEPTS_WRONG_PASSWORD).test_client()
    )
    response = client.login(new_user.email, "not-the-password-1")
    assert response.status_code == 302
    assert element_text(text(client.http.get("/")), "nav-user") == new_user.email


@labels("dashboard", "faults")
def test_fault_login_still_refuses_unknown_email(
    make_dashboard: DashboardFactory, fresh_credentials: TestUser
) -> None:
    client = DashboardClient(
        make_dashboard(IMAGEFLOW_FAULTS=faults.LOGIN_ACCEPTS_WRONG_PASSWORD).test_client()
    )
    response = client.login(fresh_credentials.email, fresh_credentials.password)
    assert response.status_code == 401


@labels("dashboard", "faults")
def test_fault_upload_not_stored(signed_in_factory: Callable[..., SignedIn], local_stack: StackState) -> None:
    session = signed_in_factory(IMAGEFLOW_FAULTS=faults.UPLOAD_NOT_STORED)
    response = session.client.upload_api([jpeg("ghost.jpg")])
    assert response.status_code == 201, "the fault must look like success to the user"
    [doc] = _workflows_of(local_stack, session.user.uid)
    assert not object_exists(local_stack, doc["image"]["object"])


@labels("dashboard", "faults")
def test_fault_upload_not_published(
    signed_in_factory: Callable[..., SignedIn], local_stack: StackState, lane: Lane
) -> None:
    session = signed_in_factory(IMAGEFLOW_FAULTS=faults.UPLOAD_NOT_PUBLISHED)
    response = session.client.upload_api([jpeg("stuck.jpg")], headers={"X-Imageflow-Lane": lane.prefix})
    assert response.status_code == 201
    [doc] = _workflows_of(local_stack, session.user.uid)
    assert object_exists(local_stack, doc["image"]["object"])
    assert lane.pull(timeout=ABSENCE_WAIT_SECONDS) == [], "the upload was published despite the fault"


@labels("dashboard", "faults")
def test_fault_shows_other_users_uploads(
    signed_in_factory: Callable[..., SignedIn], user_factory: UserFactory
) -> None:
    alice = signed_in_factory()
    upload = alice.client.upload_api([jpeg("alices.jpg")])
    workflow_id = upload.get_json()["accepted"][0]["workflow_id"]
    bob = signed_in_factory(IMAGEFLOW_FAULTS=faults.SHOWS_OTHER_USERS_UPLOADS)
    assert workflow_id in bob.client.listed_ids()
    honest = signed_in_factory()
    assert workflow_id not in honest.client.listed_ids()
