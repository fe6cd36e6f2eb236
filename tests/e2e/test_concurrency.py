"""Several users uploading at the same moment: every workflow completes, each agent once per upload."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import allure
from pipeline_checks import completed, every_agent_once, no_dead_letters, published_once
from requests import Response

from fixtures.firestore import WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.pubsub import Taps
from fixtures.reporting import labels
from fixtures.uploads import ApiSession, accepted_ids
from fixtures.users import TestUser, UserFactory
from imageflow.manifest import Manifest

USERS = 3
KINDS = ["jpeg_with_exif_gps", "png_with_alpha", "webp", "gif", "tiny_png", "plain_jpeg"]
START_TIMEOUT_SECONDS = 30


@labels(
    "Concurrency",
    "Users uploading at the same time each get every agent once",
    allure.severity_level.CRITICAL,
)
def test_concurrent_uploads_from_three_users_all_complete_with_each_agent_once(
    user_factory: UserFactory,
    api_session: Callable[[TestUser], ApiSession],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
) -> None:
    users = [user_factory() for _ in range(USERS)]
    sessions = [api_session(user) for user in users]
    # Two images per user, so each request also fans out inside the dashboard.
    files = [[make_image(kind).multipart() for kind in KINDS[2 * i : 2 * i + 2]] for i in range(USERS)]
    start = threading.Barrier(USERS)

    def send(index: int) -> Response:
        start.wait(timeout=START_TIMEOUT_SECONDS)  # released together: the uploads really overlap
        return sessions[index].post_files(files[index])

    with (
        allure.step(f"{USERS} users upload {sum(map(len, files))} images at the same moment"),
        ThreadPoolExecutor(max_workers=USERS) as pool,
    ):
        responses = list(pool.map(send, range(USERS)))
    for user, response in zip(users, responses, strict=True):
        assert response.status_code == 201, f"{user.email}: {response.status_code} {response.text[:200]}"
    ids_per_user = [list(accepted_ids(r).values()) for r in responses]
    workflow_ids = [w for ids in ids_per_user for w in ids]
    assert len(set(workflow_ids)) == sum(map(len, files)), f"one workflow per file expected: {ids_per_user}"

    for workflow_id in workflow_ids:
        every_agent_once(completed(workflow_watcher, workflow_id), pipeline_manifest)
    published_once(pubsub_taps, pipeline_manifest, workflow_ids)
    no_dead_letters(pubsub_taps, pipeline_manifest, workflow_ids)
    with allure.step("Each user lists exactly their own uploads"):
        for session, ids in zip(sessions, ids_per_user, strict=True):
            listed = {row["workflow_id"] for row in session.uploads().json()}
            assert listed == set(ids), f"{session.email} lists {sorted(listed)}, uploaded {sorted(ids)}"
