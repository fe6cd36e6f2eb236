"""Bad input is refused as promised (at upload, or by the validator), never with a 500, never stored.

A good image travels in the same request as every bad one: it must still complete, untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import allure
import pytest
from contract_checks import no_server_error, stored_for, upload_parts
from google.cloud import storage
from pipeline_checks import completed, every_agent_once, no_dead_letters, views_agree
from playwright.sync_api import Page

from fixtures import promises
from fixtures.dashboard import FilePart
from fixtures.firestore import WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.pubsub import Taps
from fixtures.reporting import labels
from fixtures.sessions import OpenAs
from fixtures.target import Target
from fixtures.uploads import ApiSession, accepted_ids
from fixtures.users import TestUser
from imageflow.manifest import Manifest

# The reasons are the promises table's (fixtures/promises.py); every refused format is in test_contracts.
REFUSED_AT_UPLOAD = [
    pytest.param("zero_bytes", promises.EMPTY, id="zero-byte"),
    pytest.param("oversize_file", promises.TOO_LARGE, id="oversize"),
    pytest.param("svg", promises.NOT_ACCEPTED, id="svg"),
    pytest.param("html", promises.NOT_ACCEPTED, id="html"),
]
# Content only the validator can judge: the file is named and typed like an image.
REJECTED_BY_CONTENT = [
    pytest.param("text_as_jpg", promises.VALIDATOR_NOT_DECODABLE, id="text-named-jpg"),
    pytest.param("corrupt_jpeg", promises.VALIDATOR_TRUNCATED, id="truncated-jpeg"),
    pytest.param(
        "decompression_bomb_png", promises.VALIDATOR_OVER_PIXELS.format(pixels=900_000_000), id="bomb"
    ),
]

ApiFor = Callable[[TestUser], ApiSession]


@pytest.mark.parametrize(("kind", "message"), REFUSED_AT_UPLOAD)
@labels("Bad input", "Refused at upload with the promised message", allure.severity_level.CRITICAL)
def test_bad_file_refused_at_upload_with_message_and_good_file_unaffected(
    kind: str,
    message: str,
    new_user: TestUser,
    api_session: ApiFor,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
    upload_bucket: storage.Bucket,
    target: Target,
) -> None:
    session = api_session(new_user)
    bad, good = make_image(kind), make_image("plain_jpeg")
    expected = {"filename": bad.filename, "reason": message.format(name=bad.filename)}

    alone = session.upload([bad.multipart()])
    no_server_error(alone)
    assert alone.status_code in (400, 413), f"a lone bad file answered {alone.status_code}"
    if alone.status_code == 400:
        assert alone.json()["rejected"] == [expected]

    together = session.upload([bad.multipart(), good.multipart()])
    no_server_error(together)
    assert together.status_code == 201, f"bad + good answered {together.status_code}: {together.text[:300]}"
    assert together.json()["rejected"] == [expected]
    workflow_id = accepted_ids(together)[good.filename]

    every_agent_once(completed(workflow_watcher, workflow_id), pipeline_manifest)
    with allure.step("Nothing of the refused file was stored or queued"):
        stored = stored_for(new_user, upload_bucket, target)
        assert stored.workflow_ids == {workflow_id}, f"workflows of the user: {sorted(stored.workflow_ids)}"
        objects = stored.originals | stored.thumbnails
        assert all(f"/{workflow_id}" in name for name in objects), f"objects stored: {sorted(objects)}"
        pubsub_taps.drain([pipeline_manifest.upload_topic])
        queued = {m.workflow_id for m in pubsub_taps.messages(pipeline_manifest.upload_topic)}
        owners = [
            m
            for m in pubsub_taps.messages(pipeline_manifest.upload_topic)
            if isinstance(m.data, dict) and m.data.get("owner") == new_user.uid
        ]
        assert [m.workflow_id for m in owners] == [workflow_id], f"queued for the user: {sorted(queued)}"
    no_dead_letters(pubsub_taps, pipeline_manifest, [workflow_id])


@pytest.mark.agent("validator")
@pytest.mark.parametrize(("kind", "reason"), REJECTED_BY_CONTENT)
@labels(
    "Bad input",
    "Refused by content: rejected with a reason, other steps skipped",
    allure.severity_level.CRITICAL,
)
def test_bad_content_rejected_with_reason_and_other_steps_skipped(
    kind: str,
    reason: str,
    new_user: TestUser,
    api_session: ApiFor,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
    page: Page,
    open_as: OpenAs,
) -> None:
    session = api_session(new_user)
    bad, good = make_image(kind), make_image("png_with_alpha")

    response = session.upload([bad.multipart(), good.multipart()])
    no_server_error(response)
    assert response.status_code == 201, f"answered {response.status_code}: {response.text[:300]}"
    ids = accepted_ids(response)
    good_result = completed(workflow_watcher, ids[good.filename])
    every_agent_once(good_result, pipeline_manifest)

    if bad.filename not in ids:
        with allure.step("Refused at upload: the refusal names the file and a reason"):
            refused = {r["filename"]: r["reason"] for r in response.json()["rejected"]}
            assert refused.get(bad.filename), (
                f"{bad.filename} neither accepted nor refused: {response.json()}"
            )
        return

    bad_id = ids[bad.filename]
    result = workflow_watcher.watch(bad_id)
    assert result.reached, result.message
    assert result.status == "rejected", result.message
    assert (result.document or {}).get("reason") == reason, result.message
    validator = result.step("validator")
    assert validator.get("status") == "rejected", validator
    assert validator.get("attempts") == 1, validator
    others = {
        name: (result.step(name).get("status"), result.step(name).get("attempts"))
        for name in pipeline_manifest.agent_names
        if name != "validator"
    }
    assert all(status == "skipped" and attempts == 0 for status, attempts in others.values()), others
    views_agree(open_as(new_user, session, page).page, result, session)
    with allure.step("Nothing was published past the validator for the rejected upload"):
        validated = pipeline_manifest.agent("validator").output_topic
        pubsub_taps.drain([validated])
        assert not pubsub_taps.messages(validated, bad_id), "the validator published a rejected upload"
    no_dead_letters(pubsub_taps, pipeline_manifest, [bad_id, good_result.workflow_id])


@labels("Bad input", "Path traversal in a filename is neutralised", allure.severity_level.CRITICAL)
def test_path_traversal_filename_is_stored_inside_the_users_folder(
    new_user: TestUser,
    api_session: ApiFor,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> None:
    image = make_image("plain_jpeg")
    response = api_session(new_user).upload([("../../../etc/passwd.jpg", image.data, "image/jpeg")])
    no_server_error(response)
    assert response.status_code == 201, response.text[:300]
    [(filename, workflow_id)] = accepted_ids(response).items()
    assert "/" not in filename, filename
    assert ".." not in filename, filename

    result = completed(workflow_watcher, workflow_id)
    every_agent_once(result, pipeline_manifest)
    stored = str((result.document or {})["image"]["object"])
    assert stored.startswith(f"originals/{new_user.uid}/{workflow_id}/"), stored
    assert ".." not in stored, stored
    assert stored.count("/") == 3, stored


@labels("Bad input", "A filename that is not UTF-8 never causes a 500", allure.severity_level.NORMAL)
def test_non_utf8_filename_is_never_a_server_error(
    new_user: TestUser,
    api_session: ApiFor,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> None:
    image = make_image("plain_jpeg")
    raw_name = FilePart(b"caf\xe9 \xff\xfe.jpg", image.data, "image/jpeg")
    response = upload_parts(api_session(new_user), [raw_name])
    no_server_error(response)
    assert response.status_code in (201, 400), response.text[:300]
    if response.status_code == 400:
        # Werkzeug's multipart parser drops a part whose header is not UTF-8: a clear 400, not a 500.
        body = response.json()
        reasons = [r.get("reason") for r in body.get("rejected", [])] + [body.get("error")]
        assert any(reasons), f"refused without saying why: {body}"
        return
    [(filename, workflow_id)] = accepted_ids(response).items()
    filename.encode("utf-8")  # the name shown to people is valid text
    assert filename.endswith(".jpg"), filename
    result = completed(workflow_watcher, workflow_id)
    every_agent_once(result, pipeline_manifest)
