"""Dashboard security in-process against the emulators: server-side sessions, CSRF on every route, bursts."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from google.cloud import firestore

from fixtures import images, promises
from fixtures.dashboard import DashboardClient, DashboardFactory, FilePart, SignedIn, multipart, text
from fixtures.reporting import labels
from fixtures.users import IdentityToolkit, TestUser, UserFactory, throwaway_password
from imageflow import clients
from imageflow.config import ConfigError
from imageflow.dashboard import session_store
from imageflow.dashboard.ratelimit import Limit, RateLimits, parse_rate_limits
from imageflow.dashboard.session_store import COLLECTION, document_id
from imageflow.dashboard.sessions import EXTENSION_KEY, SESSION_ID_KEY, Security
from stack.state import StackState

pytestmark = pytest.mark.security

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _document(local_stack: StackState, session_id: str) -> firestore.DocumentReference:
    """The session document of a session id, read with the admin client."""
    return (
        clients.firestore_client(local_stack.project).collection(COLLECTION).document(document_id(session_id))
    )


def _cookie(client: DashboardClient) -> dict[str, object]:
    """What the browser's signed session cookie holds."""
    with client.http.session_transaction() as cookie:
        return dict(cookie)


def _raw_cookie(client: DashboardClient, app: Flask) -> str:
    """The session cookie's value as the browser stores it."""
    found = client.http.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert found is not None, "the dashboard set no session cookie"
    return found.value


def _thief(app: Flask, cookie: str) -> DashboardClient:
    """A new client holding only a copy of a cookie value."""
    client = DashboardClient(app.test_client())
    client.http.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    return client


# --- sessions ------------------------------------------------------------------------------------


@labels("dashboard", "sessions")
def test_cookie_holds_only_the_session_id_and_the_document_the_rest(
    signed_in: SignedIn, local_stack: StackState
) -> None:
    cookie = _cookie(signed_in.client)
    assert set(cookie) <= {SESSION_ID_KEY, "_permanent", "_flashes"}, f"the cookie holds {sorted(cookie)}"
    session_id = str(cookie[SESSION_ID_KEY])
    stored = _document(local_stack, session_id).get().to_dict() or {}
    assert stored.get("uid") == signed_in.user.uid
    assert stored.get("id_token"), "the session document keeps no ID token"
    assert stored.get("refresh_token"), "the session document keeps no refresh token"
    assert stored.get("csrf"), "the session document keeps no CSRF token"
    assert stored["created_at"] < stored["expires_at"] <= stored["created_at"] + session_store.LIFETIME
    for value in (stored["id_token"], stored["refresh_token"], stored["csrf"]):
        assert value not in str(cookie), "a token of the session document is in the cookie"
    assert session_id not in document_id(session_id), "the document is named by the raw session id"


@labels("dashboard", "sessions")
def test_copied_cookie_is_refused_after_logout_everywhere(
    signed_in: SignedIn, dashboard_app: Flask, local_stack: StackState
) -> None:
    upload = signed_in.client.upload_api([FilePart("mine.jpg", images.plain_jpeg(), "image/jpeg")])
    workflow_id = upload.get_json()["accepted"][0]["workflow_id"]
    copy = _raw_cookie(signed_in.client, dashboard_app)
    session_id = str(_cookie(signed_in.client)[SESSION_ID_KEY])
    pages = ["/", f"/workflows/{workflow_id}", f"/workflows/{workflow_id}/thumbnail"]
    apis = ["/api/uploads", f"/api/workflows/{workflow_id}", "/api/session"]
    thief = _thief(dashboard_app, copy)
    assert thief.http.get("/").status_code == 200, "the copied cookie did not work before logout"
    assert thief.http.get("/api/uploads").status_code == 200
    assert signed_in.client.logout().status_code == 302
    assert not _document(local_stack, session_id).get().exists, "logout left the session document"
    thief = _thief(dashboard_app, copy)
    for path in pages:
        answer = thief.http.get(path)
        assert answer.status_code == 302, f"{path} answered {answer.status_code} to a logged-out cookie"
        assert answer.headers["Location"].startswith("/login?next="), answer.headers["Location"]
    for path in apis:
        assert thief.http.get(path).status_code == 401, f"{path} accepted a logged-out cookie"


@labels("dashboard", "sessions")
def test_login_renews_the_session_and_ends_the_previous_one(
    dashboard: DashboardClient, dashboard_app: Flask, new_user: TestUser, local_stack: StackState
) -> None:
    dashboard.http.get("/login")
    planted = _raw_cookie(dashboard, dashboard_app)
    assert SESSION_ID_KEY not in _cookie(dashboard), "an anonymous visitor got a session id"
    assert dashboard.login(new_user.email, new_user.password).status_code == 302
    first = str(_cookie(dashboard)[SESSION_ID_KEY])
    assert _raw_cookie(dashboard, dashboard_app) != planted
    assert _thief(dashboard_app, planted).http.get("/").status_code == 302, "the planted cookie was promoted"
    # Logging in again from a signed-in tab (the login page itself redirects a signed-in user).
    form = {"csrf_token": dashboard.csrf("/"), "email": new_user.email, "password": new_user.password}
    assert dashboard.http.post("/login", data=form).status_code == 302
    second = str(_cookie(dashboard)[SESSION_ID_KEY])
    assert second != first, "a second login kept the session id"
    assert not _document(local_stack, first).get().exists, "the earlier session outlived the new login"
    assert dashboard.http.get("/").status_code == 200


