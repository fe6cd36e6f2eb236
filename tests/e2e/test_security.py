"""Security properties of the dashboard as released: session lifetime, cookies, markup, CSRF, bursts.

Sessions are server-side (imageflow/dashboard/session_store.py says why a Firestore document and
not a Firebase session cookie): the cookie carries a random id, logout deletes the session, a login
always starts a new one. These scenarios hold any target to that from the outside: a copy of the
cookie taken before logout is refused after it on every protected URL, no cookie the dashboard
sets carries a token or a password, and the session collection is closed to clients.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import allure
import pytest
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from google.cloud import firestore
from pipeline_checks import completed, refused_to_anonymous
from playwright.sync_api import ConsoleMessage, Dialog, Page, expect

from fixtures import promises
from fixtures.firestore import WorkflowWatcher
from fixtures.forms import CSRF_HEADER
from fixtures.images import ImageFile, MakeImage
from fixtures.reporting import labels
from fixtures.scrubber import register_secret
from fixtures.target import Target
from fixtures.uploads import HTTP_TIMEOUT_SECONDS, ApiSession, form_with_token
from fixtures.users import IdentityToolkit, TestUser, UserFactory, throwaway_password
from imageflow import clients
from imageflow.dashboard.auth import EXPIRY_MARGIN_SECONDS
from pages.dashboard import DashboardPage
from pages.login import LoginPage
from pages.workflow import WorkflowPage

pytestmark = pytest.mark.security
Severity = allure.severity_level

SESSION_COOKIE = "imageflow_session"
# What the signed session cookie may hold: the session id, an anonymous visitor's CSRF token,
# one-shot messages and Flask's permanence flag. Anything else is a finding.
COOKIE_KEYS = frozenset({"sid", "csrf", "_flashes", "_permanent"})
# A header set to None is left out of the request (requests drops it from the session's headers):
# a form probe sends its token in the form field alone.
NO_CSRF_HEADER: dict[str, str | None] = {CSRF_HEADER: None}
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.")
# Markup that would run or inject an element if any page rendered it as HTML.
MARKUP_FILENAME = "<img src=x onerror=alert(1)>.jpg"
MARKUP_EXIF_KIND = "jpeg_with_markup_exif"
# The server notes a token's expiry as its own clock plus expiresIn; the token counts from its issuer's
# whole second: the two agree within the request's time and a small skew between the hosts.
TOKEN_CLOCK_TOLERANCE_SECONDS = 5.0
# Collects CSP violations in the page itself: a console message can be missed, an event is kept.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(event.violatedDirective + ' ' + event.blockedURI);
});
"""
# Beyond this many failed logins of one account the burst must have been refused.
BURST_BOUND = 30


