"""Reads of user data through the Firestore REST API with the user's ID token, so firestore.rules decide."""

from __future__ import annotations

import os
from typing import Any

import requests

from imageflow.dashboard.firestore_values import decode_fields
from imageflow.workflow import COLLECTION

TIMEOUT_SECONDS = 10.0
LIST_LIMIT = 100


class NotFound(Exception):
    """The document does not exist or the rules refuse it to this user (the browser cannot tell)."""


class FirestoreUnavailable(Exception):
    """Firestore could not be reached or answered with a server error."""


class FirestoreReader:
    """Rules-enforced reads of the workflows collection on behalf of a signed-in user."""

    def __init__(self, project: str, emulator_host: str | None = None) -> None:
        host = emulator_host if emulator_host is not None else os.environ.get("FIRESTORE_EMULATOR_HOST", "")
        root = f"http://{host}/v1" if host else "https://firestore.googleapis.com/v1"
        self.database = f"projects/{project}/databases/(default)"
        self.documents_url = f"{root}/{self.database}/documents"
        self._http = requests.Session()

    def _request(self, method: str, url: str, id_token: str, body: dict[str, Any] | None = None) -> Any:  # noqa: ANN401 - JSON of either shape (document or query rows)
        try:
            response = self._http.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {id_token}"},
                timeout=TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            raise FirestoreUnavailable(f"Firestore unreachable ({type(exc).__name__})") from None
        if response.status_code in (401, 403, 404):
            raise NotFound
        if response.status_code >= 400:
            raise FirestoreUnavailable(f"Firestore answered HTTP {response.status_code}")
        return response.json()

    def get_workflow(self, id_token: str, workflow_id: str) -> dict[str, Any]:
        """The workflow document as the user may see it; NotFound when absent or not theirs."""
        if not workflow_id or not workflow_id.isalnum():
            # Ids are uuid4 hex; anything else cannot exist and must not reach the URL path.
            raise NotFound
        payload = self._request("GET", f"{self.documents_url}/{COLLECTION}/{workflow_id}", id_token)
        doc = decode_fields(payload.get("fields") or {})
        doc.setdefault("workflow_id", workflow_id)
        return doc

    def list_workflows(self, id_token: str, owner: str | None) -> list[dict[str, Any]]:
        """The user's workflows, newest first; owner=None drops the owner filter (rules then refuse)."""
        query: dict[str, Any] = {"from": [{"collectionId": COLLECTION}], "limit": LIST_LIMIT}
        if owner is not None:
            query["where"] = {
                "fieldFilter": {
                    "field": {"fieldPath": "owner"},
                    "op": "EQUAL",
                    "value": {"stringValue": owner},
                }
            }
        rows = self._request("POST", f"{self.documents_url}:runQuery", id_token, {"structuredQuery": query})
        docs = []
        for row in rows if isinstance(rows, list) else []:
            document = row.get("document")
            if not document:
                continue  # runQuery answers [{"readTime": ...}] when nothing matches
            doc = decode_fields(document.get("fields") or {})
            doc.setdefault("workflow_id", document["name"].rsplit("/", 1)[-1])
            docs.append(doc)
        return sort_newest_first(docs)


def sort_newest_first(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort by created_at, newest first (the query has no orderBy so that no index is needed)."""
    return sorted(docs, key=lambda d: (d.get("created_at") is not None, d.get("created_at")), reverse=True)
