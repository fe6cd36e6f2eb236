"""Uploads: a photo and several at once through the page, each format through the API, every agent once.

The page's form is what the photo and the several-at-once scenarios test; the formats scenario tests
the pipeline, so its upload goes through the dashboard's upload API (POST /api/uploads, the handler
of the form's POST / too) and only the page's view of the settled workflow is checked in the browser.
"""

from __future__ import annotations

from collections.abc import Callable

import allure
import pytest
from pipeline_checks import (
    completed,
    every_agent_once,
    no_dead_letters,
    page_shows_completed,
    published_once,
    views_agree,
)
from playwright.sync_api import expect

from fixtures.firestore import WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.pubsub import Taps
from fixtures.reporting import labels
from fixtures.uploads import ApiSession
from fixtures.users import TestUser
from imageflow.manifest import Manifest
from pages.dashboard import DashboardPage

FORMATS = ["png_with_alpha", "webp", "gif", "large_jpeg", "tiny_png"]


def _upload_one(dashboard: DashboardPage, make_image: MakeImage, kind: str) -> tuple[str, str]:
    """Upload one generated image through the form; its (filename, workflow id)."""
    image = make_image(kind)
    dashboard.upload([image.path])
    expect(dashboard.flash.message(f"Uploaded {image.filename}")).to_be_visible()
    expect(dashboard.upload_errors).to_have_count(0)
    return image.filename, dashboard.workflow_id_of(image.filename)


@pytest.mark.smoke
@labels("Upload", "A photo goes through every agent", allure.severity_level.BLOCKER)
def test_upload_jpeg_completes_with_every_agent_exactly_once(
    logged_in_page: DashboardPage,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
    new_user: TestUser,
    api_session: Callable[[TestUser], ApiSession],
) -> None:
    _, workflow_id = _upload_one(logged_in_page, make_image, "jpeg_with_exif_gps")
    expect(logged_in_page.status_of(workflow_id)).to_be_visible()

    result = completed(workflow_watcher, workflow_id)

    every_agent_once(result, pipeline_manifest)
    published_once(pubsub_taps, pipeline_manifest, [workflow_id])
    # The API read through a second, independent login of the same user.
    views_agree(logged_in_page.page, result, api_session(new_user))
    no_dead_letters(pubsub_taps, pipeline_manifest, [workflow_id])


@pytest.mark.parametrize("kind", FORMATS)
@labels("Upload", "Each accepted format goes through every agent", allure.severity_level.CRITICAL)
def test_upload_of_format_completes_with_every_agent_exactly_once(
    kind: str,
    logged_in_page: DashboardPage,
    logged_in_session: ApiSession,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
) -> None:
    workflow_id = logged_in_session.upload_one(make_image(kind).multipart())

    result = completed(workflow_watcher, workflow_id)

    every_agent_once(result, pipeline_manifest)
    published_once(pubsub_taps, pipeline_manifest, [workflow_id])
    views_agree(logged_in_page.page, result)
    no_dead_letters(pubsub_taps, pipeline_manifest, [workflow_id])


@labels(
    "Upload", "Several images uploaded at once each go through every agent", allure.severity_level.CRITICAL
)
def test_several_images_uploaded_at_once_each_complete_exactly_once(
    logged_in_page: DashboardPage,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
) -> None:
    images = [make_image(kind) for kind in ["jpeg_with_exif_gps", *FORMATS]]
    dashboard = logged_in_page.upload([image.path for image in images])
    for image in images:
        expect(dashboard.flash.message(f"Uploaded {image.filename}")).to_be_visible()
    expect(dashboard.upload_rows).to_have_count(len(images))
    workflow_ids = [dashboard.workflow_id_of(image.filename) for image in images]
    assert len(set(workflow_ids)) == len(images), f"one workflow per file expected: {workflow_ids}"

    for workflow_id in workflow_ids:
        every_agent_once(completed(workflow_watcher, workflow_id), pipeline_manifest)
    published_once(pubsub_taps, pipeline_manifest, workflow_ids)
    for workflow_id in workflow_ids:
        page_shows_completed(dashboard.page, workflow_id, pipeline_manifest)
    no_dead_letters(pubsub_taps, pipeline_manifest, workflow_ids)
