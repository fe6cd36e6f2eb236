"""firestore.rules beyond the table (test_rules_table.py): what a read returns, many documents, children."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from rules_rest import FirestoreRest, string

from fixtures.reporting import labels

Writer = Callable[[str, str, Mapping[str, Any]], str]
REFUSED = 403


def workflow_fields(owner: str, filename: str = "photo.jpg") -> dict[str, Any]:
    """The fields of a minimal workflow document owned by owner."""
    image = {"mapValue": {"fields": {"filename": string(filename)}}}
    return {"owner": string(owner), "status": string("pending"), "image": image}


def returned_ids(rows: list[dict[str, Any]]) -> set[str]:
    """The document ids a runQuery answer holds."""
    return {row["document"]["name"].rsplit("/", 1)[-1] for row in rows if "document" in row}


@pytest.fixture
def owner(uid_factory: Callable[[], str]) -> str:
    """The uid of the user who owns the workflow under test."""
    return uid_factory()


@pytest.fixture
def stranger(uid_factory: Callable[[], str]) -> str:
    """The uid of another signed-in user."""
    return uid_factory()


@pytest.fixture
def workflow_path(admin_document: Writer, owner: str, uid_factory: Callable[[], str]) -> str:
    """A workflow document owned by owner, written as admin."""
    return admin_document("workflows", uid_factory(), workflow_fields(owner))


@labels("firestore.rules", "reads")
def test_owner_reads_own_workflow(firestore_rest: FirestoreRest, workflow_path: str, owner: str) -> None:
    response = firestore_rest.call("GET", workflow_path, firestore_rest.token(owner))
    assert response.status_code == 200, response.text
    assert response.json()["fields"]["owner"] == string(owner)


@labels("firestore.rules", "reads")
def test_missing_workflow_refused_not_an_error(firestore_rest: FirestoreRest, owner: str) -> None:
    # The dashboard turns this into its 404 page: it must be a refusal, never a server error.
    response = firestore_rest.call("GET", "/workflows/no-such-workflow-ever", firestore_rest.token(owner))
    assert response.status_code == REFUSED


@labels("firestore.rules", "queries")
def test_owner_lists_own_workflows_with_owner_filter(
    firestore_rest: FirestoreRest,
    admin_document: Writer,
    owner: str,
    stranger: str,
    uid_factory: Callable[[], str],
) -> None:
    mine = [admin_document("workflows", uid_factory(), workflow_fields(owner)) for _ in range(2)]
    admin_document("workflows", uid_factory(), workflow_fields(stranger))
    response = firestore_rest.query(firestore_rest.token(owner), "workflows", owner)
    assert response.status_code == 200, response.text
    assert returned_ids(response.json()) == {path.rsplit("/", 1)[-1] for path in mine}


@labels("firestore.rules", "default deny")
def test_subcollection_of_own_workflow_refused(
    firestore_rest: FirestoreRest, admin_document: Writer, workflow_path: str, owner: str
) -> None:
    child = admin_document(workflow_path.strip("/") + "/notes", "n1", workflow_fields(owner))
    assert firestore_rest.call("GET", child, firestore_rest.token(owner)).status_code == REFUSED
