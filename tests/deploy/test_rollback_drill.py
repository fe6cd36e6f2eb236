"""The rollback drill on the local stack: a good release, a backup, a faulty release the gate refuses,
then the rollback session brings back the previous revisions, the rules from git history and the data."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from fixtures.deployment import deploy_env, deploy_tool, latest_record
from fixtures.mock_tokens import mock_id_token
from stack.control import StackControl

pytestmark = [pytest.mark.drill, pytest.mark.destructive]

FOCUSED_CHECK = ["-k", "upload_jpeg"]
# Rules that refuse every client read: the damage after the release, so the rules restore is observable.
DENY_ALL = (
    "rules_version = '2';\n"
    "service cloud.firestore { match /{document=**} { allow read, write: if false; } }\n"
)


def documents(client: firestore.Client, collection: str) -> dict[str, dict[str, Any]]:
    """Every document of a collection, by id."""
    return {doc.id: doc.to_dict() or {} for doc in client.collection(collection).stream()}


@pytest.fixture
def drill_data(private_stack: StackControl) -> Iterator[tuple[firestore.Client, str, str]]:
    """Documents the backup must bring back: a workflow owned by a drill user, and a drill collection."""
    project = private_stack.state.project
    client = firestore.Client(project=project)
    tag = f"drill-{secrets.token_hex(4)}"
    owner = f"{tag}-owner"
    docs = [
        client.collection("workflows").document(tag),
        *[client.collection(tag).document(f"d{i}") for i in range(3)],
    ]
    try:
        client.collection("workflows").document(tag).set({"owner": owner, "status": "completed", "steps": {}})
        for i, ref in enumerate(docs[1:]):
            ref.set({"n": i, "owner": owner})
        yield client, tag, owner
    finally:
        for ref in docs:
            ref.delete()


def owner_can_read(stack_control: StackControl, workflow_id: str, owner: str) -> int:
    """Status of the owner's own read of the workflow through the rules (200 allowed, 403 refused)."""
    current = stack_control.state
    url = (
        f"http://{current.emulators['firestore']}/v1/projects/{current.project}/databases/(default)"
        f"/documents/workflows/{workflow_id}"
    )
    response = requests.get(
        url, headers={"Authorization": f"Bearer {mock_id_token(owner, current.project)}"}, timeout=30
    )
    return response.status_code


def test_rollback_drill(
    private_stack: StackControl, drill_data: tuple[firestore.Client, str, str], tmp_path: Path
) -> None:
    """Faulty thumbnailer release: the gate refuses it, the rollback restores revisions, rules and data.

    The canary has a test of its own (test_canary_local.py): here each release is one switch.
    """
    client, tag, owner = drill_data
    log, runs = tmp_path / "drill.log", tmp_path / "runs"
    env = deploy_env(private_stack.state_path, runs)
    services = [s.name for s in private_stack.manifest.services]

    # 1. A good release, verified by the focused upload scenario, promoted.
    assert (
        deploy_tool("deploy", "--env", "local", "--no-canary", "--", *FOCUSED_CHECK, env=env, log=log) == 0
    ), log.read_text()
    good = {s: private_stack.live_revision(s).id for s in services}  # type: ignore[union-attr]
    before = {
        tag: documents(client, tag),
        "workflow": client.collection("workflows").document(tag).get().to_dict(),
    }
    assert owner_can_read(private_stack, tag, owner) == 200

    # 2. A faulty release (thumbnailer errors) with a backup first: the gate must refuse it.
    gate_log_start = len(log.read_text(encoding="utf-8"))
    code = deploy_tool(
        "deploy",
        "--env",
        "local",
        "--no-canary",
        "--backup",
        "--revision-env",
        "IMAGEFLOW_FAULTS=thumbnailer.errors",
        "--",
        *FOCUSED_CHECK,
        env=env,
        log=log,
    )
    gate = latest_record(runs, "deploy")
    assert code == 1, log.read_text()
    assert gate["verification"]["passed"] is False
    assert gate["decision"] == "rolled back"
    assert "thumbnailer" in log.read_text(encoding="utf-8")[gate_log_start:], (
        "the gate failed for another reason"
    )
    assert {s: private_stack.live_revision(s).id for s in services} == good  # type: ignore[union-attr]
    assert owner_can_read(private_stack, tag, owner) == 200, "the gate's rollback did not reload the rules"

    # 3. Data and rules damaged after the backup (as a bad release would), then the rollback session.
    private_stack.load_rules(DENY_ALL)
    assert owner_can_read(private_stack, tag, owner) == 403
    client.collection(tag).document("d0").delete()
    client.collection(tag).document("d1").set({"n": -1, "owner": "corrupted"})
    client.collection("workflows").document(tag).update({"status": "failed"})
    code = deploy_tool(
        "rollback",
        "--env",
        "local",
        "--rules-from",
        "HEAD",
        "--restore-backup",
        gate["backup"],
        env=env,
        log=log,
    )
    assert code == 0, log.read_text()
    rollback = latest_record(runs, "rollback")
    after_rollback = {s: private_stack.live_revision(s).id for s in services}  # type: ignore[union-attr]
    assert after_rollback == rollback["revisions_after"]
    assert not set(after_rollback.values()) & set(gate["revisions_candidate"].values())
    after = {
        tag: documents(client, tag),
        "workflow": client.collection("workflows").document(tag).get().to_dict(),
    }
    for doc_id, document in before[tag].items():
        assert after[tag].get(doc_id) == document, f"{tag}/{doc_id} not restored from the backup"
    assert set(after[tag]) == set(before[tag])
    assert after["workflow"] == before["workflow"], f"workflows/{tag} not restored from the backup"
    assert owner_can_read(private_stack, tag, owner) == 200

    # 4. Green again: the focused upload scenario through a fresh release of the same commit.
    assert (
        deploy_tool("deploy", "--env", "local", "--no-canary", "--", *FOCUSED_CHECK, env=env, log=log) == 0
    ), log.read_text()
