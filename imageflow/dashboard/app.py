"""The dashboard's Flask app factory: settings, session cookie, readiness, error pages, routes."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from imageflow import config, logs, manifest
from imageflow.dashboard import faults, multipart
from imageflow.dashboard.api import api
from imageflow.dashboard.auth import AuthClient
from imageflow.dashboard.firestore_rest import FirestoreReader, FirestoreUnavailable
from imageflow.dashboard.ratelimit import RateLimiter, limits_from_environment
from imageflow.dashboard.services import Services, install
from imageflow.dashboard.session_store import LIFETIME, SessionStore, SessionStoreUnavailable
from imageflow.dashboard.sessions import Security, csrf_token, current_user
from imageflow.dashboard.sessions import install as install_security
from imageflow.dashboard.uploads import Uploader, human_size
from imageflow.dashboard.views import pages

log = logging.getLogger(__name__)

# Routes that answer even when the service is not configured: probes and static files.
ALWAYS_OPEN = ("/healthz", "/readyz", "/static/")
# Everything the pages use is served from here: no inline script, no third-party origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def effective_readiness(settings: config.Settings) -> dict[str, Any]:
    """settings.readiness(), unless a fault drill makes a missing SESSION_SECRET look fine."""
    report = settings.readiness()
    if settings.fault(faults.READY_WITHOUT_SECRET) and set(settings.missing) <= {"SESSION_SECRET"}:
        report = {**report, "ready": True, "missing": []}
        report.pop("message", None)
    return report


def _log_to_stderr(settings: config.Settings, spec: manifest.ServiceSpec) -> None:
    """Make the dashboard's logs visible, as JSON, in a service process that configured no logging."""
    secrets = [settings.values.get(key, "") for key in spec.required_secrets]
    logs.configure({"service": spec.name, "revision": settings.revision}, secrets)


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def create_app(settings: config.Settings | None = None) -> Flask:
    """Build the dashboard app; without its required settings it starts but answers 503."""
    spec = manifest.default()
    settings = settings or config.load(spec.dashboard)
    multipart.install()
    _log_to_stderr(settings, spec.dashboard)
    app = Flask(__name__)
    # First of the request hooks, so the lines of every later hook carry the request's fields.
    logs.install(app, settings.project, service=spec.dashboard.name, revision=settings.revision)
    secret = settings.values.get("SESSION_SECRET", "")
    uploader = Uploader(settings, spec)
    app.config.update(
        # Without a secret the app still starts (to report itself unready); a throwaway key keeps
        # Flask's signing working without ever inventing a value anyone could rely on.
        SECRET_KEY=secret or secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.environment != "local",
        SESSION_COOKIE_NAME="imageflow_session",
        # The cookie outlives no session: the server ends it earlier on logout, idleness or expiry.
        PERMANENT_SESSION_LIFETIME=LIFETIME,
        # Werkzeug refuses a body that reaches MAX_CONTENT_LENGTH when the server terminates the input
        # (waitress), so a request of exactly the limit was refused: one byte of room keeps it readable,
        # and refuse_oversized_body holds the declared length to the limit itself.
        MAX_CONTENT_LENGTH=uploader.request_limit + 1,
    )
    install(
        app,
        Services(
            settings=settings,
            manifest=spec,
            auth=AuthClient(settings.values.get("FIREBASE_API_KEY", ""), settings.project),
            reader=FirestoreReader(settings.project),
            uploader=uploader,
        ),
    )
    install_security(
        app,
        Security(
            store=SessionStore(settings.project),
            limiter=RateLimiter(settings.project),
            limits=limits_from_environment(),
        ),
    )
    app.register_blueprint(pages)
    app.register_blueprint(api)

    @app.context_processor
    def inject() -> dict[str, Any]:
        found = None
        if request.endpoint not in (None, "static"):
            # The page that says the session store is down must not need it.
            with contextlib.suppress(SessionStoreUnavailable):
                found = current_user()
        return {"current_user": found, "csrf_token": csrf_token, "max_file_size": human_size(uploader.limit)}

    @app.after_request
    def secure_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype in ("text/html", "application/json"):
            # Pages and API answers hold one user's data: never kept by shared caches or the back button.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(ok=True)

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        report = effective_readiness(settings)
        return jsonify(report), 200 if report["ready"] else 503

    @app.before_request
    def refuse_oversized_body() -> None:
        if (request.content_length or 0) > uploader.request_limit:
            raise RequestEntityTooLarge()

    @app.before_request
    def refuse_when_unconfigured() -> ResponseReturnValue | None:
        if request.path.startswith(ALWAYS_OPEN) or effective_readiness(settings)["ready"]:
            return None
        if _wants_json():
            return jsonify(error="Service not configured"), 503
        return render_template(
            "error.html", title="Service not configured", message="This service is missing required settings."
        ), 503

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> ResponseReturnValue:
        message = (
            f"The upload is too large: at most {human_size(uploader.limit)} per file "
            f"and {human_size(uploader.request_limit)} per request."
        )
        if _wants_json():
            return jsonify(error=message, accepted=[], rejected=[]), 413
        return render_template("error.html", title="Upload too large", message=message), 413

    @app.errorhandler(FirestoreUnavailable)
    def firestore_down(exc: FirestoreUnavailable) -> ResponseReturnValue:
        log.error("firestore unavailable: %s", exc)
        message = "Your images cannot be read right now. Please try again shortly."
        if _wants_json():
            return jsonify(error=message), 503
        return render_template("error.html", title="Temporarily unavailable", message=message), 503

    @app.errorhandler(SessionStoreUnavailable)
    def sessions_down(exc: SessionStoreUnavailable) -> ResponseReturnValue:
        log.error("session store unavailable: %s", exc)
        message = "Sign-in is unavailable right now. Please try again shortly."
        if _wants_json():
            return jsonify(error=message), 503
        return render_template("error.html", title="Temporarily unavailable", message=message), 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if exc.response is not None:
            return exc.response
        code = exc.code or 500
        if _wants_json():
            return jsonify(error=exc.description), code
        return render_template("error.html", title=exc.name, message=exc.description), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> ResponseReturnValue:
        # One line naming the exception type; the details could carry user data or tokens.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path)
        message = "Something went wrong. Please try again."
        if _wants_json():
            return jsonify(error=message), 500
        return render_template("error.html", title="Something went wrong", message=message), 500

    if not settings.ready:
        log.warning("dashboard not ready: %s", effective_readiness(settings).get("message", "fault drill"))
    log.info("dashboard %s started (env=%s, pid=%d)", settings.revision, settings.environment, os.getpid())
    return app
