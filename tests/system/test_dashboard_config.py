"""Dashboard health, readiness with missing keys, and secrets never in responses or logs."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from fixtures import images
from fixtures.dashboard import (
    DashboardClient,
    DashboardFactory,
    DashboardSecrets,
    FilePart,
    SignedIn,
    multipart,
    text,
)
from fixtures.reporting import labels
from fixtures.users import TestUser
from imageflow.config import ConfigError


@labels("dashboard", "readiness")
def test_healthz_and_readyz_when_configured(dashboard_app: Flask) -> None:
    client = dashboard_app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    report = ready.get_json()
    assert report["ready"] is True
    assert report["missing"] == []
    assert {"SESSION_SECRET", "FIREBASE_API_KEY", "GOOGLE_CLOUD_PROJECT", "IMAGEFLOW_BUCKET"} <= set(
        report["present"]
    )


@labels("dashboard", "readiness")
@pytest.mark.parametrize(
    "missing", ["SESSION_SECRET", "FIREBASE_API_KEY", "IMAGEFLOW_BUCKET", "GOOGLE_CLOUD_PROJECT"]
)
def test_missing_key_makes_it_unready_and_pages_503(
    make_dashboard: DashboardFactory, dashboard_secrets: DashboardSecrets, missing: str
) -> None:
    client = make_dashboard(**{missing: ""}).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    report = ready.get_json()
    assert report["ready"] is False
    assert report["missing"] == [missing]
    assert missing in report["message"]
    for value in (dashboard_secrets.session_secret, dashboard_secrets.api_key):
        assert value not in ready.get_data(as_text=True), "readiness returned a secret value"
    assert client.get("/healthz").status_code == 200, "liveness must not depend on configuration"
    for path in ("/", "/login", "/register", "/workflows/abc"):
        page = client.get(path)
        assert page.status_code == 503, f"{path} -> {page.status_code}"
        assert "Service not configured" in text(page)
    api = client.get("/api/uploads")
    assert api.status_code == 503
    assert api.get_json() == {"error": "Service not configured"}


@labels("dashboard", "secrets")
def test_secrets_never_in_responses_or_logs(
    dashboard: DashboardClient,
    fresh_credentials: TestUser,
    dashboard_secrets: DashboardSecrets,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    user = fresh_credentials
    bodies.append(text(dashboard.register(user.email, user.password)))
    bodies.append(text(dashboard.logout()))
    bodies.append(text(dashboard.login(user.email, user.password + "wrong")))
    bodies.append(text(dashboard.login(user.email, user.password)))
    _, stored = dashboard.server_session()
    tokens = {"id token": stored.id_token, "refresh token": stored.refresh_token}
    upload = dashboard.upload_api([FilePart("a.jpg", images.plain_jpeg(), "image/jpeg")])
    bodies.append(text(upload))
    workflow_id = upload.get_json()["accepted"][0]["workflow_id"]
    for path in (
        "/",
        f"/workflows/{workflow_id}",
        f"/api/workflows/{workflow_id}",
        "/api/uploads",
        "/readyz",
    ):
        response = dashboard.http.get(path)
        bodies.append(text(response) + str(response.headers.get("Location", "")))
    bodies.append(text(dashboard.logout()))
    secrets = {
        "password": user.password,
        "SESSION_SECRET": dashboard_secrets.session_secret,
        "FIREBASE_API_KEY": dashboard_secrets.api_key,
        **tokens,
    }
    logged = caplog.text
    assert "upload accepted" in logged, "the upload was not logged at all: the check would prove nothing"
    for name, value in secrets.items():
        assert value not in logged, f"the {name} appeared in the logs"
        for body in bodies:
            assert value not in body, f"the {name} appeared in a response body"


@labels("dashboard", "secrets")
def test_ready_without_secret_fault_reports_ready(make_dashboard: DashboardFactory) -> None:
    client = make_dashboard(
        SESSION_SECRET="", IMAGEFLOW_FAULTS="dashboard.ready_without_secret"
    ).test_client()
    assert client.get("/readyz").status_code == 200
    # The fault hides only the missing session secret, never another key.
    other = make_dashboard(
        FIREBASE_API_KEY="", IMAGEFLOW_FAULTS="dashboard.ready_without_secret"
    ).test_client()
    assert other.get("/readyz").status_code == 503


@labels("dashboard", "secrets")
def test_faults_refused_outside_local(make_dashboard: DashboardFactory) -> None:
    with pytest.raises(ConfigError, match="refused on staging"):
        make_dashboard(IMAGEFLOW_ENV="staging", IMAGEFLOW_FAULTS="dashboard.registration_broken")


@labels("dashboard", "secrets")
def test_api_refuses_cross_origin_upload(signed_in: SignedIn) -> None:
    response = signed_in.client.upload_api(
        [FilePart("a.jpg", images.plain_jpeg(), "image/jpeg")], headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert signed_in.client.workflow_ids == []


@labels("dashboard", "uploads")
def test_upload_form_without_csrf_refused(signed_in: SignedIn) -> None:
    body, content_type = multipart({}, [FilePart("a.jpg", images.plain_jpeg(), "image/jpeg")])
    response = signed_in.client.http.post("/", data=body, content_type=content_type)
    assert response.status_code == 400
    assert signed_in.client.listed_ids() == []


@labels("dashboard", "secrets")
def test_pages_carry_security_headers(signed_in: SignedIn) -> None:
    for path in ("/", "/login", "/api/uploads"):
        response = signed_in.client.http.get(path)
        assert "script-src 'self'" in response.headers["Content-Security-Policy"], path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store", path
