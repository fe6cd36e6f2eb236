"""The signed-in user: login, logout, token refresh, CSRF and safe redirects, on a server-side session.

The browser's cookie (Flask's signed ``imageflow_session``) holds a random session id and what an
anonymous visitor needs (the login form's CSRF token, one-shot messages): never a token. The
user's ID and refresh tokens and the session's CSRF token live in the session document
(imageflow/dashboard/session_store.py, which says why a document rather than a Firebase session
cookie); logout deletes it, so a copy of the cookie is worthless afterwards, and a login always
starts a new id, so a cookie planted before login is never promoted.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, jsonify, make_response, redirect, request, session, url_for
from werkzeug.wrappers import Response

from imageflow.dashboard.auth import EXPIRY_MARGIN_SECONDS, AuthError, Tokens
from imageflow.dashboard.ratelimit import RateLimiter, RateLimits
from imageflow.dashboard.services import services
from imageflow.dashboard.session_store import SessionStore, StoredSession

CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_ID_KEY = "sid"
EXTENSION_KEY = "imageflow.sessions"
_ACTIVE = "imageflow_active_session"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Security:
    """The app's session store, rate limiter and limits."""

    store: SessionStore
    limiter: RateLimiter
    limits: RateLimits


def install(app: Flask, security: Security) -> None:
    """Attach the session store and rate limits to the app."""
    app.extensions[EXTENSION_KEY] = security


def security() -> Security:
    """The session store and rate limits of the current app."""
    found: Security = current_app.extensions[EXTENSION_KEY]
    return found


@dataclass(frozen=True)
class User:
    """The signed-in user of this request."""

    uid: str
    email: str
    id_token: str


def log_in(tokens: Tokens) -> None:
    """Start a new server-side session for these tokens; any earlier one of this browser ends."""
    store = security().store
    previous = session.get(SESSION_ID_KEY)
    if previous:
        store.delete(str(previous))
    session.clear()
    session_id, stored = store.create(tokens)
    session[SESSION_ID_KEY] = session_id
    session.permanent = True
    setattr(g, _ACTIVE, (session_id, stored))


def log_out() -> None:
    """End the session server-side and forget it in the cookie."""
    session_id = session.get(SESSION_ID_KEY)
    if session_id:
        security().store.delete(str(session_id))
    session.clear()
    setattr(g, _ACTIVE, None)


def _active() -> tuple[str, StoredSession] | None:
    """The live server-side session of this request (read once per request)."""
    if hasattr(g, _ACTIVE):
        found: tuple[str, StoredSession] | None = getattr(g, _ACTIVE)
        return found
    session_id = session.get(SESSION_ID_KEY)
    stored = security().store.get(str(session_id)) if session_id else None
    if session_id and stored is None:
        session.pop(SESSION_ID_KEY, None)  # ended or expired: stop asking for it
    active = (str(session_id), stored) if stored is not None else None
    setattr(g, _ACTIVE, active)
    return active


def current_user() -> User | None:
    """The signed-in user, refreshing the ID token first when it is about to expire."""
    active = _active()
    if active is None:
        return None
    session_id, stored = active
    if stored.token_expires_at - EXPIRY_MARGIN_SECONDS < time.time():
        try:
            tokens = services().auth.refresh(stored.refresh_token, stored.email)
        except AuthError:
            log_out()
            return None
        security().store.update_tokens(session_id, tokens)
        stored = StoredSession(
            **{
                **stored.__dict__,
                "id_token": tokens.id_token,
                "refresh_token": tokens.refresh_token,
                "token_expires_at": tokens.expires_at,
            }
        )
        setattr(g, _ACTIVE, (session_id, stored))
    return User(uid=stored.uid, email=stored.email, id_token=stored.id_token)


def csrf_token() -> str:
    """The CSRF token of the signed-in session, or of an anonymous visitor (created on first use)."""
    active = _active()
    if active is not None:
        return active[1].csrf
    token = session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return str(token)


def csrf_valid() -> bool:
    """True when the request carries this session's CSRF token (form field or header)."""
    active = _active()
    expected = active[1].csrf if active is not None else session.get(CSRF_KEY)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return bool(expected) and hmac.compare_digest(str(expected), sent)


def same_origin() -> bool:
    """True unless the browser says the request comes from another origin."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything that could leave the site becomes "/"."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 32 or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def login_required(view: F) -> F:
    """Pages: redirect to /login?next=...; API: 401 JSON."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - passes through any view
        if current_user() is None:
            if request.path.startswith("/api/"):
                return jsonify(error="not logged in"), 401
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("pages.login", next=target))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def require_csrf() -> None:
    """Abort with 400 when a state-changing request lacks this session's token."""
    if not csrf_valid():
        if request.path.startswith("/api/"):
            abort(make_response(jsonify(error="missing or wrong CSRF token"), 400))
        abort(Response("The form has expired. Please reload the page and try again.", status=400))


def user() -> User:
    """The signed-in user (call only behind login_required)."""
    found = current_user()
    if found is None:
        abort(401)
    return found


def client_address() -> str:
    """The caller's address: the last hop the front proxy recorded (the router locally), else the peer."""
    # The last hop is the one the proxy in front added; earlier ones are whatever the client sent.
    forwarded = ",".join(request.headers.getlist("X-Forwarded-For"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-1] if hops else str(request.remote_addr or "")
