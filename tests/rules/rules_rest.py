"""Firestore REST calls as a mock user, anonymously or as admin, for the firestore.rules tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from fixtures.mock_tokens import mock_id_token

HTTP_TIMEOUT_SECONDS = 15
# The emulator's documented admin credential: it bypasses the rules, like a service account.
ADMIN = "owner"


@dataclass(frozen=True)
class FirestoreRest:
    """The Firestore REST API of the emulator, called as a given user, anonymously, or as admin."""

    host: str
    project: str

    @property
    def documents(self) -> str:
        """The documents root URL."""
        return f"http://{self.host}/v1/projects/{self.project}/databases/(default)/documents"

    def token(self, uid: str) -> str:
        """A mock ID token for uid."""
        return mock_id_token(uid, self.project)

    def call(
        self, method: str, path: str, bearer: str | None, body: Mapping[str, Any] | None = None
    ) -> requests.Response:
        """One REST call; bearer None means no Authorization header (an anonymous client)."""
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
        return requests.request(
            method, f"{self.documents}{path}", json=body, headers=headers, timeout=HTTP_TIMEOUT_SECONDS
        )

    def query(self, bearer: str | None, collection: str, owner: str | None) -> requests.Response:
        """A runQuery on collection, filtered by owner when given."""
        structured: dict[str, Any] = {"from": [{"collectionId": collection}], "limit": 100}
        if owner is not None:
            structured["where"] = {
                "fieldFilter": {
                    "field": {"fieldPath": "owner"},
                    "op": "EQUAL",
                    "value": {"stringValue": owner},
                }
            }
        return self.call("POST", ":runQuery", bearer, {"structuredQuery": structured})


def string(value: str) -> dict[str, str]:
    """A Firestore REST string value."""
    return {"stringValue": value}


@dataclass(frozen=True)
class EmulatorAdmin:
    """The Firestore emulator's own endpoints for one project: rules, rules coverage, data reset."""

    host: str
    project: str

    @property
    def base(self) -> str:
        """The emulator's per-project admin URL."""
        return f"http://{self.host}/emulator/v1/projects/{self.project}"

    def load_rules(self, text: str) -> None:
        """Load rules for this project only (other projects keep theirs)."""
        body = {"rules": {"files": [{"name": "firestore.rules", "content": text}]}}
        response = requests.put(f"{self.base}:securityRules", json=body, timeout=HTTP_TIMEOUT_SECONDS)
        assert response.status_code == 200, f"the emulator refused the rules: {response.text[:300]}"

    def coverage(self) -> dict[str, Any]:
        """The rules coverage report as JSON: per expression, the values it evaluated to and how often."""
        response = requests.get(f"{self.base}:ruleCoverage", timeout=HTTP_TIMEOUT_SECONDS)
        assert response.status_code == 200, f"no rules coverage report: {response.status_code}"
        report: dict[str, Any] = response.json()
        return report

    def coverage_html(self) -> str:
        """The rules coverage report as the emulator's HTML page."""
        response = requests.get(f"{self.base}:ruleCoverage.html", timeout=HTTP_TIMEOUT_SECONDS)
        assert response.status_code == 200, f"no rules coverage page: {response.status_code}"
        return response.text

    def clear(self) -> None:
        """Delete every document of this project."""
        response = requests.delete(f"{self.base}/databases/(default)/documents", timeout=HTTP_TIMEOUT_SECONDS)
        assert response.status_code == 200, (
            f"the emulator did not clear project {self.project}: {response.status_code} {response.text[:200]}"
        )
