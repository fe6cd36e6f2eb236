"""The JSON API (session cookie auth): uploads and workflow documents."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from imageflow.dashboard.documents import jsonable, summary
from imageflow.dashboard.firestore_rest import NotFound
from imageflow.dashboard.services import services
from imageflow.dashboard.sessions import csrf_token, login_required, require_csrf, same_origin, user
from imageflow.dashboard.views import handle_upload, list_uploads

api = Blueprint("api", __name__, url_prefix="/api")
NO_FILES = "no files: send one or more files in the multipart field 'files'"


@api.post("/uploads")
@login_required
def create_uploads() -> ResponseReturnValue:
    """Upload one or many files (multipart field "files"): 201 with what was accepted and refused.

    Nothing accepted: 400 (every file refused for what it is), or 503 when the service failed one.
    """
    # The session cookie is SameSite=Lax and foreign origins are refused; the session's CSRF token
    # (X-CSRF-Token, from GET /api/session) covers what neither sees, e.g. a same-site page sending no Origin.
    if not same_origin():
        return jsonify(error="cross-origin request refused"), 403
    require_csrf()
    accepted, refused = handle_upload(user())
    body: dict[str, Any] = {
        "accepted": [{"filename": a.filename, "workflow_id": a.workflow_id} for a in accepted],
        "rejected": [{"filename": r.filename, "reason": r.reason} for r in refused],
    }
    if not accepted:
        if not refused:
            body["error"] = NO_FILES
        # A file the service failed to store or queue may succeed later: that is a 503, not a 400.
        return jsonify(body), 503 if any(r.retry for r in refused) else 400
    return jsonify(body), 201


@api.get("/uploads")
@login_required
def get_uploads() -> ResponseReturnValue:
    """The user's uploads, newest first."""
    return jsonify([summary(doc) for doc in list_uploads(user())])


@api.get("/workflows/<workflow_id>")
@login_required
def get_workflow(workflow_id: str) -> ResponseReturnValue:
    """One workflow document, read under firestore.rules with the user's ID token."""
    who = user()
    try:
        doc = services().reader.get_workflow(who.id_token, workflow_id)
    except NotFound:
        return jsonify(error="Upload not found"), 404
    return jsonify(jsonable(doc))


@api.get("/session")
@login_required
def get_session() -> ResponseReturnValue:
    """Who is signed in, and the session's CSRF token for the API's state-changing calls."""
    return jsonify(email=user().email, csrf_token=csrf_token())
