"""Server-side client of the Identity Toolkit REST API (Firebase Auth or its emulator)."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

# Sent as the form-level message when Auth answers with something we do not map.
GENERIC_ERROR = "Something went wrong. Please try again."
WRONG_CREDENTIALS = "Wrong email or password."
EMAIL_EXISTS = "An account with this email already exists."
INVALID_EMAIL = "Enter a valid email address."
WEAK_PASSWORD = "Password must be at least 8 characters and contain a letter and a digit."
PASSWORDS_DIFFER = "Passwords do not match."

# Deliberately simple: one @, no spaces, a dot in the domain. Auth has the final word.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TIMEOUT_SECONDS = 10.0
# Refresh a little before the real expiry so a request in flight never carries a dead token.
EXPIRY_MARGIN_SECONDS = 60


class AuthError(Exception):
    """Auth refused the request; field says which form field the message belongs to (or "form")."""

    def __init__(self, message: str, field: str = "form", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Tokens:
    """What a successful sign-up, sign-in or refresh returns."""

    uid: str
    email: str
    id_token: str
    refresh_token: str
    expires_at: float


def valid_email(email: str) -> bool:
    """True when email looks like an address worth sending to Auth."""
    return bool(EMAIL_PATTERN.match(email)) and len(email) <= 254


def strong_password(password: str) -> bool:
    """The password rule: at least 8 characters with a letter and a digit."""
    return len(password) >= 8 and any(c.isalpha() for c in password) and any(c.isdigit() for c in password)


def _map_error(code: str) -> AuthError:
    """Identity Toolkit error codes as the messages of the UI contract."""
    key = code.split(" ", 1)[0].split(":", 1)[0].strip()
    if key == "EMAIL_EXISTS":
        return AuthError(EMAIL_EXISTS, "email", key)
    if key in ("INVALID_EMAIL", "MISSING_EMAIL"):
        return AuthError(INVALID_EMAIL, "email", key)
    if key in ("WEAK_PASSWORD", "MISSING_PASSWORD"):
        return AuthError(WEAK_PASSWORD, "password", key)
    if key in ("INVALID_LOGIN_CREDENTIALS", "EMAIL_NOT_FOUND", "INVALID_PASSWORD", "USER_DISABLED"):
        return AuthError(WRONG_CREDENTIALS, "form", key)
    return AuthError(GENERIC_ERROR, "form", key or "UNKNOWN")


class AuthClient:
    """Sign-up, sign-in and token refresh against Identity Toolkit, using the web API key."""

    def __init__(self, api_key: str, project: str, emulator_host: str | None = None) -> None:
        self._api_key = api_key
        self._project = project
        self._emulator_host = (
            emulator_host if emulator_host is not None else os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")
        )
        self._http = requests.Session()

    @property
    def _key_header(self) -> dict[str, str]:
        # In a header, not ?key=: URLs end up in HTTP library debug logs and error messages.
        return {"X-Goog-Api-Key": self._api_key}

    @property
    def identity_base(self) -> str:
        """The Identity Toolkit v1 base URL."""
        if self._emulator_host:
            return f"http://{self._emulator_host}/identitytoolkit.googleapis.com/v1"
        return "https://identitytoolkit.googleapis.com/v1"

    @property
    def token_url(self) -> str:
        """The Secure Token endpoint that exchanges a refresh token."""
        if self._emulator_host:
            return f"http://{self._emulator_host}/securetoken.googleapis.com/v1/token"
        return "https://securetoken.googleapis.com/v1/token"

    def _post(
        self,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        try:
            response = self._send(url, body, {**(headers or {}), **self._key_header}, idempotent)
        except requests.RequestException as exc:
            # The exception text holds the URL with the key: keep only the class name.
            raise AuthError(GENERIC_ERROR, "form", f"UNREACHABLE:{type(exc).__name__}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code >= 400 or not isinstance(payload, dict):
            code = ""
            if isinstance(payload, dict):
                code = str((payload.get("error") or {}).get("message", ""))
            raise _map_error(code or f"HTTP_{response.status_code}")
        return payload

    def _send(
        self, url: str, body: dict[str, Any], headers: dict[str, str], idempotent: bool
    ) -> requests.Response:
        """POST once; an idempotent call is sent once more when the connection broke before an answer.

        A pooled keep-alive connection that the server closes as it is reused answers nothing: a new
        connection answers at once. A timeout is not retried (the server may be working on it), nor is
        a call that creates something (sign-up would then find its own account).
        """
        try:
            return self._http.post(url, headers=headers, json=body, timeout=TIMEOUT_SECONDS)
        except requests.ConnectionError as exc:
            if not idempotent or isinstance(exc, requests.Timeout):
                raise
            log.warning("identity toolkit connection broke (%s): sending once more", type(exc).__name__)
            return self._http.post(url, headers=headers, json=body, timeout=TIMEOUT_SECONDS)

    def _tokens(self, payload: dict[str, Any], email: str) -> Tokens:
        return Tokens(
            uid=str(payload.get("localId") or payload.get("user_id") or ""),
            email=str(payload.get("email") or email),
            id_token=str(payload.get("idToken") or payload.get("id_token") or ""),
            refresh_token=str(payload.get("refreshToken") or payload.get("refresh_token") or ""),
            expires_at=time.time() + int(payload.get("expiresIn") or payload.get("expires_in") or 3600),
        )

    def sign_up(self, email: str, password: str) -> Tokens:
        """Create an account; raises AuthError with the contract's message."""
        payload = self._post(
            f"{self.identity_base}/accounts:signUp",
            {"email": email, "password": password, "returnSecureToken": True},
        )
        return self._tokens(payload, email)

    def sign_in(self, email: str, password: str) -> Tokens:
        """Sign in with email and password; raises AuthError("Wrong email or password.")."""
        payload = self._post(
            f"{self.identity_base}/accounts:signInWithPassword",
            {"email": email, "password": password, "returnSecureToken": True},
            idempotent=True,
        )
        return self._tokens(payload, email)

    def refresh(self, refresh_token: str, email: str) -> Tokens:
        """Exchange a refresh token for a fresh ID token."""
        try:
            response = self._http.post(
                self.token_url,
                headers=self._key_header,
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                timeout=TIMEOUT_SECONDS,
            )
        except requests.RequestException:
            raise AuthError(GENERIC_ERROR, "form", "UNREACHABLE") from None
        if response.status_code >= 400:
            raise AuthError("Your session has expired. Please log in again.", "form", "REFRESH_FAILED")
        return self._tokens(response.json(), email)

    def sign_in_without_password(self, email: str) -> Tokens:
        """Emulator only, for the login fault drill: sign in as an existing account by email."""
        if not self._emulator_host:
            raise AuthError(WRONG_CREDENTIALS, "form", "NOT_ON_EMULATOR")
        lookup = self._http.post(
            f"{self.identity_base}/projects/{self._project}/accounts:lookup",
            json={"email": [email]},
            headers={"Authorization": "Bearer owner"},
            timeout=TIMEOUT_SECONDS,
        )
        users = lookup.json().get("users") if lookup.ok else None
        if not users:
            raise AuthError(WRONG_CREDENTIALS, "form", "EMAIL_NOT_FOUND")
        # The emulator accepts unsigned custom tokens, as it accepts unsigned ID tokens.
        custom = _unsigned_jwt(
            {
                "uid": users[0]["localId"],
                "aud": "https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit",
                "iat": int(time.time()),
                "exp": int(time.time()) + 3600,
            }
        )
        payload = self._post(
            f"{self.identity_base}/accounts:signInWithCustomToken",
            {"token": custom, "returnSecureToken": True},
        )
        return self._tokens({**payload, "localId": users[0]["localId"]}, email)


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
