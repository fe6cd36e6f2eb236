"""firestore.rules against the real Firestore emulator: owners read their own workflows, nobody writes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from rules_rest import ADMIN, FirestoreRest, string

from fixtures.reporting import labels

pytestmark = [pytest.mark.rules]

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
def test_other_user_refused_the_workflow(
    firestore_rest: FirestoreRest, workflow_path: str, stranger: str
) -> None:
    response = firestore_rest.call("GET", workflow_path, firestore_rest.token(stranger))
    assert response.status_code == REFUSED, f"another user read someone's workflow: {response.status_code}"


@labels("firestore.rules", "reads")
def test_anonymous_refused_the_workflow(firestore_rest: FirestoreRest, workflow_path: str) -> None:
    response = firestore_rest.call("GET", workflow_path, None)
    assert response.status_code == REFUSED, f"an anonymous client read a workflow: {response.status_code}"


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


@labels("firestore.rules", "queries")
def test_unfiltered_list_refused(firestore_rest: FirestoreRest, workflow_path: str, owner: str) -> None:
    response = firestore_rest.query(firestore_rest.token(owner), "workflows", None)
    assert response.status_code == REFUSED, "a query not constrained to the caller's uid was answered"


@labels("firestore.rules", "queries")
def test_list_filtered_by_another_uid_refused(
    firestore_rest: FirestoreRest, workflow_path: str, owner: str, stranger: str
) -> None:
    response = firestore_rest.query(firestore_rest.token(stranger), "workflows", owner)
    assert response.status_code == REFUSED, "a user listed another user's workflows"


@labels("firestore.rules", "queries")
def test_anonymous_list_refused(firestore_rest: FirestoreRest, workflow_path: str, owner: str) -> None:
    response = firestore_rest.query(None, "workflows", owner)
    assert response.status_code == REFUSED


@labels("firestore.rules", "writes")
def test_client_create_refused_even_for_owner(
    firestore_rest: FirestoreRest, cleanup_paths: list[str], owner: str, uid_factory: Callable[[], str]
) -> None:
    doc_id = uid_factory()
    # Registered for cleanup first: if the rules ever let it through, teardown still deletes it.
    cleanup_paths.append(f"/workflows/{doc_id}")
    response = firestore_rest.call(
        "POST",
        f"/workflows?documentId={doc_id}",
        firestore_rest.token(owner),
        {"fields": workflow_fields(owner)},
    )
    assert response.status_code == REFUSED, f"a client created a workflow: {response.status_code}"
    assert firestore_rest.call("GET", f"/workflows/{doc_id}", ADMIN).status_code == 404


@labels("firestore.rules", "writes")
def test_client_update_refused_even_for_owner(
    firestore_rest: FirestoreRest, workflow_path: str, owner: str
) -> None:
    body = {"fields": {**workflow_fields(owner), "status": string("completed")}}
    response = firestore_rest.call("PATCH", workflow_path, firestore_rest.token(owner), body)
    assert response.status_code == REFUSED, f"a client updated a workflow: {response.status_code}"
    stored = firestore_rest.call("GET", workflow_path, ADMIN).json()
    assert stored["fields"]["status"] == string("pending")


@labels("firestore.rules", "writes")
def test_client_delete_refused_even_for_owner(
    firestore_rest: FirestoreRest, workflow_path: str, owner: str
) -> None:
    response = firestore_rest.call("DELETE", workflow_path, firestore_rest.token(owner))
    assert response.status_code == REFUSED, f"a client deleted a workflow: {response.status_code}"
    assert firestore_rest.call("GET", workflow_path, ADMIN).status_code == 200


@labels("firestore.rules", "default deny")
@pytest.mark.parametrize("collection", ["users", "settings"])
def test_paths_outside_workflows_refused(
    firestore_rest: FirestoreRest,
    admin_document: Writer,
    owner: str,
    collection: str,
    uid_factory: Callable[[], str],
) -> None:
    path = admin_document(collection, owner, workflow_fields(owner))
    token = firestore_rest.token(owner)
    assert firestore_rest.call("GET", path, token).status_code == REFUSED, f"read of {path} allowed"
    assert firestore_rest.query(token, collection, owner).status_code == REFUSED, (
        f"list of {collection} allowed"
    )
    created = firestore_rest.call("PATCH", f"/{collection}/{uid_factory()}", token, {"fields": {}})
    assert created.status_code == REFUSED, f"write under {collection} allowed"


@labels("firestore.rules", "default deny")
def test_subcollection_of_own_workflow_refused(
    firestore_rest: FirestoreRest, admin_document: Writer, workflow_path: str, owner: str
) -> None:
    child = admin_document(workflow_path.strip("/") + "/notes", "n1", workflow_fields(owner))
    assert firestore_rest.call("GET", child, firestore_rest.token(owner)).status_code == REFUSED
