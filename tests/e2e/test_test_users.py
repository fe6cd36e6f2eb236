"""The suite's own hygiene: test users and everything they own are deleted, even after a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import allure
import pytest
from google.cloud import firestore

from fixtures import promises
from fixtures.reporting import labels
from fixtures.target import REPO_ROOT, Target
from fixtures.users import IdentityToolkit, TestUser, UserFactory, remove_user, sweep_leftovers
from imageflow import clients
from imageflow.workflow import COLLECTION

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
    exists = identity_toolkit.account_exists(user.email)
    if exists is None:
        pytest.skip("data deleted; whether the account went too is seen only on the emulator")
    assert exists is False, f"the account of {user.email} is still there"


@labels("Suite hygiene", "Leftovers of crashed runs swept", Severity.NORMAL)
def test_sweep_deletes_only_leftovers_older_than_a_day(
    target: Target, identity_toolkit: IdentityToolkit, user_factory: UserFactory
) -> None:
    if not target.is_local:
        pytest.skip("listing accounts needs the Auth emulator's admin access")
    old, fresh = user_factory(), user_factory()
    document, names = _seed_upload(target, old.uid)
    # e2e-<run>-<worker>-: this worker runs one test at a time, so only this test's users match.
    prefix = old.email.rsplit("-", 1)[0] + "-"
    assert fresh.email.startswith(prefix)
    created_fresh = datetime.now(UTC)
    swept = sweep_leftovers(identity_toolkit, now=created_fresh + timedelta(days=1, minutes=5), prefix=prefix)
    assert sorted(swept) == sorted([old.email, fresh.email])
    assert not document.get().exists
    assert _objects_left(target, names) == []
    assert sweep_leftovers(identity_toolkit, prefix=prefix) == []


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
        '["fixtures.stack", "fixtures.target", "fixtures.reporting", "fixtures.browser", "fixtures.users"]'
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
