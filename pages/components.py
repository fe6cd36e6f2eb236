"""Widgets shared by several pages: the account navigation and the flash messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import allure
from playwright.sync_api import Locator, Page

if TYPE_CHECKING:
    from pages.login import LoginPage


class NavBar:
    """The logged-in header: who is logged in, and the Log out button."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.user: Locator = page.get_by_test_id("nav-user")
        self.log_out_button: Locator = page.get_by_role("button", name="Log out")

    def log_out(self) -> LoginPage:
        """Log out; the login page it lands on, loaded."""
        from pages.login import LoginPage

        with allure.step("Log out"):
            self.log_out_button.click()
            return LoginPage(self.page).wait_loaded()


class Flash:
    """Status messages (role=status) shown once after an action."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.messages: Locator = page.get_by_test_id("flash")

    def message(self, text: str) -> Locator:
        """The status message containing text."""
        return self.messages.filter(has_text=text)
