"""The server-rendered pages: register, log in, log out, the upload list and the workflow page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from google.api_core import exceptions as gexc

from imageflow import clients
from imageflow.config import lane_or_empty
from imageflow.dashboard import auth, faults
from imageflow.dashboard.documents import filename, is_terminal, step_rows, thumbnail_candidates
from imageflow.dashboard.firestore_rest import NotFound, sort_newest_first
from imageflow.dashboard.ratelimit import Limit
from imageflow.dashboard.services import services
from imageflow.dashboard.sessions import (
    User,
    client_address,
    csrf_valid,
    current_user,
    log_in,
    log_out,
    login_required,
    require_csrf,
    safe_next,
    security,
    user,
)
from imageflow.dashboard.uploads import Accepted, IncomingFile, Refused
from imageflow.workflow import COLLECTION

log = logging.getLogger(__name__)
pages = Blueprint("pages", __name__)

EXPIRED_FORM = "The form has expired. Please try again."
LANE_HEADER = "X-Imageflow-Lane"
FLASH_STATUS = "status"
FLASH_UPLOAD_ERROR = "upload-error"
TOO_MANY = "Too many attempts. Please wait {seconds} seconds and try again."
# Counter kinds of the rate limiter: an email address, a client address.
ACCOUNT = "account"
LOGIN_CLIENT = "login-ip"
REGISTER_CLIENT = "register-ip"


def _form_page(template: str, errors: dict[str, str], status: int, **context: object) -> tuple[str, int]:
    """Re-render a form with its errors: per field and all of them in the form-level summary."""
    return render_template(template, errors=errors, **context), status


def _blocked(checks: list[tuple[str, str, Limit]]) -> int | None:
    """The longest wait any of these (kind, key, limit) counters imposes, or None when none is full."""
    limiter = security().limiter
    waits = [w for kind, key, limit in checks if (w := limiter.retry_after(kind, key, limit)) is not None]
    return max(waits) if waits else None


def _count(checks: list[tuple[str, str, Limit]]) -> None:
    """Count one event on each of these counters."""
    limiter = security().limiter
    for kind, key, limit in checks:
        limiter.hit(kind, key, limit)


def _too_many(template: str, seconds: int, **context: object) -> ResponseReturnValue:
    """429 with Retry-After, as the form page with its message."""
    body, _ = _form_page(template, {"form": TOO_MANY.format(seconds=seconds)}, 429, **context)
    return body, 429, {"Retry-After": str(seconds)}


@pages.get("/register")
def register() -> ResponseReturnValue:
    """The registration form."""
    if current_user() is not None:
        return redirect(url_for("pages.index"))
    return render_template("register.html", errors={}, email="")


@pages.post("/register")
def register_submit() -> ResponseReturnValue:
    """Create the account through Auth and sign the user in."""
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    confirm = request.form.get("confirm_password", "")
    if not csrf_valid():
        return _form_page("register.html", {"form": EXPIRED_FORM}, 400, email=email)
    errors: dict[str, str] = {}
    if not auth.valid_email(email):
        errors["email"] = auth.INVALID_EMAIL
    if not auth.strong_password(password):
        errors["password"] = auth.WEAK_PASSWORD
    if password != confirm:
        errors["confirm"] = auth.PASSWORDS_DIFFER
    if errors:
        return _form_page("register.html", errors, 400, email=email)
    limits = security().limits
    per_client = [(REGISTER_CLIENT, client_address(), limits.register_ip)]
    per_account = [(ACCOUNT, email.lower(), limits.login_account)]
    wait = _blocked(per_client + per_account)
    if wait is not None:
        log.info("registration refused: rate limited")
        return _too_many("register.html", wait, email=email)
    _count(per_client)
    svc = services()
    if svc.settings.fault(faults.REGISTRATION_BROKEN):
        # As an unreachable Auth would look: a form error with a gateway status, never a crash.
        return _form_page("register.html", {"form": auth.GENERIC_ERROR}, 502, email=email)
    try:
        tokens = svc.auth.sign_up(email, password)
    except auth.AuthError as exc:
        log.info("registration refused: %s", exc.code)
        if exc.code == "EMAIL_EXISTS":
            _count(per_account)  # probing for accounts counts like a wrong password
        status = 409 if exc.code == "EMAIL_EXISTS" else 400 if exc.field != "form" else 502
        return _form_page("register.html", {exc.field: exc.message}, status, email=email)
    log_in(tokens)
    log.info("registered uid=%s", tokens.uid)
    return redirect(url_for("pages.index"))


@pages.get("/login")
def login() -> ResponseReturnValue:
    """The login form."""
    if current_user() is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", errors={}, email="", next=safe_next(request.args.get("next")))


@pages.post("/login")
def login_submit() -> ResponseReturnValue:
    """Sign in through Auth and go where the user was heading (local paths only)."""
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    target = safe_next(request.form.get("next") or request.args.get("next"))
    if not csrf_valid():
        return _form_page("login.html", {"form": EXPIRED_FORM}, 400, email=email, next=target)
    errors: dict[str, str] = {}
    if not auth.valid_email(email):
        errors["email"] = auth.INVALID_EMAIL
    if not password:
        errors["password"] = "Enter your password."
    if errors:
        return _form_page("login.html", errors, 400, email=email, next=target)
    limits = security().limits
    counters = [
        (ACCOUNT, email.lower(), limits.login_account),
        (LOGIN_CLIENT, client_address(), limits.login_ip),
    ]
    wait = _blocked(counters)
    if wait is not None:
        log.info("login refused: rate limited")
        return _too_many("login.html", wait, email=email, next=target)
    svc = services()
    try:
        tokens = svc.auth.sign_in(email, password)
    except auth.AuthError as exc:
        wrong_password = exc.code in ("INVALID_PASSWORD", "INVALID_LOGIN_CREDENTIALS")
        if not (wrong_password and svc.settings.fault(faults.LOGIN_ACCEPTS_WRONG_PASSWORD)):
            log.info("login refused: %s", exc.code)
            if exc.message == auth.WRONG_CREDENTIALS:
                _count(counters)
            status = 401 if exc.message == auth.WRONG_CREDENTIALS else 502
            return _form_page("login.html", {"form": exc.message}, status, email=email, next=target)
        try:
            tokens = svc.auth.sign_in_without_password(email)
        except auth.AuthError as inner:
            return _form_page("login.html", {"form": inner.message}, 401, email=email, next=target)
    log_in(tokens)
    log.info("logged in uid=%s", tokens.uid)
    return redirect(target)


@pages.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (POST with the CSRF token, so no other site can log the user out)."""
    if current_user() is not None:
        require_csrf()
    log_out()
    flash("You have been logged out.", FLASH_STATUS)
    return redirect(url_for("pages.login"))


