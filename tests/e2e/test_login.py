"""Login and logout through the UI, and the redirect of protected pages."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import allure
import pytest
from playwright.sync_api import Page, expect

from fixtures.reporting import labels
from fixtures.users import TestUser, throwaway_password
from pages.dashboard import DashboardPage
from pages.login import LoginPage
from pages.workflow import NotFoundPage

Severity = allure.severity_level

WRONG_CREDENTIALS = "Wrong email or password."
LOGGED_OUT = "You have been logged out."


@pytest.mark.smoke
@labels("Accounts", "Login", Severity.BLOCKER)
def test_login_shows_the_users_dashboard(page: Page, new_user: TestUser) -> None:
    """A registered user logs in and sees their own, empty dashboard."""
    dashboard = LoginPage(page).goto().login(new_user.email, new_user.password)
    expect(dashboard.nav.user).to_have_text(new_user.email)
    expect(dashboard.no_uploads).to_be_visible()


@labels("Accounts", "Login", Severity.CRITICAL)
def test_login_refuses_a_wrong_password(page: Page, new_user: TestUser) -> None:
    """A wrong password is refused with the contract's message and no session."""
    form = LoginPage(page).goto().login_expecting_error(new_user.email, throwaway_password())
    expect(form.form_error).to_have_text(WRONG_CREDENTIALS)
    expect(form.nav.user).to_have_count(0)
    page.goto("/")
    LoginPage(page).wait_loaded()


@labels("Accounts", "Login", Severity.NORMAL)
def test_login_refuses_an_unknown_email(page: Page, fresh_credentials: TestUser) -> None:
    """An email without an account gets the same message as a wrong password (no account probing)."""
    form = LoginPage(page).goto().login_expecting_error(fresh_credentials.email, fresh_credentials.password)
    expect(form.form_error).to_have_text(WRONG_CREDENTIALS)


@pytest.mark.smoke
@labels("Accounts", "Logout", Severity.CRITICAL)
def test_logout_ends_the_session(ui_logged_in_page: DashboardPage) -> None:
    """Log out lands on the login page with its message, and the dashboard is protected again."""
    login = ui_logged_in_page.nav.log_out()
    expect(login.flash.messages).to_have_text(LOGGED_OUT)
    expect(login.nav.user).to_have_count(0)
    login.page.goto("/")
    LoginPage(login.page).wait_loaded()
    expect(login.page).to_have_url(re.compile(r"/login\?next="))


@labels("Accounts", "Protected pages", Severity.CRITICAL)
def test_protected_page_redirects_to_login_and_back(page: Page, new_user: TestUser) -> None:
    """A protected page asks for a login first, then shows the page that was asked for."""
    wanted = "/workflows/not-a-real-upload"
    page.goto(wanted)
    login = LoginPage(page).wait_loaded()
    asked = urlsplit(page.url)
    assert (asked.path, parse_qs(asked.query).get("next")) == ("/login", [wanted])
    login.login_to(new_user.email, new_user.password, then=NotFoundPage)
    assert urlsplit(page.url).path == wanted


@labels("Accounts", "Protected pages", Severity.CRITICAL)
@pytest.mark.parametrize("next_url", ["https://evil.example/steal", "//evil.example/steal"])
def test_login_never_redirects_off_site(page: Page, new_user: TestUser, base_url: str, next_url: str) -> None:
    """A ?next= pointing to another site is ignored: the login lands on the dashboard."""
    page.goto(f"/login?next={quote(next_url, safe='')}")
    dashboard = LoginPage(page).wait_loaded().login(new_user.email, new_user.password)
    expect(dashboard.page).to_have_url(base_url.rstrip("/") + "/")


@labels("Accounts", "Protected pages", Severity.NORMAL)
def test_api_without_a_session_answers_401_json(page: Page) -> None:
    """The JSON API refuses an anonymous caller with 401 JSON, not a redirect to a page."""
    response = page.request.get("/api/uploads", max_redirects=0)
    assert response.status == 401
    assert response.headers["content-type"].startswith("application/json")