def decode_cookie(value: str) -> dict[str, Any]:
    """The payload of an itsdangerous-signed cookie (Flask's session), {} when it is not one."""
    payload = value.strip('"')
    compressed = payload.startswith(".")
    body = payload.lstrip(".").split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if compressed:
            raw = zlib.decompress(raw)
        decoded = json.loads(raw)
    except (ValueError, zlib.error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def strings_in(value: object) -> Iterator[str]:
    """Every string anywhere in a decoded cookie payload (Flask tags wrap values in dicts and lists)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def cookie_problems(value: str, password: str) -> list[str]:
    """What a dashboard cookie must never carry: unknown keys, a JWT, a password, a refresh token."""
    problems = []
    if password and password in value:
        problems.append("the password in the raw cookie")
    decoded = decode_cookie(value)
    extra = sorted(set(decoded) - COOKIE_KEYS)
    if extra:
        problems.append(f"keys beyond the session id: {extra}")
    # A signed cookie itself looks like a JWT (payload.timestamp.signature): look inside it instead.
    for text in list(strings_in(decoded)) if decoded else [value]:
        if JWT.search(text):
            problems.append("a JWT (an ID token)")
        if password and password in text:
            problems.append("the password")
    return sorted(set(problems))


def session_id_of(http: requests.Session) -> str:
    """The session id in a requests session's dashboard cookie ("" when there is none)."""
    value = http.cookies.get(SESSION_COOKIE) or ""
    return str(decode_cookie(value).get("sid", ""))


def replay(target: Target, cookie: str) -> requests.Session:
    """A new client holding nothing but a copy of one cookie value (what a thief would have)."""
    thief = requests.Session()
    host = urlsplit(target.dashboard_url).hostname or ""
    thief.cookies.set(SESSION_COOKIE, cookie, domain=host, path="/")
    return thief


def get(http: requests.Session, target: Target, path: str) -> requests.Response:
    """GET a dashboard path without following redirects."""
    return http.get(f"{target.dashboard_url}{path}", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)


@pytest.fixture
def owner_with_upload(
    new_user: TestUser,
    api_session: Callable[[TestUser], ApiSession],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
) -> tuple[TestUser, ApiSession, str]:
    """A logged-in HTTP session whose user has one completed upload (so a thumbnail exists)."""
    session = api_session(new_user)
    image = make_image("tiny_png")
    answer = session.upload([image.multipart()])
    assert answer.status_code == 201, f"the upload answered {answer.status_code}: {answer.text[:200]}"
    workflow_id = str(answer.json()["accepted"][0]["workflow_id"])
    completed(workflow_watcher, workflow_id)
    return new_user, session, workflow_id


def protected_paths(workflow_id: str) -> list[str]:
    """Every kind of protected URL: the list page, the API, a workflow page and its thumbnail."""
    return [
        "/",
        "/api/uploads",
        f"/workflows/{workflow_id}",
        f"/api/workflows/{workflow_id}",
        f"/workflows/{workflow_id}/thumbnail",
    ]


@pytest.mark.smoke
@labels("Security", "A cookie captured before logout is refused after it", Severity.BLOCKER)
def test_cookie_captured_before_logout_is_refused_after_it(
    owner_with_upload: tuple[TestUser, ApiSession, str], target: Target
) -> None:
    _, session, workflow_id = owner_with_upload
    captured = session.http.cookies.get(SESSION_COOKIE) or ""
    assert captured, "the login set no session cookie"
    thief = replay(target, captured)
    with allure.step("Before logout, the copied cookie opens every protected URL (the check can fail)"):
        for path in protected_paths(workflow_id):
            answer = get(thief, target, path)
            assert answer.status_code == 200, (
                f"the copied cookie got {answer.status_code} on {path} before logout"
            )
    with allure.step("Log out"):
        out = session.http.post(
            f"{target.dashboard_url}/logout",
            data={"csrf_token": session.csrf_token},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        assert out.status_code in (302, 303), f"logout answered {out.status_code}"
    with allure.step("After logout, the same cookie opens nothing"):
        thief = replay(target, captured)
        for path in protected_paths(workflow_id):
            refused_to_anonymous(get(thief, target, path), path)


@pytest.mark.smoke
@labels("Security", "No cookie carries a token or a password", Severity.BLOCKER)
def test_no_cookie_carries_a_token_or_a_password(page: Page, new_user: TestUser) -> None:
    seen: list[str] = []
    page.on(
        "response",
        lambda response: seen.extend(
            h["value"] for h in response.headers_array() if h["name"].lower() == "set-cookie"
        ),
    )
    dashboard = LoginPage(page).goto().login(new_user.email, new_user.password)
    expect(dashboard.nav.user).to_have_text(new_user.email)
    page.goto("/api/uploads")
    cookies = page.context.cookies()
    session = [c for c in cookies if c["name"] == SESSION_COOKIE]
    assert session, f"no {SESSION_COOKIE} cookie after login; cookies: {[c['name'] for c in cookies]}"
    assert session[0]["httpOnly"], "the session cookie is readable by scripts (no HttpOnly)"
    assert session[0]["sameSite"] in ("Lax", "Strict"), (
        f"the session cookie is SameSite={session[0]['sameSite']}"
    )
    assert decode_cookie(session[0]["value"]).get("sid"), "the session cookie names no server-side session"
    DashboardPage(page).goto().nav.log_out()
    assert seen, "no Set-Cookie was seen: the check would prove nothing"
    values = [c["value"] for c in cookies] + [h.split(";", 1)[0].partition("=")[2] for h in seen]
    problems = {problem for value in values for problem in cookie_problems(value, new_user.password)}
    assert not problems, f"a dashboard cookie carries {sorted(problems)}"


@pytest.mark.smoke
@labels("Security", "The session is renewed at login", Severity.CRITICAL)
def test_session_is_renewed_at_login_and_a_planted_cookie_is_not_promoted(
    new_user: TestUser, target: Target
) -> None:
    victim = requests.Session()
    try:
        _, token = form_with_token(victim, target.dashboard_url, "/login")
        planted = victim.cookies.get(SESSION_COOKIE) or ""
        assert planted, "the login page set no cookie: nothing to plant"
        with allure.step("Log in with the pre-login cookie (as if an attacker had planted it)"):
            answer = victim.post(
                f"{target.dashboard_url}/login",
                data={"email": new_user.email, "password": new_user.password, "csrf_token": token},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT_SECONDS,
            )
            assert answer.status_code in (302, 303), f"login answered {answer.status_code}"
        after = victim.cookies.get(SESSION_COOKIE) or ""
        register_secret(after, f"the session cookie of {new_user.email}")
        assert after, "the login set no session cookie"
        assert after != planted, "the session cookie was not renewed at login"
        assert session_id_of(victim), "the logged-in cookie names no session"
        assert not decode_cookie(planted).get("sid"), "an anonymous visitor was given a session id"
        assert get(victim, target, "/").status_code == 200, "the renewed cookie does not open the dashboard"
        refused_to_anonymous(get(replay(target, planted), target, "/"), "/")
    finally:
        victim.close()


@pytest.mark.smoke
@labels("Security", "Session documents are closed to clients", Severity.CRITICAL)
def test_session_document_is_closed_to_its_own_user(
    api_session: Callable[[TestUser], ApiSession],
    new_user: TestUser,
    id_token_for: Callable[[TestUser], str],
    target: Target,
) -> None:
    session = api_session(new_user)
    session_id = session_id_of(session.http)
    assert session_id, "the login's cookie names no session"
    document = f"{target.firestore_rest_url}/sessions/{hashlib.sha256(session_id.encode()).hexdigest()}"
    token = id_token_for(new_user)
    with allure.step("The session's own user reads its session document through Firestore REST"):
        own = requests.get(
            document, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT_SECONDS
        )
        listed = requests.get(
            f"{target.firestore_rest_url}/sessions",
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    assert own.status_code == 403, f"a client read its session document: {own.status_code}"
    assert listed.status_code == 403, f"a client listed the sessions: {listed.status_code}"
    if target.is_local:
        stored = (
            clients.firestore_client(target.project)
            .collection("sessions")
            .document(document.rsplit("/", 1)[-1])
            .get()
        )
        # Otherwise the 403 would prove nothing: the refusal must be of the real document.
        assert stored.exists, "the session document is not where the refusal was asked for"
        assert (stored.to_dict() or {}).get("uid") == new_user.uid, "the session document is another user's"


def token_claims(id_token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking its signature ({} when it is not one)."""
    parts = id_token.split(".")
    body = parts[1] if len(parts) == 3 else ""
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def account_of(target: Target, id_token: str) -> dict[str, Any]:
    """The account an ID token signs in, as the target's Identity Toolkit reads it ({} when it refuses it)."""
    answer = requests.post(
        f"{target.auth_url}/accounts:lookup",
        json={"idToken": id_token},
        # The key goes in a header, not the URL: URLs end up in error messages and logs.
        headers={"X-Goog-Api-Key": target.api_key},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    users = answer.json().get("users") if answer.status_code == 200 else None
    return users[0] if isinstance(users, list) and users and isinstance(users[0], dict) else {}


@labels(
    "Security",
    "An ID token about to expire is refreshed server-side and the session goes on",
    Severity.CRITICAL,
)
def test_an_expiring_id_token_is_refreshed_and_the_session_keeps_working(
    logged_in_session: ApiSession, new_user: TestUser, firestore_admin: firestore.Client, target: Target
) -> None:
    http = logged_in_session.http
    session_id = session_id_of(http)
    assert session_id, "the login's cookie names no session"
    ref = firestore_admin.collection("sessions").document(hashlib.sha256(session_id.encode()).hexdigest())
    before = ref.get().to_dict() or {}
    assert before.get("uid") == new_user.uid, "the login made no session document of its user"
    old_token = str(before.get("id_token", ""))
    register_secret(old_token, f"the first ID token of {new_user.email}")
    register_secret(str(before.get("refresh_token", "")), f"the refresh token of {new_user.email}")
    issued = float(token_claims(old_token).get("iat", 0))
    # Tokens are issued to the second, so a refresh within the login's second may mint the very same
    # bytes: the session is given a stale token of its own to lose instead of waiting for the clock.
    stale = f"stale-{uuid.uuid4().hex}"
    with allure.step("Make the session's ID token due for refresh: its recorded expiry inside the margin"):
        # Only the server's record moves (an admin write to this test's own session, as failure plans
        # are written): the refresh token stays valid, so a refresh is the only way back to a token.
        ref.update({"id_token": stale, "token_expires_at": time.time() + EXPIRY_MARGIN_SECONDS / 2})
    with allure.step("The session keeps working on the API and the page"):
        for path in ("/api/uploads", "/"):
            answer = get(http, target, path)
            assert answer.status_code == 200, (
                f"{path} answered {answer.status_code} after the refresh was due"
            )
    after = ref.get().to_dict() or {}
    new_token = str(after.get("id_token", ""))
    register_secret(new_token, f"the refreshed ID token of {new_user.email}")
    register_secret(str(after.get("refresh_token", "")), f"the refresh token of {new_user.email}")
    assert float(after.get("token_expires_at", 0)) > time.time() + EXPIRY_MARGIN_SECONDS, (
        "the refreshed token's expiry was not recorded: every request would refresh again"
    )
    assert new_token, "the refresh left the session without an ID token"
    renewed = new_token != stale  # compared apart: an assertion's diff would print the token
    assert renewed, "the session still holds the ID token that was due for refresh"
    claims = token_claims(new_token)
    assert float(claims.get("iat", 0)) >= issued, "the refreshed ID token is older than the login's"
    # Read from the token itself, not from the server's note of it: the two must agree.
    recorded = float(after.get("token_expires_at", 0))
    assert abs(float(claims.get("exp", 0)) - recorded) <= TOKEN_CLOCK_TOLERANCE_SECONDS, (
        f"the recorded expiry is {recorded - float(claims.get('exp', 0)):+.0f} s off the refreshed token's"
    )
    with allure.step("The Identity Toolkit takes the refreshed token as the user's own"):
        account = account_of(target, new_token)
    assert account.get("localId") == new_user.uid, "the refreshed ID token is not a valid token of the user"
    assert get(http, target, "/api/uploads").status_code == 200, "the session broke after its refresh"


@pytest.mark.smoke
@labels("Security", "A strict Content-Security-Policy", Severity.NORMAL)
def test_pages_carry_a_strict_content_security_policy(target: Target) -> None:
    answer = requests.get(f"{target.dashboard_url}/login", timeout=HTTP_TIMEOUT_SECONDS)
    policy = answer.headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], f"default-src is {directives.get('default-src')}"
    script = directives.get("script-src", directives.get("default-src", []))
    assert "'unsafe-inline'" not in script, f"script-src allows {script}"
    assert "'unsafe-eval'" not in script, f"script-src allows {script}"
    assert directives.get("object-src") == ["'none'"], f"object-src is {directives.get('object-src')}"
    assert directives.get("frame-ancestors") == ["'none'"], (
        f"frame-ancestors is {directives.get('frame-ancestors')}"
    )
    assert answer.headers.get("X-Content-Type-Options") == "nosniff"


def cache_directives(answer: requests.Response) -> set[str]:
    """The Cache-Control directives of an answer, lower case, without their values."""
    value = answer.headers.get("Cache-Control", "")
    return {d.split("=")[0].strip().lower() for d in value.split(",") if d.strip()}


@labels("Security", "Answers that hold a user's data are never kept by a shared cache", Severity.CRITICAL)
def test_answers_with_a_users_data_are_never_kept_by_a_shared_cache(
    logged_in_session: ApiSession, make_image: MakeImage, workflow_watcher: WorkflowWatcher
) -> None:
    session = logged_in_session
    workflow_id = session.upload_one(make_image("tiny_png").multipart())
    completed(workflow_watcher, workflow_id)  # the thumbnail exists: every answer has data to hold
    pages = (
        "/",
        f"/workflows/{workflow_id}",
        "/api/uploads",
        f"/api/workflows/{workflow_id}",
        "/api/session",
    )
    for path in pages:
        with allure.step(f"GET {path} as its owner: no-store, nosniff"):
            answer = session.http.get(
                f"{session.base}{path}", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS
            )
            assert answer.status_code == 200, f"GET {path} answered {answer.status_code}"
            directives = cache_directives(answer)
            assert "no-store" in directives, f"{path}: Cache-Control {answer.headers.get('Cache-Control')!r}"
            assert answer.headers.get("X-Content-Type-Options") == "nosniff", f"{path}: no nosniff"
    with allure.step("The thumbnail may be kept by the owner's browser only"):
        path = f"/workflows/{workflow_id}/thumbnail"
        answer = session.http.get(
            f"{session.base}{path}", allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS
        )
        assert answer.status_code == 200, f"GET {path} answered {answer.status_code}"
        directives = cache_directives(answer)
        shown = f"{path}: Cache-Control {answer.headers.get('Cache-Control')!r} lets a shared cache keep it"
        assert directives & {"private", "no-store"}, shown
        assert "public" not in directives, shown


@labels("Security", "Markup in user-controlled values is shown as text", Severity.CRITICAL)
def test_markup_in_file_name_and_metadata_is_shown_as_text(
    logged_in_page: DashboardPage, make_image: MakeImage, workflow_watcher: WorkflowWatcher
) -> None:
    page = logged_in_page.page
    dialogs: list[str] = []
    csp_messages: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            csp_messages.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.context.add_init_script(CSP_LISTENER)
    image = make_image(MARKUP_EXIF_KIND, filename=MARKUP_FILENAME)
    dashboard = logged_in_page.upload([image.path])
    workflow_id = dashboard.workflow_id_of(MARKUP_FILENAME)
    result = completed(workflow_watcher, workflow_id)
    with allure.step("A step recorded the markup from the EXIF (so the checks below have something to show)"):
        outputs = json.dumps(
            [s.get("output") for s in ((result.document or {}).get("steps") or {}).values()], default=str
        )
        assert "<script>alert(2)</script>" in outputs, "no step recorded the EXIF markup"

    def nothing_injected(where: str) -> None:
        injected = page.locator("img[src='x'], [onerror], [onload], script:not([src]), svg").count()
        assert injected == 0, f"{where}: {injected} element(s) injected from user-controlled values"

    with allure.step("The upload's message shows the file name literally"):
        expect(dashboard.flash.messages.first).to_have_text(f"Uploaded {MARKUP_FILENAME}")
        nothing_injected("the upload message")
    with allure.step("The dashboard list shows the file name literally"):
        dashboard.goto()
        expect(dashboard.row_for(MARKUP_FILENAME)).to_have_count(1)
        expect(dashboard.row_for(workflow_id).get_by_role("link")).to_have_text(MARKUP_FILENAME)
        nothing_injected("the dashboard")
    with allure.step("The workflow page shows the file name literally, metadata included"):
        workflow = WorkflowPage.open(page, workflow_id)
        expect(workflow.heading).to_have_text(MARKUP_FILENAME)
        expect(page).to_have_title(re.compile(re.escape(MARKUP_FILENAME)))
        expect(workflow.status).to_have_text("completed")
        expect(workflow.thumbnail).to_be_visible()
        nothing_injected("the workflow page")
    with allure.step("The API returns the values as JSON text, never as a page"):
        answer = page.request.get(f"/api/workflows/{workflow_id}")
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["image"]["filename"] == MARKUP_FILENAME
    violations = page.evaluate("window.__cspViolations || []")
    assert not dialogs, f"a dialog opened: {dialogs}"
    assert not violations, f"CSP violations: {violations}"
    assert not csp_messages, f"CSP messages on the console: {csp_messages}"


@dataclass(frozen=True)
class CsrfProbe:
    """One state-changing route of the dashboard, seen from the outside.

    send(token) makes the request with that CSRF token (None: with none at all, neither field nor
    header); own is the token of the session it is sent in; changed() says whether the request did
    what the route does (stored an upload, ended or began a session, created an account).
    """

    send: Callable[[str | None], requests.Response]
    own: str
    changed: Callable[[], bool]


@dataclass(frozen=True)
class CsrfScene:
    """What a probe is built from: logged-in and anonymous sessions, users, the toolkit and one image."""

    api_session: Callable[[TestUser], ApiSession]
    user_factory: UserFactory
    toolkit: IdentityToolkit
    image: ImageFile
    anonymous: Callable[[], ApiSession]


def _token_field(token: str | None) -> dict[str, str]:
    return {"csrf_token": token} if token is not None else {}


def _upload_form_probe(scene: CsrfScene) -> CsrfProbe:
    owner = scene.api_session(scene.user_factory())

    def send(token: str | None) -> requests.Response:
        return owner.http.post(
            f"{owner.base}/",
            data=_token_field(token),
            files=[("files", scene.image.multipart())],
            headers=NO_CSRF_HEADER,
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    return CsrfProbe(send, owner.csrf_token, lambda: owner.uploads().json() != [])


def _api_upload_probe(scene: CsrfScene) -> CsrfProbe:
    owner = scene.api_session(scene.user_factory())

    def send(token: str | None) -> requests.Response:
        return owner.http.post(
            f"{owner.base}/api/uploads",
            files=[("files", scene.image.multipart())],
            headers={CSRF_HEADER: token},
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    return CsrfProbe(send, owner.csrf_token, lambda: owner.uploads().json() != [])


def _logout_probe(scene: CsrfScene) -> CsrfProbe:
    owner = scene.api_session(scene.user_factory())

    def send(token: str | None) -> requests.Response:
        return owner.http.post(
            f"{owner.base}/logout",
            data=_token_field(token),
            headers=NO_CSRF_HEADER,
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    return CsrfProbe(send, owner.csrf_token, lambda: owner.uploads().status_code != 200)


def _login_probe(scene: CsrfScene) -> CsrfProbe:
    visitor, user = scene.anonymous(), scene.user_factory()
    _, own = form_with_token(visitor.http, visitor.base, "/login")

    def send(token: str | None) -> requests.Response:
        return visitor.http.post(
            f"{visitor.base}/login",
            data={"email": user.email, "password": user.password, **_token_field(token)},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    return CsrfProbe(send, own, lambda: visitor.uploads().status_code == 200)


def _register_probe(scene: CsrfScene) -> CsrfProbe:
    visitor, credentials = scene.anonymous(), scene.user_factory(register=False)
    _, own = form_with_token(visitor.http, visitor.base, "/register")
    form = {"email": credentials.email, "password": credentials.password}

    def send(token: str | None) -> requests.Response:
        return visitor.http.post(
            f"{visitor.base}/register",
            data={**form, "confirm_password": credentials.password, **_token_field(token)},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    return CsrfProbe(send, own, lambda: scene.toolkit.account_exists(credentials.email))


# How to probe each of the dashboard's state-changing routes (fixtures.promises lists them).
CSRF_PROBES: dict[str, Callable[[CsrfScene], CsrfProbe]] = {
    "POST /": _upload_form_probe,
    "POST /api/uploads": _api_upload_probe,
    "POST /logout": _logout_probe,
    "POST /login": _login_probe,
    "POST /register": _register_probe,
}


@pytest.fixture
def csrf_scene(
    target: Target,
    api_session: Callable[[TestUser], ApiSession],
    user_factory: UserFactory,
    identity_toolkit: IdentityToolkit,
    make_image: MakeImage,
) -> Iterator[CsrfScene]:
    """The parts a CSRF probe is built from; the anonymous sessions it opens are closed at teardown."""
    opened: list[ApiSession] = []

    def anonymous() -> ApiSession:
        opened.append(ApiSession(target))
        return opened[-1]

    yield CsrfScene(api_session, user_factory, identity_toolkit, make_image("tiny_png"), anonymous)
    for session in opened:
        session.close()


@labels("Security", "The CSRF probes cover every state-changing route", Severity.NORMAL)
def test_every_state_changing_route_has_a_csrf_probe() -> None:
    assert set(CSRF_PROBES) == promises.STATE_CHANGING_ROUTES, (
        f"probes {sorted(CSRF_PROBES)}, routes {sorted(promises.STATE_CHANGING_ROUTES)}"
    )


@labels("Security", "Every state-changing route refuses a missing or foreign CSRF token", Severity.CRITICAL)
@pytest.mark.parametrize("token", ["missing", "foreign"])
@pytest.mark.parametrize("route", sorted(CSRF_PROBES))
def test_state_changing_route_refuses_a_missing_or_foreign_csrf_token(
    route: str, token: str, csrf_scene: CsrfScene
) -> None:
    probe = CSRF_PROBES[route](csrf_scene)
    foreign = csrf_scene.api_session(csrf_scene.user_factory()).csrf_token if token == "foreign" else None
    with allure.step(f"{route} with {'another session' if foreign else 'no'} CSRF token is refused"):
        refused = probe.send(foreign)
        assert 400 <= refused.status_code < 500, (
            f"{route} with a {token} CSRF token answered {refused.status_code}: {refused.text[:200]}"
        )
        assert not probe.changed(), f"{route} with a {token} CSRF token was carried out"
    with allure.step(f"{route} with the session's own token is carried out (the refusal was the token's)"):
        done = probe.send(probe.own)
        assert done.status_code < 400, f"{route} with its own token answered {done.status_code}"
        assert probe.changed(), f"{route} with the session's own token changed nothing"


@labels("Security", "Login bursts are limited per account", Severity.CRITICAL)
def test_login_burst_gets_429_and_other_users_are_not_affected(
    user_factory: UserFactory, api_session: Callable[[TestUser], ApiSession], target: Target
) -> None:
    if urlsplit(target.dashboard_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("bursts of failed logins are sent to a loopback dashboard only")
    victim, bystander = user_factory(), user_factory()
    attacker = requests.Session()
    try:
        statuses: list[int] = []
        limited: requests.Response | None = None
        with allure.step(f"Up to {BURST_BOUND} wrong passwords for one account"):
            for _ in range(BURST_BOUND):
                _, token = form_with_token(attacker, target.dashboard_url, "/login")
                answer = attacker.post(
                    f"{target.dashboard_url}/login",
                    data={
                        "email": victim.email,
                        "password": throwaway_password(),
                        "csrf_token": token,
                    },
                    allow_redirects=False,
                    timeout=HTTP_TIMEOUT_SECONDS,
                )
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    limited = answer
                    break
                assert answer.status_code == 401, f"a wrong password answered {answer.status_code}"
        assert limited is not None, f"{BURST_BOUND} wrong passwords in a row were never refused: {statuses}"
        retry_after = limited.headers.get("Retry-After", "")
        assert retry_after.isdigit(), f"429 without a Retry-After in seconds: {retry_after!r}"
        assert int(retry_after) > 0, f"Retry-After is {retry_after}"
        assert "Too many attempts" in limited.text
        with allure.step("Even the right password waits out the window for that account"):
            _, token = form_with_token(attacker, target.dashboard_url, "/login")
            right = attacker.post(
                f"{target.dashboard_url}/login",
                data={"email": victim.email, "password": victim.password, "csrf_token": token},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT_SECONDS,
            )
            assert right.status_code == 429, (
                f"the locked account logged in during the window: {right.status_code}"
            )
        with allure.step("Another user, from the same address, logs in as usual"):
            api_session(bystander)
    finally:
        attacker.close()


@labels("Security", "The cookie check can fail", Severity.NORMAL)
def test_cookie_check_flags_a_cookie_that_carries_tokens() -> None:
    """A signed cookie with tokens inside (compressed or not) is flagged; a session-id cookie is not."""
    app = Flask(__name__)
    app.secret_key = "cookie-check-self-test"
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"k"}').rstrip(b"=").decode()
    id_token = f"{header}.{header}.signature"
    with_tokens = {"uid": "u1", "id_token": id_token, "refresh_token": "AMf-" + "r" * 200, "expires_at": 1.0}
    flagged = cookie_problems(str(serializer.dumps(with_tokens)), "Secret1pass")
    assert "a JWT (an ID token)" in flagged
    assert any(p.startswith("keys beyond the session id") for p in flagged)
    assert cookie_problems(str(serializer.dumps({"pw": "Secret1pass" * 20})), "Secret1pass")
    for session_id in ("x" * 43, "Zk3_q-8vTn0aWcLr2pYbHs5uJeM1oXgDiQf7tNz4KyA"):
        # Compressed or not, a cookie holding only a session id passes.
        cookie = str(serializer.dumps({"sid": session_id, "_permanent": True}))
        assert cookie_problems(cookie, "Secret1pass") == [], cookie_problems(cookie, "Secret1pass")
