"""Server-side sessions: one Firestore document per signed-in session, the cookie holds only its id.

Why a Firestore document and not a Firebase session cookie (firebase-admin): the dashboard reads
every workflow through the Firestore REST API with the user's own ID token, so that
firestore.rules decide what a user may see; a Firebase session cookie is not an ID token and
cannot make those reads. It would also keep a long-lived credential in the browser, and its
logout (``revoke_refresh_tokens``) ends every session of the user, on every device, with
one-second granularity (a cookie minted in the same second as the revocation still passes). A
document keyed by a hash of a random id gives per-session logout that takes effect at once,
expiry enforced here on every read, and tokens that never leave the server. The collection is
closed to clients by firestore.rules' default deny; in production a Firestore TTL policy on
``expires_at`` removes expired documents (expiry is enforced on read either way).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from imageflow import clients
from imageflow.dashboard.auth import Tokens

COLLECTION = "sessions"
# An absolute lifetime, and an idle one that every use pushes forward (never past the absolute end).
LIFETIME = timedelta(hours=12)
IDLE_LIFETIME = timedelta(hours=2)
# Use is recorded at most this often: a session read on every request, written once in a while.
TOUCH_INTERVAL = timedelta(minutes=5)
TIMEOUT_SECONDS = 10.0
# secrets.token_urlsafe(32): 43 characters of the URL-safe alphabet; anything else is never looked up.
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


class SessionStoreUnavailable(Exception):
    """The session store could not be read or written (the message names the error type only)."""


@dataclass(frozen=True)
class StoredSession:
    """One signed-in session as the server keeps it."""

    uid: str
    email: str
    id_token: str
    refresh_token: str
    token_expires_at: float
    csrf: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime


def document_id(session_id: str) -> str:
    """The document id of a session: a hash, so a read of the collection yields no usable cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def _expiry(created_at: datetime, seen_at: datetime) -> datetime:
    return min(created_at + LIFETIME, seen_at + IDLE_LIFETIME)


def _token_fields(tokens: Tokens) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "uid": tokens.uid,
        "id_token": tokens.id_token,
        "refresh_token": tokens.refresh_token,
        "token_expires_at": tokens.expires_at,
    }
    if tokens.email:
        fields["email"] = tokens.email
    return fields


class SessionStore:
    """Create, read, refresh and delete sessions in the ``sessions`` collection (admin credentials)."""

    def __init__(self, project: str) -> None:
        self.project = project

    def _ref(self, session_id: str) -> firestore.DocumentReference:
        return clients.firestore_client(self.project).collection(COLLECTION).document(document_id(session_id))

    def create(self, tokens: Tokens) -> tuple[str, StoredSession]:
        """A new session for these tokens: a fresh random id and CSRF token."""
        session_id = secrets.token_urlsafe(32)
        at = now()
        stored = StoredSession(
            uid=tokens.uid,
            email=tokens.email,
            id_token=tokens.id_token,
            refresh_token=tokens.refresh_token,
            token_expires_at=tokens.expires_at,
            csrf=secrets.token_urlsafe(32),
            created_at=at,
            last_seen=at,
            expires_at=_expiry(at, at),
        )
        fields = {**stored.__dict__}
        try:
            self._ref(session_id).create(fields, timeout=TIMEOUT_SECONDS)
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"session not created ({type(exc).__name__})") from None
        return session_id, stored

    def get(self, session_id: str) -> StoredSession | None:
        """The live session with this id; None when unknown, malformed or expired (expired is deleted)."""
        if not SESSION_ID.fullmatch(session_id):
            return None
        ref = self._ref(session_id)
        try:
            snapshot = ref.get(timeout=TIMEOUT_SECONDS)
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"session not read ({type(exc).__name__})") from None
        data = snapshot.to_dict() if snapshot.exists else None
        if not data:
            return None
        try:
            stored = StoredSession(
                uid=str(data["uid"]),
                email=str(data.get("email", "")),
                id_token=str(data["id_token"]),
                refresh_token=str(data["refresh_token"]),
                token_expires_at=float(data["token_expires_at"]),
                csrf=str(data["csrf"]),
                created_at=data["created_at"],
                last_seen=data["last_seen"],
                expires_at=data["expires_at"],
            )
        except (KeyError, TypeError, ValueError):
            stored = None  # a document of another shape is no session
        at = now()
        if stored is None or not isinstance(stored.expires_at, datetime) or stored.expires_at <= at:
            self.delete(session_id)
            return None
        if at - stored.last_seen >= TOUCH_INTERVAL:
            stored = self._touch(ref, stored, at)
        return stored

    def _touch(self, ref: firestore.DocumentReference, stored: StoredSession, at: datetime) -> StoredSession:
        expires_at = _expiry(stored.created_at, at)
        try:
            ref.update({"last_seen": at, "expires_at": expires_at}, timeout=TIMEOUT_SECONDS)
        except gexc.NotFound:
            return stored  # logged out in between: the next read finds nothing
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"session not touched ({type(exc).__name__})") from None
        return StoredSession(**{**stored.__dict__, "last_seen": at, "expires_at": expires_at})

    def update_tokens(self, session_id: str, tokens: Tokens) -> None:
        """Keep the refreshed tokens of a live session (a session deleted meanwhile stays deleted)."""
        try:
            self._ref(session_id).update(_token_fields(tokens), timeout=TIMEOUT_SECONDS)
        except gexc.NotFound:
            return
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"session not updated ({type(exc).__name__})") from None

    def delete(self, session_id: str) -> None:
        """End a session; deleting an unknown one is not an error."""
        if not SESSION_ID.fullmatch(session_id):
            return
        try:
            self._ref(session_id).delete(timeout=TIMEOUT_SECONDS)
        except gexc.GoogleAPIError as exc:
            raise SessionStoreUnavailable(f"session not deleted ({type(exc).__name__})") from None
