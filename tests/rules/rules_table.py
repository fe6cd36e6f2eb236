"""The one table of what firestore.rules promise, and how each (collection, operation, actor) is tried.

Every operation a client can attempt, by every kind of caller, on every collection the rules name
plus one they do not: the expected outcome is ALLOWED or refused, nothing else is implied.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from rules_rest import ADMIN, FirestoreRest, string

RULES_FILE = Path(__file__).resolve().parents[2] / "firestore.rules"
REFUSED = 403

OPERATIONS = ("get", "list", "query_by_owner", "create", "update", "delete")
ACTORS = ("owner", "other", "anonymous")
RULE_COLLECTIONS = ("workflows",)
# Collections no rule names, where everything must fall to the default deny: the dashboard's
# server-side sessions (they hold users' tokens), and one nothing uses.
UNNAMED_COLLECTIONS = ("sessions", "uploads")
COLLECTIONS = (*RULE_COLLECTIONS, *UNNAMED_COLLECTIONS)
# The whole promise: the owner reads a workflow, and queries workflows constrained to their uid.
ALLOWED = frozenset({("workflows", "get", "owner"), ("workflows", "query_by_owner", "owner")})


@dataclass(frozen=True)
class Case:
    """One cell of the table."""

    collection: str
    operation: str
    actor: str

    @property
    def allowed(self) -> bool:
        """What the rules promise for this cell."""
        return (self.collection, self.operation, self.actor) in ALLOWED

    @property
    def id(self) -> str:
        """A readable test id."""
        verdict = "allowed" if self.allowed else "refused"
        return f"{self.collection}-{self.operation}-{self.actor}-{verdict}"


CASES = tuple(Case(*cell) for cell in itertools.product(COLLECTIONS, OPERATIONS, ACTORS))


def collections_named_by(rules: str) -> set[str]:
    """The top-level collections the rules match by name (`match /name/{id}` under documents)."""
    return set(re.findall(r"match\s+/(?!databases/\{database\}/documents)([A-Za-z_][\w-]*)/\{", rules))


def document_fields(owner: str, status: str = "pending") -> dict[str, Any]:
    """A minimal workflow-like document owned by owner."""
    image = {"mapValue": {"fields": {"filename": string("photo.jpg")}}}
    return {"owner": string(owner), "status": string(status), "image": image}


@dataclass
class Attempt:
    """What one cell's request answered, and whether the stored data changed."""

    status: int
    changed: bool
    detail: str


def returned_ids(rows: list[dict[str, Any]]) -> set[str]:
    """The document ids a runQuery answer holds."""
    return {row["document"]["name"].rsplit("/", 1)[-1] for row in rows if "document" in row}


def attempt(rest: FirestoreRest, case: Case, owner: str, other: str, doc_id: str, new_id: str) -> Attempt:
    """Try the cell: doc_id (owned by owner) exists in case.collection; new_id does not."""
    bearer = {"owner": rest.token(owner), "other": rest.token(other), "anonymous": None}[case.actor]
    path = f"/{case.collection}/{doc_id}"
    before = rest.call("GET", path, ADMIN).json()
    response: requests.Response
    if case.operation == "get":
        response = rest.call("GET", path, bearer)
    elif case.operation == "list":
        response = rest.query(bearer, case.collection, None)
    elif case.operation == "query_by_owner":
        # The owner's uid in the filter whoever asks: another user or anonymous asking for it.
        response = rest.query(bearer, case.collection, owner)
    elif case.operation == "create":
        fields = document_fields(owner if case.actor != "other" else other)
        response = rest.call("POST", f"/{case.collection}?documentId={new_id}", bearer, {"fields": fields})
    elif case.operation == "update":
        response = rest.call("PATCH", path, bearer, {"fields": document_fields(owner, "completed")})
    elif case.operation == "delete":
        response = rest.call("DELETE", path, bearer)
    else:
        raise ValueError(f"unknown operation {case.operation}")
    after = rest.call("GET", path, ADMIN)
    created = rest.call("GET", f"/{case.collection}/{new_id}", ADMIN).status_code == 200
    changed = after.status_code != 200 or after.json() != before or created
    detail = response.text[:300]
    if response.status_code == 200 and case.operation in ("list", "query_by_owner"):
        detail = f"returned {sorted(returned_ids(response.json()))}"
    return Attempt(response.status_code, changed, detail)
