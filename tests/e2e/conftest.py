"""Fixtures shared by the scenarios of this folder (the suite-wide ones are plugins under fixtures/)."""

from __future__ import annotations

import pytest
from contract_checks import PipelineScene
from google.cloud import storage

from fixtures.firestore import WorkflowWatcher
from fixtures.target import Target
from fixtures.uploads import ApiSession
from fixtures.users import TestUser
from imageflow.manifest import Manifest


@pytest.fixture
def pipeline_scene(
    new_user: TestUser,
    logged_in_session: ApiSession,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
    upload_bucket: storage.Bucket,
    target: Target,
) -> PipelineScene:
    """This test's user, session, workflow watcher, manifest, upload bucket and target in one."""
    return PipelineScene(
        new_user, logged_in_session, workflow_watcher, pipeline_manifest, upload_bucket, target
    )
