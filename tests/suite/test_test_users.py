"""The suite's own hygiene: test users and everything they own are deleted, even after a failure."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import allure
import pytest
from google.api_core import exceptions as google_exceptions
from google.cloud import firestore, pubsub_v1

from fixtures import promises
from fixtures.pubsub import TAP_KIND, real_topics
from fixtures.reporting import labels
from fixtures.sweep import SWEEP_AGE, sweep
from fixtures.target import Target, unique_name
from fixtures.users import (
    EMAIL_DOMAIN,
    USER_PREFIX,
    IdentityToolkit,
    TestUser,
    UserFactory,
    admin_auth,
    remove_user,
    throwaway_password,
)
from imageflow import clients
from imageflow.manifest import Manifest
from imageflow.workflow import COLLECTION
from stack.state import REPO_ROOT

pytestmark = pytest.mark.e2e
Severity = allure.severity_level


def _seed_upload(target: Target, uid: str) -> tuple[firestore.DocumentReference, list[str]]:
    """A workflow document and stored objects owned by uid, as an upload would leave them."""
    workflow_id = f"hygiene-{os.urandom(4).hex()}"
    document = clients.firestore_client(target.project).collection(COLLECTION).document(workflow_id)
    document.set({"owner": uid, "status": "completed", "workflow_id": workflow_id})
    bucket = clients.storage_client(target.project).bucket(target.bucket)
    names = [
        f"{promises.ORIGINALS_PREFIX}/{uid}/{workflow_id}/photo.jpg",
        f"{promises.THUMBNAILS_PREFIX}/{uid}/{workflow_id}.jpg",
    ]
    for name in names:
        bucket.blob(name).upload_from_string(b"not really a jpeg", content_type="image/jpeg")
    return document, names


def _objects_left(target: Target, names: list[str]) -> list[str]:
    bucket = clients.storage_client(target.project).bucket(target.bucket)
    return [name for name in names if bucket.blob(name).exists()]


@labels("Suite hygiene", "Test users deleted with their data", Severity.CRITICAL)
def test_removing_a_test_user_deletes_account_workflows_and_objects(
    target: Target, identity_toolkit: IdentityToolkit, user_factory: UserFactory
) -> None:
    user = user_factory()
    document, names = _seed_upload(target, user.uid)
    remove_user(identity_toolkit, user)
    assert not document.get().exists
    assert _objects_left(target, names) == []
    assert not identity_toolkit.account_exists(user.email), f"the account of {user.email} is still there"


def _exists(document: firestore.DocumentReference) -> bool:
    return bool(document.get().exists)


def _subscription_exists(subscriber: pubsub_v1.SubscriberClient, path: str) -> bool:
    try:
        subscriber.get_subscription(request={"subscription": path})
    except google_exceptions.NotFound:
        return False
    return True


def _created(target: Target, uid: str) -> datetime:
    """When Auth says the account was made (its own clock, as the sweep reads it)."""
    created_ms = admin_auth(target).get_user(uid).user_metadata.creation_timestamp
    return datetime.fromtimestamp(created_ms / 1000, UTC)


@labels("Suite hygiene", "Leftovers of crashed runs swept", Severity.CRITICAL)
def test_sweep_deletes_only_the_suites_leftovers_older_than_a_day(
    target: Target,
    identity_toolkit: IdentityToolkit,
    user_factory: UserFactory,
    pipeline_manifest: Manifest,
    pubsub_subscriber: pubsub_v1.SubscriberClient,
) -> None:
    # This worker's names only (e2e-<run>-<worker>-, tap-<run>-<worker>-): it runs one test at a
    # time, so nothing of another test, worker or run can match, whatever the sweep's clock says.
    prefix = unique_name(USER_PREFIX.rstrip("-")).rsplit("-", 1)[0] + "-"
    tap_prefix = unique_name(TAP_KIND).rsplit("-", 1)[0] + "-"
    keep = unique_name("keep")
    firestore_client = clients.firestore_client(target.project)
    bucket = clients.storage_client(target.project).bucket(target.bucket)
    admin = admin_auth(target)
    topic_prefix = os.environ.get("IMAGEFLOW_TOPIC_PREFIX", "")
    topic = next(iter(real_topics(pipeline_manifest, "", topic_prefix).values()))
    topic_path = pubsub_subscriber.topic_path(target.project, topic)
    owner = f"uid-{os.urandom(3).hex()}"
    old_id, young_id = f"{prefix}{os.urandom(3).hex()}", f"{prefix}young-{os.urandom(3).hex()}"
    old_objects = [
        f"{promises.ORIGINALS_PREFIX}/{owner}/{old_id}/photo.jpg",
        f"{promises.THUMBNAILS_PREFIX}/{owner}/{old_id}.jpg",
    ]
    kept_object = f"{promises.ORIGINALS_PREFIX}/{owner}/{keep}/photo.jpg"
    old_tap = pubsub_subscriber.subscription_path(
        target.project, f"{tap_prefix}{os.urandom(3).hex()}-{topic}"
    )
    kept_subscription = pubsub_subscriber.subscription_path(target.project, keep)
    kept_email = f"{keep}@{EMAIL_DOMAIN}"
    documents = {
        name: firestore_client.collection(COLLECTION).document(name) for name in (old_id, young_id, keep)
    }
    try:
        with allure.step("The suite's old leftovers, and beside them what is not the suite's"):
            for name in (old_id, keep):
                documents[name].set({"owner": owner, "status": "completed", "workflow_id": name})
            for name in (*old_objects, kept_object):
                bucket.blob(name).upload_from_string(b"not really a jpeg", content_type="image/jpeg")
            for path in (old_tap, kept_subscription):
                pubsub_subscriber.create_subscription(
                    request={
                        "name": path,
                        "topic": topic_path,
                        "expiration_policy": {"ttl": {"seconds": 86400}},
                    }
                )
            old = user_factory()
            old_upload, old_user_objects = _seed_upload(target, old.uid)
            kept_uid = str(admin.create_user(email=kept_email, password=throwaway_password()).uid)
            kept_upload, kept_user_objects = _seed_upload(target, kept_uid)
        with allure.step("A young account and document of the suite, made after all the rest"):
            young = user_factory()
            documents[young_id].set({"owner": owner, "status": "completed", "workflow_id": young_id})
        # The sweep's clock a day ahead of the moment halfway between the old and the young account.
        old_at, young_at = _created(target, old.uid), _created(target, young.uid)
        assert old_at < young_at, f"Auth gave both accounts the same creation time {old_at}"
        now = old_at + (young_at - old_at) / 2 + SWEEP_AGE

        listed = sweep(target, now=now, dry_run=True, prefix=prefix, tap_prefix=tap_prefix)
        assert (listed.users, listed.documents, listed.objects, listed.subscriptions) == (
            [old.email],
            [old_id],
            sorted(old_objects),
            [old_tap],
        )
        assert identity_toolkit.account_exists(old.email), "a dry run deleted an account"
        assert _exists(documents[old_id]), "a dry run deleted a document"

        swept = sweep(target, now=now, prefix=prefix, tap_prefix=tap_prefix)
        assert (swept.users, swept.documents, swept.objects, swept.subscriptions) == (
            listed.users,
            listed.documents,
            listed.objects,
            listed.subscriptions,
        )
        assert not identity_toolkit.account_exists(old.email)
        assert not old_upload.get().exists, "the old account's workflow document is left"
        assert _objects_left(target, old_user_objects + old_objects) == []
        assert not _exists(documents[old_id])
        assert not _subscription_exists(pubsub_subscriber, old_tap)
        # What is not the suite's, or is younger than a day, is all still there.
        assert identity_toolkit.account_exists(young.email)
        assert identity_toolkit.account_exists(kept_email)
        assert _exists(documents[young_id])
        assert _exists(documents[keep])
        assert kept_upload.get().exists, "the other account's workflow document went"
        assert _objects_left(target, [kept_object, *kept_user_objects]) == [kept_object, *kept_user_objects]
        assert _subscription_exists(pubsub_subscriber, kept_subscription)
        again = sweep(target, now=now, prefix=prefix, tap_prefix=tap_prefix)
        assert again.lines()[:2] == [
            "deleted 0 test users (0 of their documents and objects)",
            "deleted 0 workflow documents, 0 stored objects, 0 tap subscriptions",
        ]
    finally:
        for document in documents.values():
            document.delete()
        for name in (*old_objects, kept_object):
            with contextlib.suppress(google_exceptions.NotFound):
                bucket.blob(name).delete()
        for path in (old_tap, kept_subscription):
            with contextlib.suppress(google_exceptions.NotFound):
                pubsub_subscriber.delete_subscription(request={"subscription": path})
        # The other account with its data, found by its email as a test user's is.
        remove_user(identity_toolkit, TestUser(email=kept_email, password=""))


FAILING_TEST = """
from pathlib import Path

def test_creates_a_user_then_fails(new_user):
    Path("user.txt").write_text(new_user.email)
    raise AssertionError("planned failure")
"""


@labels("Suite hygiene", "Test users deleted even when the test fails", Severity.CRITICAL)
def test_test_user_is_deleted_even_when_its_test_fails(
    tmp_path: Path, target: Target, identity_toolkit: IdentityToolkit
) -> None:
    if not target.is_local:
        pytest.skip("the inner run reuses the local stack")
    plugins = (
        '["fixtures.stack", "fixtures.target", "fixtures.reporting", "fixtures.browser", "fixtures.users", '
        '"fixtures.sweep"]'
    )
    (tmp_path / "conftest.py").write_text(f"pytest_plugins = {plugins}\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "test_inner.py").write_text(FAILING_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "IMAGEFLOW_RUN_ID"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    with allure.step("Inner run: a test makes a user, then fails"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "--rootdir",
                str(tmp_path),
                "-c",
                str(tmp_path / "pytest.ini"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "planned failure" in result.stdout
    email = (tmp_path / "user.txt").read_text()
    assert identity_toolkit.account_exists(email) is False
    assert TestUser(email=email, password="").email.startswith("e2e-")