@labels("dashboard", "sessions")
def test_expiry_is_enforced_by_the_server(signed_in: SignedIn, local_stack: StackState) -> None:
    session_id, stored = signed_in.client.server_session()
    _document(local_stack, session_id).update({"expires_at": stored.created_at - timedelta(seconds=1)})
    assert signed_in.client.http.get("/api/uploads").status_code == 401, "an expired session was accepted"
    assert not _document(local_stack, session_id).get().exists, "the expired session document was kept"
    assert SESSION_ID_KEY not in _cookie(signed_in.client), "the cookie still names the expired session"


@labels("dashboard", "sessions")
def test_use_extends_the_idle_expiry_but_never_past_the_lifetime(
    signed_in: SignedIn, local_stack: StackState
) -> None:
    session_id, stored = signed_in.client.server_session()
    ref = _document(local_stack, session_id)
    old = stored.created_at - session_store.LIFETIME + timedelta(minutes=30)
    # As if created 11.5 hours ago and last used 10 minutes ago: the idle extension hits the lifetime.
    ref.update({"created_at": old, "last_seen": session_store.now() - timedelta(minutes=10)})
    assert signed_in.client.http.get("/api/uploads").status_code == 200
    after = ref.get().to_dict() or {}
    assert after["last_seen"] > stored.last_seen, "a use after the touch interval was not recorded"
    assert after["expires_at"] == old + session_store.LIFETIME, (
        "the idle extension passed the absolute lifetime"
    )


@labels("dashboard", "sessions")
def test_malformed_session_ids_are_never_looked_up(dashboard_app: Flask) -> None:
    store = dashboard_app.extensions[EXTENSION_KEY].store
    for bad in ("", "x", "../workflows/abc", "a" * 44, "a" * 42 + "/"):
        assert store.get(bad) is None


# --- CSRF on every state-changing route ----------------------------------------------------------


def _upload_count(client: DashboardClient) -> int:
    return len(client.http.get("/api/uploads").get_json())


def _logged_in(client: DashboardClient) -> bool:
    return client.http.get("/api/uploads").status_code == 200


CsrfCase = Callable[[DashboardClient, str | None, TestUser, IdentityToolkit], None]


def _post_upload_form(client: DashboardClient, token: str | None, _: TestUser, __: IdentityToolkit) -> None:
    before = _upload_count(client)
    fields = {"csrf_token": token} if token is not None else {}
    body, content_type = multipart(fields, [FilePart("x.jpg", images.tiny_png(), "image/png")])
    answer = client.http.post("/", data=body, content_type=content_type)
    assert 400 <= answer.status_code < 500, f"POST / answered {answer.status_code}"
    assert _upload_count(client) == before, "an upload without the session's token was stored"


def _post_api_upload(client: DashboardClient, token: str | None, _: TestUser, __: IdentityToolkit) -> None:
    before = _upload_count(client)
    answer = client.upload_api(
        [FilePart("x.png", images.tiny_png(), "image/png")], headers={"X-CSRF-Token": token or ""}
    )
    assert 400 <= answer.status_code < 500, f"POST /api/uploads answered {answer.status_code}"
    assert _upload_count(client) == before, "an API upload without the session's token was stored"


def _post_logout(client: DashboardClient, token: str | None, _: TestUser, __: IdentityToolkit) -> None:
    answer = client.http.post("/logout", data={"csrf_token": token} if token is not None else {})
    assert 400 <= answer.status_code < 500, f"POST /logout answered {answer.status_code}"
    assert _logged_in(client), "a logout without the session's token ended the session"


def _post_login(client: DashboardClient, token: str | None, user: TestUser, _: IdentityToolkit) -> None:
    client.logout()
    form = {"email": user.email, "password": user.password}
    answer = client.http.post("/login", data={**form, "csrf_token": token} if token is not None else form)
    assert 400 <= answer.status_code < 500, f"POST /login answered {answer.status_code}"
    assert not _logged_in(client), "a login without the form's token signed the user in"


def _post_register(client: DashboardClient, token: str | None, _: TestUser, toolkit: IdentityToolkit) -> None:
    client.logout()
    email = f"csrf-{secrets.token_hex(6)}@example.test"
    password = throwaway_password()
    form = {"email": email, "password": password, "confirm_password": password}
    answer = client.http.post("/register", data={**form, "csrf_token": token} if token is not None else form)
    assert 400 <= answer.status_code < 500, f"POST /register answered {answer.status_code}"
    assert toolkit.account_exists(email) is False, (
        "a registration without the form's token created the account"
    )


# Every state-changing route of the dashboard and how to see that nothing changed. A new route
# that is missing here fails test_every_state_changing_route_is_covered.
CSRF_CASES: dict[str, CsrfCase] = {
    "POST /": _post_upload_form,
    "POST /api/uploads": _post_api_upload,
    "POST /logout": _post_logout,
    "POST /login": _post_login,
    "POST /register": _post_register,
}


