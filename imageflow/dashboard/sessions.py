"""The signed-in user in the session cookie: login, logout, token refresh, CSRF and safe redirects."""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, jsonify, redirect, request, session, url_for
from werkzeug.wrappers import Response

from imageflow.dashboard.auth import EXPIRY_MARGIN_SECONDS, AuthError, Tokens
from imageflow.dashboard.services import services

CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
USER_KEYS = ("uid", "email", "id_token", "refresh_token", "expires_at")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class User:
    """The signed-in user of this request."""

    uid: str
    email: str
    id_token: str


def log_in(tokens: Tokens) -> None:
    """Start a fresh session for these tokens (a new CSRF token too: no session fixation)."""
    session.clear()
    session.update(tokens.as_session())
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    session.permanent = True


def log_out() -> None:
    """Forget the user and their tokens."""
    session.clear()


def current_user() -> User | None:
    """The signed-in user, refreshing the ID token first when it is about to expire."""
    if not session.get("uid") or not session.get("id_token"):
        return None
    if float(session.get("expires_at", 0)) - EXPIRY_MARGIN_SECONDS < time.time():
        try:
            tokens = services().auth.refresh(
                str(session.get("refresh_token", "")), str(session.get("email", ""))
            )
        except AuthError:
            log_out()
            return None
        for key, value in tokens.as_session().items():
            if key != "email" or value:
                session[key] = value
    return User(
        uid=str(session["uid"]), email=str(session.get("email", "")), id_token=str(session["id_token"])
    )


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return str(token)


def csrf_valid() -> bool:
    """True when the request carries this session's CSRF token (form field or header)."""
    expected = session.get(CSRF_KEY)
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
    """Abort with 400 when a state-changing form post lacks this session's token."""
    if not csrf_valid():
        abort(Response("The form has expired. Please reload the page and try again.", status=400))


def user() -> User:
    """The signed-in user (call only behind login_required)."""
    found = current_user()
    if found is None:
        abort(401)
    return found
