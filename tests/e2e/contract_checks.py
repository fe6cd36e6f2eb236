"""Verdicts of the contract scenarios: answers that are never 5xx, one-line reasons, what was stored.

Shared by the bad-upload, contract and property-based scenarios; each check raises AssertionError
saying exactly what was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import allure
from google.cloud import storage
from google.cloud.firestore_v1.base_query import FieldFilter
from requests import Response

from fixtures import promises
from fixtures.dashboard import FilePart, multipart
from fixtures.firestore import WorkflowWatcher
from fixtures.target import Target
from fixtures.uploads import ApiSession
from fixtures.users import TestUser
from imageflow import clients
from imageflow.manifest import Manifest
from imageflow.workflow import COLLECTION


def no_server_error(response: Response, what: str = "POST /api/uploads") -> None:
    """The system answered on purpose: never a 5xx."""
    assert response.status_code < 500, f"{what} answered {response.status_code}: {response.text[:300]}"


def one_line(reason: object, what: str) -> str:
    """The reason as text, asserted to be one short line (never a traceback, never empty)."""
    text = str(reason or "")
    assert promises.ONE_LINE_REASON.fullmatch(text), f"{what}: not a one-line reason: {text[:400]!r}"
    return text


@dataclass(frozen=True)
class Stored:
    """What exists for one user, read as admin: workflow ids and object names by prefix."""

    workflow_ids: frozenset[str]
    originals: frozenset[str]
    thumbnails: frozenset[str]

    def objects_of(self, workflow_id: str) -> list[str]:
        """Every object stored for one workflow."""
        return sorted(n for n in self.originals | self.thumbnails if workflow_id in n)


@dataclass(frozen=True)
class PipelineScene:
    """A contract scenario's new user logged in over HTTP, with the watcher, manifest, bucket and target."""

    user: TestUser
    session: ApiSession
    watcher: WorkflowWatcher
    manifest: Manifest
    bucket: storage.Bucket
    target: Target


def stored_for(user: TestUser, bucket: storage.Bucket, target: Target) -> Stored:
    """Workflow documents and objects that exist for the user."""
    documents = clients.firestore_client(target.project).collection(COLLECTION)
    ids = {s.id for s in documents.where(filter=FieldFilter("owner", "==", user.uid)).stream()}
    originals = {b.name for b in bucket.list_blobs(prefix=f"{promises.ORIGINALS_PREFIX}/{user.uid}/")}
    thumbnails = {b.name for b in bucket.list_blobs(prefix=f"{promises.THUMBNAILS_PREFIX}/{user.uid}/")}
    return Stored(frozenset(ids), frozenset(originals), frozenset(thumbnails))


def only_these_stored(
    user: TestUser, bucket: storage.Bucket, target: Target, workflow_ids: Iterable[str]
) -> Stored:
    """Nothing but the given workflows (documents and objects) exists for the user."""
    allowed = set(workflow_ids)
    with allure.step(f"Nothing is stored for {user.email} but {len(allowed)} accepted upload(s)"):
        stored = stored_for(user, bucket, target)
        assert stored.workflow_ids == allowed, (
            f"workflow documents of the user: {sorted(stored.workflow_ids)}, expected {sorted(allowed)}"
        )
        strays = sorted(
            name
            for name in stored.originals | stored.thumbnails
            if not any(f"/{wid}" in name for wid in allowed)
        )
        assert not strays, f"objects stored for no accepted upload: {strays}"
        return stored


def refusals(response: Response) -> dict[str, str]:
    """{filename: reason} of the files an upload response refused."""
    body = response.json()
    return {str(r["filename"]): str(r["reason"]) for r in body.get("rejected", [])}


def boundary_of(content_type: str) -> str:
    """The multipart boundary named by a Content-Type header value."""
    return content_type.split("boundary=", 1)[1]


def upload_parts(session: ApiSession, parts: Sequence[FilePart]) -> Response:
    """POST /api/uploads with a hand-built multipart body (any filename bytes, any part type)."""
    body, content_type = multipart({}, parts)
    return session.upload_raw(body, boundary_of(content_type))