def state_changing_routes(app: Flask) -> set[str]:
    """ "METHOD /rule" for every route of the app that accepts a method other than GET/HEAD/OPTIONS."""
    return {
        f"{method} {rule.rule}"
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - SAFE_METHODS
    }


@labels("dashboard", "csrf")
def test_every_state_changing_route_is_covered(dashboard_app: Flask) -> None:
    routes = state_changing_routes(dashboard_app)
    assert routes, "the url_map lists no state-changing route: the listing is broken"
    promised = promises.STATE_CHANGING_ROUTES
    assert routes == promised, f"state-changing routes {sorted(routes)}, promised {sorted(promised)}"
    assert set(CSRF_CASES) == routes, f"routes without a CSRF case: {sorted(routes - set(CSRF_CASES))}"


@labels("dashboard", "csrf")
@pytest.mark.parametrize("route", sorted(CSRF_CASES))
@pytest.mark.parametrize("token", ["missing", "foreign"])
def test_state_changing_route_refuses_a_missing_or_foreign_csrf_token(
    signed_in_factory: Callable[..., SignedIn], identity_toolkit: IdentityToolkit, route: str, token: str
) -> None:
    victim, other = signed_in_factory(), signed_in_factory()
    foreign = other.client.server_session()[1].csrf if token == "foreign" else None
    CSRF_CASES[route](victim.client, foreign, victim.user, identity_toolkit)


# --- bursts --------------------------------------------------------------------------------------


@pytest.fixture
def limited_app(make_dashboard: DashboardFactory) -> Flask:
    """A dashboard with tiny limits (its own app: no other test shares them)."""
    app = make_dashboard()
    security: Security = app.extensions[EXTENSION_KEY]
    app.extensions[EXTENSION_KEY] = Security(
        store=security.store,
        limiter=security.limiter,
        limits=RateLimits(login_account=Limit(3, 120), login_ip=Limit(5, 120), register_ip=Limit(2, 120)),
    )
    return app


def _client_from(app: Flask, address: str) -> DashboardClient:
    """A client whose requests come from this address (unique per test: the counters are shared)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return DashboardClient(client)


def _address() -> str:
    return "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))


def _retry_after(answer: object) -> int:
    value = str(getattr(answer, "headers", {}).get("Retry-After", ""))
    assert value.isdigit(), f"429 without Retry-After seconds: {value!r}"
    return int(value)


@labels("dashboard", "bursts")
def test_failed_logins_of_one_account_get_429_and_others_are_not_affected(
    limited_app: Flask, user_factory: UserFactory
) -> None:
    victim, bystander = user_factory(), user_factory()
    attacker = _client_from(limited_app, _address())
    for _ in range(3):
        assert attacker.login(victim.email, throwaway_password()).status_code == 401
    limited = attacker.login(victim.email, victim.password)
    assert limited.status_code == 429, f"the 4th attempt answered {limited.status_code}"
    assert 0 < _retry_after(limited) <= 120
    assert "Too many attempts" in text(limited)
    assert _client_from(limited_app, _address()).login(victim.email, victim.password).status_code == 429
    assert attacker.login(bystander.email, bystander.password).status_code == 302, (
        "another account was locked"
    )


@labels("dashboard", "bursts")
def test_failed_logins_from_one_address_get_429(limited_app: Flask, user_factory: UserFactory) -> None:
    address = _address()
    attacker = _client_from(limited_app, address)
    for _ in range(5):
        assert (
            attacker.login(f"nobody-{secrets.token_hex(4)}@example.test", throwaway_password()).status_code
            == 401
        )
    fresh = user_factory()
    assert attacker.login(fresh.email, fresh.password).status_code == 429
    assert _client_from(limited_app, _address()).login(fresh.email, fresh.password).status_code == 302


@labels("dashboard", "bursts")
def test_registrations_from_one_address_get_429(
    limited_app: Flask, user_factory: UserFactory, identity_toolkit: IdentityToolkit
) -> None:
    client = _client_from(limited_app, _address())
    for _ in range(2):
        user = user_factory(register=False)
        assert client.register(user.email, user.password).status_code == 302
        client.logout()
    refused = user_factory(register=False)
    answer = client.register(refused.email, refused.password)
    assert answer.status_code == 429, f"the 3rd registration answered {answer.status_code}"
    assert _retry_after(answer) > 0
    assert identity_toolkit.account_exists(refused.email) is False, (
        "a refused registration created the account"
    )


def test_rate_limits_parse_and_refuse_nonsense() -> None:
    limits = parse_rate_limits("login_account=2/10, register_ip=7/60")
    assert limits.login_account == Limit(2, 10)
    assert limits.register_ip == Limit(7, 60)
    assert limits.login_ip == RateLimits().login_ip
    for bad in ("login=1/2", "login_account=1", "login_account=0/10", "login_account=a/b"):
        with pytest.raises(ConfigError, match="IMAGEFLOW_RATE_LIMITS"):
            parse_rate_limits(bad)
