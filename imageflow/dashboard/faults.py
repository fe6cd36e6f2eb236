"""The dashboard's fault switches (IMAGEFLOW_FAULTS), each breaking one promise on purpose for drills."""

from __future__ import annotations

REGISTRATION_BROKEN = "dashboard.registration_broken"
LOGIN_ACCEPTS_WRONG_PASSWORD = "dashboard.login_accepts_wrong_password"
UPLOAD_NOT_STORED = "dashboard.upload_not_stored"
UPLOAD_NOT_PUBLISHED = "dashboard.upload_not_published"
SHOWS_OTHER_USERS_UPLOADS = "dashboard.shows_other_users_uploads"
READY_WITHOUT_SECRET = "dashboard.ready_without_secret"

FAULTS: dict[str, str] = {
    REGISTRATION_BROKEN: "registration always fails with a form error",
    LOGIN_ACCEPTS_WRONG_PASSWORD: "a wrong password for an existing email logs the user in",
    UPLOAD_NOT_STORED: "an upload is reported accepted and published but the original is never stored",
    UPLOAD_NOT_PUBLISHED: "an upload is stored but never published to the pipeline",
    SHOWS_OTHER_USERS_UPLOADS: "the upload list is read as admin without the owner filter",
    READY_WITHOUT_SECRET: "readiness reports ready even when SESSION_SECRET is missing",
}
