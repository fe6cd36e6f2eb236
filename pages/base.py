"""The base of every page object: the page, its path, its heading, the shared components."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

import allure
from playwright.sync_api import Locator, Page, expect

from pages.components import Flash, NavBar

F = TypeVar("F", bound=Callable[..., Any])


def action(title: str) -> Callable[[F], F]:
    """An Allure step per user action, titled from the named arguments only.

    ``@allure.step`` would record every argument as a step parameter, passwords included; this
    opens the same step as a context manager, so only what the title names reaches the report.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: object, **kwargs: object) -> object:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with allure.step(title.format(**bound.arguments)):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class BasePage:
    """A page of the dashboard, reached at ``path`` and recognised by its level-1 heading."""

    path: ClassVar[str] = "/"
    title: ClassVar[str] = ""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.nav = NavBar(page)
        self.flash = Flash(page)

    @property
    def heading(self) -> Locator:
        """The page's level-1 heading."""
        if self.title:
            return self.page.get_by_role("heading", level=1, name=self.title, exact=True)
        return self.page.get_by_role("heading", level=1)

    def wait_loaded(self) -> Self:
        """Wait until this page is the one shown (its heading is visible)."""
        expect(self.heading).to_be_visible()
        return self

    @action("Open {self.path}")
    def goto(self) -> Self:
        """Open the page by its path (relative to the context's base URL) and wait for it."""
        self.page.goto(self.path)
        return self.wait_loaded()
