"""The workflow page (/workflows/ID) of one upload, and the "Upload not found" page."""

from __future__ import annotations

from typing import Self

from playwright.sync_api import Locator, Page, expect

from pages.base import BasePage, action


class WorkflowPage(BasePage):
    """One upload: overall status (updated live), reason, one row per agent, the thumbnail."""

    path = "/workflows/{workflow_id}"

    def __init__(self, page: Page) -> None:
        super().__init__(page)
        self.status: Locator = page.get_by_test_id("workflow-status")
        self.reason: Locator = page.get_by_test_id("workflow-reason")
        self.steps: Locator = page.get_by_test_id("steps")
        self.thumbnail: Locator = page.get_by_role("img", name="Thumbnail")

    def wait_loaded(self) -> Self:
        """Wait until the page shows a workflow (heading and status)."""
        expect(self.heading).to_be_visible()
        expect(self.status).to_be_visible()
        return self

    @staticmethod
    @action("Open workflow {workflow_id}")
    def open(page: Page, workflow_id: str) -> WorkflowPage:
        """Open the workflow page of workflow_id directly and wait for it."""
        page.goto(f"/workflows/{workflow_id}")
        return WorkflowPage(page).wait_loaded()

    @property
    def workflow_id(self) -> str:
        """The workflow id of the page (from its URL)."""
        return self.page.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]

    def step(self, agent: str) -> Locator:
        """The steps-table row of an agent (its data-status attribute is the step's status)."""
        return self.page.get_by_test_id(f"step-{agent}")

    def step_status(self, agent: str) -> Locator:
        """The status cell of an agent's row."""
        return self.step(agent).get_by_test_id("step-status")

    @action("Fetch the thumbnail")
    def thumbnail_response_status(self) -> int:
        """HTTP status of the thumbnail image as the browser fetches it (same session)."""
        source = self.thumbnail.get_attribute("src")
        if not source:
            raise AssertionError("the page shows no thumbnail image")
        return self.page.request.get(source).status


class NotFoundPage(BasePage):
    """The 404 page shown for an unknown workflow or another user's."""

    title = "Upload not found"

    @staticmethod
    @action("Open {path}, expecting Upload not found")
    def open(page: Page, path: str) -> NotFoundPage:
        """Open path, expecting the "Upload not found" page."""
        page.goto(path)
        return NotFoundPage(page).wait_loaded()
