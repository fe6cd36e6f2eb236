"""Dashboard registration, login, logout and redirects, in-process against the real Auth emulator."""

from __future__ import annotations

import time

import pytest
from google.cloud import firestore

from fixtures.dashboard import DashboardClient, SignedIn, element_text, text
from fixtures.reporting import labels
from fixtures.users import IdentityToolkit, TestUser
from imageflow import clients
from imageflow.dashboard import auth
from imageflow.dashboard.session_store import COLLECTION, document_id
from stack.state import StackState


@labels("dashboard", "registration")
def test_register_logs_in_and_redirects_home(dashboard: DashboardClient, fresh_credentials: TestUser) -> None:
    response = dashboard.register(fresh_credentials.email, fresh_credentials.password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = dashboard.http.get("/")
    assert home.status_code == 200
    assert element_text(text(home), "nav-user") == fresh_credentials.email
    assert "<h1>Your images</h1>" in text(home)
    assert 'data-testid="no-uploads">No images yet.' in text(home)


@labels("dashboard", "registration")
def test_session_cookie_is_httponly_and_samesite_lax(dashboard: DashboardClient, new_user: TestUser) -> None:
    response = dashboard.login(new_user.email, new_user.password)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


@labels("dashboard", "registration")
def test_register_duplicate_email_refused(
    dashboard: DashboardClient, new_user: TestUser, identity_toolkit: IdentityToolkit
) -> None:
    response = dashboard.register(new_user.email, "another1pass")
    assert response.status_code == 409
    assert element_text(text(response), "email-error") == auth.EMAIL_EXISTS
    assert auth.EMAIL_EXISTS in element_text(text(response), "form-error") or auth.EMAIL_EXISTS in text(
        response
    )
    assert dashboard.http.get("/").status_code == 302, "a refused registration left the user logged in"


@labels("dashboard", "registration")
@pytest.mark.parametrize("password", ["short1", "lettersonly", "1234567890", ""])
def test_register_weak_password_refused(
    dashboard: DashboardClient, fresh_credentials: TestUser, identity_toolkit: IdentityToolkit, password: str
) -> None:
    response = dashboard.register(fresh_credentials.email, password)
    assert response.status_code == 400
    assert element_text(text(response), "password-error") == auth.WEAK_PASSWORD
    assert identity_toolkit.account_exists(fresh_credentials.email) is False


@labels("dashboard", "registration")
@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.test", "spa ce@example.test", ""])
def test_register_malformed_email_refused(dashboard: DashboardClient, email: str) -> None:
    response = dashboard.register(email, "good1password")
    assert response.status_code == 400
    assert element_text(text(response), "email-error") == auth.INVALID_EMAIL
    assert 'role="alert" data-testid="form-error"' in text(response)


@labels("dashboard", "registration")
def test_register_password_mismatch_refused(
    dashboard: DashboardClient, fresh_credentials: TestUser, identity_toolkit: IdentityToolkit
) -> None:
    response = dashboard.register(fresh_credentials.email, fresh_credentials.password, confirm="different1pw")
    assert response.status_code == 400
    assert element_text(text(response), "confirm-error") == auth.PASSWORDS_DIFFER
    assert identity_toolkit.account_exists(fresh_credentials.email) is False


@labels("dashboard", "registration")
def test_register_without_csrf_token_refused(
    dashboard: DashboardClient, fresh_credentials: TestUser, identity_toolkit: IdentityToolkit
) -> None:
    form = {
        "email": fresh_credentials.email,
        "password": fresh_credentials.password,
        "confirm_password": fresh_credentials.password,
    }
    response = dashboard.http.post("/register", data=form)
    assert response.status_code == 400
    assert identity_toolkit.account_exists(fresh_credentials.email) is False


@labels("dashboard", "registration")
def test_register_page_is_accessible_form(dashboard: DashboardClient) -> None:
    body = text(dashboard.http.get("/register"))
    assert "<h1>Create account</h1>" in body
    for field, label in (
        ("email", "Email"),
        ("password", "Password"),
        ("confirm_password", "Confirm password"),
    ):
        assert f'<label for="{field}">{label}</label>' in body
        assert f'id="{field}"' in body
    assert '<button type="submit">Create account</button>' in body
    assert ">Log in</a>" in body


@labels("dashboard", "login")
def test_login_and_logout(dashboard: DashboardClient, new_user: TestUser) -> None:
    response = dashboard.login(new_user.email, new_user.password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert element_text(text(dashboard.http.get("/")), "nav-user") == new_user.email
    out = dashboard.logout()
    assert out.status_code == 302
    assert out.headers["Location"] == "/login"
    page = dashboard.http.get("/login")
    assert element_text(text(page), "flash") == "You have been logged out."
    assert 'role="status" data-testid="flash"' in text(page)
    assert dashboard.http.get("/").status_code == 302


@labels("dashboard", "login")
def test_logout_needs_post(dashboard: DashboardClient, new_user: TestUser) -> None:
    dashboard.login(new_user.email, new_user.password)
    assert dashboard.http.get("/logout").status_code == 405
    refused = dashboard.http.post("/logout", data={})
    assert refused.status_code == 400, "a logout without the CSRF token was accepted"
    assert dashboard.http.get("/").status_code == 200, "the user was logged out by a forged request"


@labels("dashboard", "login")
def test_login_wrong_password_refused(dashboard: DashboardClient, new_user: TestUser) -> None:
    response = dashboard.login(new_user.email, new_user.password + "x")
    assert response.status_code == 401
    assert element_text(text(response), "form-error") == auth.WRONG_CREDENTIALS
    assert dashboard.http.get("/").status_code == 302


@labels("dashboard", "login")
def test_login_unknown_email_same_message(dashboard: DashboardClient, fresh_credentials: TestUser) -> None:
    response = dashboard.login(fresh_credentials.email, fresh_credentials.password)
    assert response.status_code == 401
    assert element_text(text(response), "form-error") == auth.WRONG_CREDENTIALS


@labels("dashboard", "login")
def test_login_page_is_accessible_form(dashboard: DashboardClient) -> None:
    body = text(dashboard.http.get("/login"))
    assert "<h1>Log in</h1>" in body
    assert '<label for="email">Email</label>' in body
    assert '<label for="password">Password</label>' in body
    assert '<button type="submit">Log in</button>' in body
    assert ">Create an account</a>" in body


@labels("dashboard", "redirects")
def test_protected_pages_redirect_to_login_with_next(dashboard: DashboardClient) -> None:
    response = dashboard.http.get("/workflows/abc123?tab=steps")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/workflows/abc123?tab%3Dsteps"
    assert dashboard.http.get("/").headers["Location"] == "/login?next=/"


@labels("dashboard", "redirects")
def test_api_answers_401_json_when_logged_out(dashboard: DashboardClient) -> None:
    for method, path in (("GET", "/api/uploads"), ("GET", "/api/workflows/abc"), ("POST", "/api/uploads")):
        response = dashboard.http.open(path, method=method)
        assert response.status_code == 401, f"{method} {path} -> {response.status_code}"
        assert response.is_json
        assert response.get_json()["error"]


@labels("dashboard", "redirects")
def test_login_follows_local_next(dashboard: DashboardClient, new_user: TestUser) -> None:
    response = dashboard.login(new_user.email, new_user.password, next_path="/workflows/abc?x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/workflows/abc?x=1"


@labels("dashboard", "redirects")
@pytest.mark.parametrize(
    "unsafe_next",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/\t/evil.example",
        "evil.example",
    ],
)
def test_login_never_redirects_off_site(
    dashboard: DashboardClient, new_user: TestUser, unsafe_next: str
) -> None:
    response = dashboard.login(new_user.email, new_user.password, next_path=unsafe_next)
    assert response.status_code == 302
    assert response.headers["Location"] == "/", (
        f"next={unsafe_next!r} sent the user to {response.headers['Location']}"
    )


def _session_document(local_stack: StackState, session_id: str) -> firestore.DocumentReference:
    """The server-side session document of a session id (admin client)."""
    return (
        clients.firestore_client(local_stack.project).collection(COLLECTION).document(document_id(session_id))
    )


@labels("dashboard", "sessions")
def test_expired_id_token_is_refreshed(signed_in: SignedIn, local_stack: StackState) -> None:
    session_id, before = signed_in.client.server_session()
    # As if the hour of the ID token had passed.
    _session_document(local_stack, session_id).update({"token_expires_at": 0})
    response = signed_in.client.http.get("/api/uploads")
    assert response.status_code == 200
    _, after = signed_in.client.server_session()
    assert after.token_expires_at > time.time() + 600, "the ID token was not refreshed"
    assert after.uid == signed_in.user.uid
    assert after.csrf == before.csrf, "a token refresh replaced the session's CSRF token"


@labels("dashboard", "sessions")
def test_session_that_cannot_refresh_is_logged_out(signed_in: SignedIn, local_stack: StackState) -> None:
    session_id, _ = signed_in.client.server_session()
    _session_document(local_stack, session_id).update(
        {"token_expires_at": 0, "refresh_token": "revoked-or-garbage"}
    )
    response = signed_in.client.http.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"
    assert signed_in.client.http.get("/api/uploads").status_code == 401
    assert not _session_document(local_stack, session_id).get().exists, "the dead session was kept"
