"""The login page (/login)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, TypeVar

from playwright.sync_api import Locator, Page, expect

from pages.base import BasePage, action

if TYPE_CHECKING:
    from pages.dashboard import DashboardPage

P = TypeVar("P", bound=BasePage)


class LoginPage(BasePage):
    """Log in with email and password."""

    path = "/login"
    title = "Log in"

    def __init__(self, page: Page) -> None:
        super().__init__(page)
        self.email: Locator = page.get_by_label("Email", exact=True)
        self.password: Locator = page.get_by_label("Password", exact=True)
        self.submit: Locator = page.get_by_role("button", name="Log in")
        self.form_error: Locator = page.get_by_test_id("form-error")

    def _fill(self, email: str, password: str) -> None:
        self.email.fill(email)
        self.password.fill(password)
        self.submit.click()

    @action("Log in as {email}")
    def login(self, email: str, password: str) -> DashboardPage:
        """Log in; the dashboard it lands on, loaded."""
        from pages.dashboard import DashboardPage

        self._fill(email, password)
        return DashboardPage(self.page).wait_loaded()

    @action("Log in as {email}, returning to {then.__name__}")
    def login_to(self, email: str, password: str, then: type[P]) -> P:
        """Log in from a redirect (?next=...); the page it returns to, loaded."""
        self._fill(email, password)
        return then(self.page).wait_loaded()

    @action("Log in as {email}, expecting a refusal")
    def login_expecting_error(self, email: str, password: str) -> Self:
        """Submit the form and wait until it comes back with the form error."""
        self._fill(email, password)
        self.wait_loaded()
        expect(self.form_error).to_be_visible()
        return self
