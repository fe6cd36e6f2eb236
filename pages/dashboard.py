"""The dashboard (/): the upload form and the list of the user's own uploads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import allure
from playwright.sync_api import FilePayload, Locator, Page, expect

from pages.base import BasePage, action
from pages.workflow import WorkflowPage

FileInput = Path | FilePayload


def file_name(file: FileInput) -> str:
    """The name the browser sends for a file to upload."""
    return file.name if isinstance(file, Path) else file["name"]


class DashboardPage(BasePage):
    """Your images: upload files, see each upload's status, open its workflow."""

    path = "/"
    title = "Your images"

    def __init__(self, page: Page) -> None:
        super().__init__(page)
        self.files: Locator = page.get_by_label("Images", exact=True)
        self.upload_button: Locator = page.get_by_role("button", name="Upload")
        self.upload_errors: Locator = page.get_by_test_id("upload-error")
        self.upload_list: Locator = page.get_by_test_id("upload-list")
        self.upload_rows: Locator = page.get_by_test_id("upload-row")
        self.no_uploads: Locator = page.get_by_test_id("no-uploads")

    def upload(self, files: Sequence[FileInput]) -> Self:
        """Choose files and submit; the dashboard again once it shows an outcome for the upload."""
        chosen = list(files)
        if not chosen:
            raise ValueError("upload() needs at least one file")
        with allure.step(f"Upload {', '.join(file_name(f) for f in chosen)}"):
            self.files.set_input_files(chosen)  # type: ignore[arg-type]
            # The form posts and redirects back here: wait for that new document, not the old one.
            with self.page.expect_navigation(wait_until="domcontentloaded"):
                self.upload_button.click()
            self.wait_loaded()
            expect(self.flash.messages.or_(self.upload_errors).first).to_be_visible()
        return self

    def upload_error(self, text: str) -> Locator:
        """The upload error line containing text (a file name or a reason)."""
        return self.upload_errors.filter(has_text=text)

    def row_for(self, name_or_id: str) -> Locator:
        """The upload row for a filename (link text) or a workflow id."""
        by_name = self.upload_rows.filter(has=self.page.get_by_role("link", name=name_or_id, exact=True))
        if not name_or_id.isalnum():
            return by_name  # workflow ids are hex: anything else can only be a filename
        by_id = self.page.locator(f'[data-testid="upload-row"][data-workflow-id="{name_or_id}"]')
        return by_id.or_(by_name)

    def status_of(self, name_or_id: str) -> Locator:
        """The status shown in the row of an upload."""
        return self.row_for(name_or_id).get_by_test_id("workflow-status")

    def workflow_ids(self) -> list[str]:
        """The workflow ids of the listed uploads, newest first."""
        return [str(row.get_attribute("data-workflow-id")) for row in self.upload_rows.all()]

    def workflow_id_of(self, filename: str) -> str:
        """The workflow id of the newest upload with this filename."""
        row = self.row_for(filename).first
        expect(row).to_be_visible()
        return str(row.get_attribute("data-workflow-id"))

    @action("Open the workflow of {name_or_id}")
    def open_workflow(self, name_or_id: str) -> WorkflowPage:
        """Follow the upload's link; its workflow page, loaded."""
        self.row_for(name_or_id).first.get_by_role("link").click()
        return WorkflowPage(self.page).wait_loaded()

    @action("Reload the dashboard")
    def reload(self) -> Self:
        """Reload the page (the list is rendered by the server)."""
        self.page.reload()
        return self.wait_loaded()
