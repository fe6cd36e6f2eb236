"""The registration page (/register)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from playwright.sync_api import Locator, Page, expect

from pages.base import BasePage, action

if TYPE_CHECKING:
    from pages.dashboard import DashboardPage


class RegisterPage(BasePage):
    """Create an account: email, password, confirmation."""

    path = "/register"
    title = "Create account"

    def __init__(self, page: Page) -> None:
        super().__init__(page)
        self.email: Locator = page.get_by_label("Email", exact=True)
        self.password: Locator = page.get_by_label("Password", exact=True)
        self.confirm: Locator = page.get_by_label("Confirm password", exact=True)
        self.submit: Locator = page.get_by_role("button", name="Create account")
        self.form_error: Locator = page.get_by_test_id("form-error")
        self.email_error: Locator = page.get_by_test_id("email-error")
        self.password_error: Locator = page.get_by_test_id("password-error")
        self.confirm_error: Locator = page.get_by_test_id("confirm-error")

    @property
    def any_error(self) -> Locator:
        """Whichever error the form shows first (form-level or per field)."""
        return self.form_error.or_(self.email_error).or_(self.password_error).or_(self.confirm_error).first

    def _fill(self, email: str, password: str, confirm: str | None) -> None:
        self.email.fill(email)
        self.password.fill(password)
        self.confirm.fill(password if confirm is None else confirm)
        self.submit.click()

    @action("Register as {email}")
    def register(self, email: str, password: str, confirm: str | None = None) -> DashboardPage:
        """Create the account; the dashboard it lands on, loaded (logged in)."""
        from pages.dashboard import DashboardPage

        self._fill(email, password, confirm)
        return DashboardPage(self.page).wait_loaded()

    @action("Register as {email}, expecting a refusal")
    def register_expecting_error(self, email: str, password: str, confirm: str | None = None) -> Self:
        """Submit the form and wait until it comes back with an error."""
        self._fill(email, password, confirm)
        self.wait_loaded()
        expect(self.any_error).to_be_visible()
        return self