def list_uploads(who: User) -> list[dict[str, Any]]:
    """The user's uploads, read under firestore.rules with their ID token."""
    svc = services()
    if svc.settings.fault(faults.SHOWS_OTHER_USERS_UPLOADS):
        db = clients.firestore_client(svc.settings.project)
        docs = []
        # The owner filter forgotten: the newest uploads of everyone, as the real list orders them.
        newest = db.collection(COLLECTION).order_by("created_at", direction="DESCENDING").limit(100)
        for snapshot in newest.stream():
            doc = snapshot.to_dict() or {}
            doc.setdefault("workflow_id", snapshot.id)
            docs.append(doc)
        return sort_newest_first(docs)
    return svc.reader.list_workflows(who.id_token, who.uid)


def incoming_files() -> list[IncomingFile]:
    """The files of the request's "files" field, without the empty part of a form sent with none."""
    found = []
    for storage in request.files.getlist("files"):
        if not storage.filename:
            continue  # a file input submitted with nothing chosen
        found.append(IncomingFile(storage.filename, storage.content_type or "", storage.stream))
    return found


def handle_upload(who: User) -> tuple[list[Accepted], list[Refused]]:
    """Run the upload flow for the request's files."""
    lane = lane_or_empty(request.headers.get(LANE_HEADER))
    return services().uploader.accept_all(who.uid, incoming_files(), lane)


@pages.get("/")
@login_required
def index() -> ResponseReturnValue:
    """The user's images and the upload form."""
    who = user()
    return render_template("dashboard.html", uploads=list_uploads(who))


@pages.post("/")
@login_required
def upload() -> ResponseReturnValue:
    """The upload form's target: one message per file, then back to the list."""
    require_csrf()
    accepted, refused = handle_upload(user())
    if not accepted and not refused:
        flash("Choose at least one image to upload.", FLASH_UPLOAD_ERROR)
    for item in accepted:
        flash(f"Uploaded {item.filename}", FLASH_STATUS)
    for refusal in refused:
        flash(refusal.reason, FLASH_UPLOAD_ERROR)
    return redirect(url_for("pages.index"))


@pages.get("/workflows/<workflow_id>")
@login_required
def workflow_page(workflow_id: str) -> ResponseReturnValue:
    """One workflow, updated live by the page's script until it ends."""
    who = user()
    try:
        doc = services().reader.get_workflow(who.id_token, workflow_id)
    except NotFound:
        return render_template(
            "error.html", title="Upload not found", message="There is no upload with this id in your account."
        ), 404
    return render_template(
        "workflow.html",
        doc=doc,
        workflow_id=workflow_id,
        filename=filename(doc),
        steps=step_rows(doc),
        terminal=is_terminal(doc),
    )


@pages.get("/workflows/<workflow_id>/thumbnail")
@login_required
def thumbnail(workflow_id: str) -> ResponseReturnValue:
    """The thumbnail's bytes, for the owner only (checked by a rules-enforced read first)."""
    who = user()
    svc = services()
    try:
        doc = svc.reader.get_workflow(who.id_token, workflow_id)
    except NotFound:
        return render_template(
            "error.html", title="Upload not found", message="There is no upload with this id in your account."
        ), 404
    bucket = clients.storage_client(svc.settings.project).bucket(svc.settings.bucket)
    for name in thumbnail_candidates(doc):
        try:
            data = bucket.blob(name).download_as_bytes(timeout=30)
        except gexc.NotFound:
            continue
        except gexc.GoogleAPIError as exc:
            log.error("thumbnail of %s unreadable: %s", workflow_id, type(exc).__name__)
            return render_template(
                "error.html",
                title="Temporarily unavailable",
                message="The thumbnail cannot be read right now.",
            ), 503
        mimetype = "image/png" if name.endswith(".png") else "image/jpeg"
        return Response(data, mimetype=mimetype, headers={"Cache-Control": "private, max-age=60"})
    return render_template(
        "error.html", title="Thumbnail not found", message="This upload has no thumbnail yet."
    ), 404
