"""The agents against the real Firestore, Pub/Sub and Storage emulators, through their Flask apps.

The harness (backend, uploads, agent apps, pushes) is agent_harness.py with this folder's conftest.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from agent_harness import (
    MANIFEST,
    REVISION,
    Backend,
    MakeApp,
    MakeUpload,
    Upload,
    document,
    output_topic,
    push,
    step,
    unique,
)
from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from PIL import Image
from werkzeug.test import TestResponse

from fixtures import images, promises
from imageflow import config, workflow
from imageflow.agents import base


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- each agent does its job -------------------------------------------------------------------


def test_validator_records_its_verdict_then_publishes(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("jpeg_with_exif_gps")
    response = push(make_app("validator"), upload, backend.bucket_name)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outcome"] == "done"
    recorded = step(backend, upload, "validator")
    assert recorded["status"] == "done"
    assert (recorded["attempts"], recorded["deliveries"]) == (1, 1)
    assert recorded["revision"] == REVISION
    assert recorded["published"] is True
    assert set(MANIFEST.agent("validator").outputs) <= set(recorded["output"])
    assert recorded["output"]["format"] == "JPEG"
    assert recorded["output"]["bytes"] == len(upload.data)
    assert document(backend, upload)["status"] == "processing"
    [message] = backend.published(output_topic(backend, "validator"), upload.workflow_id)
    assert message["data"] == upload.message(backend.bucket_name)
    assert message["attributes"] == {"workflow_id": upload.workflow_id}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("corrupt_jpeg", "file is truncated"),
        ("svg", "format SVG is not allowed"),
        ("decompression_bomb_png", "image is 900000000 pixels, over the limit of 40000000"),
        ("text_as_jpg", "not a decodable image"),
    ],
)
def test_validator_rejects_bad_input_and_skips_every_other_step(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp, kind: str, reason: str
) -> None:
    upload = make_upload(kind)
    response = push(make_app("validator"), upload, backend.bucket_name)

    assert response.status_code == 200
    assert response.get_json() == {"outcome": "rejected", "reason": reason}
    doc = document(backend, upload)
    assert doc["status"] == "rejected"
    assert doc["reason"] == reason
    assert doc["steps"]["validator"]["status"] == "rejected"
    others = {name: doc["steps"][name]["status"] for name in MANIFEST.agent_names if name != "validator"}
    assert set(others.values()) == {"skipped"}, others
    assert backend.published(output_topic(backend, "validator"), upload.workflow_id, expect=0) == []


def test_thumbnailer_writes_the_thumbnail_it_reports(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("png_with_alpha", done=["validator"])
    response = push(make_app("thumbnailer"), upload, backend.bucket_name)

    assert response.status_code == 200, response.get_json()
    output = step(backend, upload, "thumbnailer")["output"]
    assert output["object"] == f"{promises.THUMBNAILS_PREFIX}/{upload.owner}/{upload.workflow_id}.png"
    stored = backend.bucket.blob(output["object"])
    thumbnail = decode(stored.download_as_bytes())
    assert thumbnail.format == "PNG"
    assert thumbnail.mode == "RGBA"
    assert thumbnail.size == (output["width"], output["height"]) == (256, 192)
    assert len(backend.published(output_topic(backend, "thumbnailer"), upload.workflow_id)) == 1


def test_exif_agent_never_stores_the_location(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    # The original still has GPS here (as if the dashboard had failed to strip it).
    upload = make_upload("jpeg_with_exif_gps", done=["validator"])
    response = push(make_app("exif"), upload, backend.bucket_name)

    assert response.status_code == 200, response.get_json()
    recorded = step(backend, upload, "exif")
    assert recorded["output"]["camera"] == f"{images.CAMERA_MAKE} {images.CAMERA_MODEL}"
    assert recorded["output"]["orientation"] == images.ORIENTATION
    stored = json.dumps(document(backend, upload)["steps"], default=str).lower()
    assert "gps" not in stored
    assert "52.51" not in stored
    assert len(backend.published(output_topic(backend, "exif"), upload.workflow_id)) == 1


def test_analysis_records_colours_hash_and_brightness(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("webp", done=["validator"])
    response = push(make_app("analysis"), upload, backend.bucket_name)

    assert response.status_code == 200, response.get_json()
    output = step(backend, upload, "analysis")["output"]
    assert set(MANIFEST.agent("analysis").outputs) <= set(output)
    assert len(output["phash"]) == 16
    assert (output["width"], output["height"]) == (500, 375)
    assert len(backend.published(output_topic(backend, "analysis"), upload.workflow_id)) == 1


def test_the_lane_of_a_delivery_is_kept_on_its_output(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("tiny_png", done=["validator"])
    response = push(make_app("analysis"), upload, backend.bucket_name, {"lane": "lane-itest--"})

    assert response.status_code == 200, response.get_json()
    [message] = backend.published(output_topic(backend, "analysis", lane="lane-itest--"), upload.workflow_id)
    assert message["attributes"] == {"workflow_id": upload.workflow_id, "lane": "lane-itest--"}
    assert backend.published(output_topic(backend, "analysis"), upload.workflow_id, expect=0) == []


# --- the finalizer -----------------------------------------------------------------------------


def test_finalizer_waits_for_every_dependency_then_completes_once(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    dependencies = MANIFEST.agent("finalizer").depends_on
    upload = make_upload("plain_jpeg", done=["validator", *dependencies[:-1]])
    app = make_app("finalizer")

    early = push(app, upload, backend.bucket_name)
    assert early.status_code == 200
    assert early.get_json() == {"outcome": "waiting", "waiting_for": [dependencies[-1]]}
    assert document(backend, upload)["status"] != "completed"

    workflow.workflow_ref(backend.db, upload.workflow_id).update({f"steps.{dependencies[-1]}.status": "done"})
    assert push(app, upload, backend.bucket_name).get_json()["outcome"] == "done"
    assert push(app, upload, backend.bucket_name).get_json()["outcome"] == "duplicate"

    doc = document(backend, upload)
    assert doc["status"] == "completed"
    assert doc["completed_at"] is not None
    final = doc["steps"]["finalizer"]
    assert (final["status"], final["attempts"], final["deliveries"]) == ("done", 1, 3)
    assert final["output"] == {"completed_steps": list(dependencies)}
    [message] = backend.published(output_topic(backend, "finalizer"), upload.workflow_id)
    assert message["data"]["workflow_id"] == upload.workflow_id


def test_concurrent_finalizer_pushes_complete_the_workflow_once(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator", *MANIFEST.agent("finalizer").depends_on])
    app = make_app("finalizer")
    outcomes = run_concurrently(lambda: push(app, upload, backend.bucket_name), 3)

    assert sorted(r.get_json()["outcome"] for r in outcomes).count("done") == 1
    assert all(r.status_code == 200 for r in outcomes)
    final = step(backend, upload, "finalizer")
    assert (final["attempts"], final["deliveries"]) == (1, 3)
    assert len(backend.published(output_topic(backend, "finalizer"), upload.workflow_id)) == 1


# --- idempotency: duplicate deliveries --------------------------------------------------------


def run_concurrently(action: Callable[[], TestResponse], count: int) -> list[TestResponse]:
    """Run action in count threads released together; every result, or the first error."""
    barrier = threading.Barrier(count)
    results: list[TestResponse] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(action())
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a delivery never returned within 60 s"
    if errors:
        raise errors[0]
    return results


def test_the_same_push_twice_in_a_row_is_processed_once(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg")
    app = make_app("validator")
    first = push(app, upload, backend.bucket_name)
    second = push(app, upload, backend.bucket_name)

    assert (first.status_code, first.get_json()["outcome"]) == (200, "done")
    assert (second.status_code, second.get_json()["outcome"]) == (200, "duplicate")
    recorded = step(backend, upload, "validator")
    assert (recorded["status"], recorded["attempts"], recorded["deliveries"]) == ("done", 1, 2)
    assert len(backend.published(output_topic(backend, "validator"), upload.workflow_id)) == 1


def test_the_same_push_twice_at_once_is_processed_once(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("large_jpeg", done=["validator"])
    app = make_app("thumbnailer")
    responses = run_concurrently(lambda: push(app, upload, backend.bucket_name), 2)

    outcomes = sorted((r.status_code, r.get_json()["outcome"]) for r in responses)
    # The loser either saw the live lease (503, redelivered later) or the finished step (200).
    assert outcomes in ([(200, "done"), (200, "duplicate")], [(200, "done"), (503, "busy")]), outcomes
    recorded = step(backend, upload, "thumbnailer")
    assert (recorded["status"], recorded["attempts"], recorded["deliveries"]) == ("done", 1, 2)
    assert recorded["output"]["width"] == 256
    assert len(backend.published(output_topic(backend, "thumbnailer"), upload.workflow_id)) == 1
    # The redelivery Pub/Sub makes after a 503 is acknowledged without redoing the work.
    assert push(app, upload, backend.bucket_name).get_json()["outcome"] == "duplicate"
    assert step(backend, upload, "thumbnailer")["attempts"] == 1


def test_every_agent_at_once_with_duplicates_keeps_the_document_consistent(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    fan_out = [a.name for a in MANIFEST.agents if a.depends_on and a.name != "finalizer"]
    upload = make_upload("plain_jpeg", done=["validator"])
    apps = {name: make_app(name) for name in fan_out}
    deliveries = [name for name in fan_out for _ in range(2)]
    # Six deliveries (each agent twice) write to one document at the same moment.
    index = iter(range(len(deliveries)))
    lock = threading.Lock()

    def deliver() -> TestResponse:
        with lock:
            name = deliveries[next(index)]
        return push(apps[name], upload, backend.bucket_name)

    responses = run_concurrently(deliver, len(deliveries))

    assert all(r.status_code in (200, 503) for r in responses), [r.get_json() for r in responses]
    doc = document(backend, upload)
    for name in fan_out:
        recorded = doc["steps"][name]
        assert (recorded["status"], recorded["attempts"], recorded["deliveries"]) == ("done", 1, 2), name
        assert set(MANIFEST.agent(name).outputs) <= set(recorded["output"]), name
        events = [e["event"] for e in doc["events"] if e["agent"] == name]
        assert sorted(events) == ["done", "started"], f"{name}: {events}"
        assert len(backend.published(output_topic(backend, name), upload.workflow_id)) == 1, name


def test_one_log_line_per_delivery_naming_ids_only(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    upload = make_upload("jpeg_with_exif_gps", done=["validator"])
    app = make_app("exif")
    with caplog.at_level(logging.INFO, logger="imageflow.agents"):
        push(app, upload, backend.bucket_name)
        push(app, upload, backend.bucket_name)

    lines = [r.getMessage() for r in caplog.records if r.name == "imageflow.agents"]
    assert len(lines) == 2, lines
    assert f"workflow={upload.workflow_id} agent=exif outcome=done status=200" in lines[0]
    assert "outcome=duplicate" in lines[1]
    assert all(" ms=" in line for line in lines)
    for line in lines:
        for private in (upload.owner, upload.object_name, images.CAMERA_MAKE):
            assert private not in line


def test_unknown_workflow_is_404(backend: Backend, make_app: MakeApp) -> None:
    ghost = Upload(unique("e2e-agents-ghost"), "nobody", "originals/nobody/x.jpg", b"")
    for name in MANIFEST.agent_names:
        response = push(make_app(name), ghost, backend.bucket_name)
        assert response.status_code == 404, name
        assert response.is_json


@pytest.mark.parametrize("record", ["complete_step", "fail_step"])
def test_a_workflow_deleted_mid_delivery_is_404_not_a_server_error(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, record: str
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    if record == "fail_step":
        backend.bucket.blob(upload.object_name).delete()  # the work fails, so the failure is recorded
    original = getattr(workflow, record)

    def deleted_first(client: firestore.Client, workflow_id: str, *args: Any, **kwargs: Any) -> None:
        workflow.workflow_ref(client, workflow_id).delete()
        original(client, workflow_id, *args, **kwargs)

    monkeypatch.setattr(workflow, record, deleted_first)
    response = push(make_app("analysis"), upload, backend.bucket_name)

    assert (response.status_code, response.get_json()["outcome"]) == (404, "unknown-workflow"), (
        response.get_json()
    )
    assert not workflow.workflow_ref(backend.db, upload.workflow_id).get().exists


# --- errors: agent, transient, publish ---------------------------------------------------------


def test_an_agent_error_fails_the_workflow_naming_the_agent(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    # The original vanished: a real processing error, not a transient one.
    backend.bucket.blob(upload.object_name).delete()
    response = push(make_app("analysis"), upload, backend.bucket_name)

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "failed"
    doc = document(backend, upload)
    assert doc["status"] == "failed"
    assert doc["failed_agent"] == "analysis"
    assert doc["reason"].startswith("analysis failed: FileNotFoundError")
    assert doc["steps"]["analysis"]["status"] == "failed"


def test_a_transient_error_releases_the_step_and_asks_for_redelivery(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    environ = {"GOOGLE_CLOUD_PROJECT": backend.project, "IMAGEFLOW_BUCKET": backend.bucket_name}
    settings = config.load(MANIFEST.agent("exif"), {**environ, "IMAGEFLOW_TOPIC_PREFIX": backend.prefix})
    calls: list[str] = []

    def flaky(job: base.Job) -> dict[str, Any]:
        calls.append(job.workflow_id)
        if len(calls) == 1:
            raise google_exceptions.ServiceUnavailable("storage briefly unavailable")
        return {"camera": None, "taken_at": None, "orientation": None}

    app = base.create_agent_app("exif", flaky, settings)
    first = push(app, upload, backend.bucket_name)
    assert first.status_code == 503
    assert first.get_json()["outcome"] == "released"
    assert step(backend, upload, "exif")["status"] == "pending"

    second = push(app, upload, backend.bucket_name)
    assert second.status_code == 200
    recorded = step(backend, upload, "exif")
    assert (recorded["status"], recorded["attempts"], recorded["deliveries"]) == ("done", 2, 2)


def test_a_failed_publish_is_retried_without_redoing_the_work(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    app = make_app("analysis")
    topic = output_topic(backend, "analysis")
    topic_path = backend.publisher.topic_path(backend.project, topic)
    backend.subscriber.delete_subscription(subscription=backend.tap(topic))
    backend.publisher.delete_topic(topic=topic_path)
    try:
        first = push(app, upload, backend.bucket_name)
    finally:
        backend.publisher.create_topic(name=topic_path)
        backend.subscriber.create_subscription(name=backend.tap(topic), topic=topic_path)

    assert first.status_code == 503
    assert first.get_json()["outcome"] == "publish-failed"
    recorded = step(backend, upload, "analysis")
    assert recorded["status"] == "done"
    assert not recorded.get("published")

    second = push(app, upload, backend.bucket_name)
    assert (second.status_code, second.get_json()["outcome"]) == (200, "republished")
    recorded = step(backend, upload, "analysis")
    assert (recorded["attempts"], recorded["published"]) == (1, True)
    assert len(backend.published(topic, upload.workflow_id)) == 1


# --- fault switches ----------------------------------------------------------------------------


def test_fault_never_fires_leaves_the_step_pending(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg")
    response = push(make_app("validator", "validator.never_fires"), upload, backend.bucket_name)
    assert response.status_code == 200
    recorded = step(backend, upload, "validator")
    assert (recorded["status"], recorded["deliveries"], recorded["attempts"]) == ("pending", 0, 0)


def test_fault_errors_fails_the_workflow(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    assert push(make_app("exif", "exif.errors"), upload, backend.bucket_name).status_code == 200
    doc = document(backend, upload)
    assert (doc["status"], doc["failed_agent"]) == ("failed", "exif")


def test_fault_wrong_output_records_an_empty_summary(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    assert push(make_app("analysis", "analysis.wrong_output"), upload, backend.bucket_name).status_code == 200
    recorded = step(backend, upload, "analysis")
    assert (recorded["status"], recorded["output"]) == ("done", {})


def test_fault_twice_does_the_work_twice(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    assert push(make_app("exif", "exif.twice"), upload, backend.bucket_name).status_code == 200
    assert step(backend, upload, "exif")["attempts"] == 2
    assert len(backend.published(output_topic(backend, "exif"), upload.workflow_id, expect=2)) == 2


@pytest.mark.parametrize("fault", ["thumbnailer.fake_done", "thumbnailer.not_written"])
def test_fault_thumbnail_reported_but_never_written(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp, fault: str
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    assert push(make_app("thumbnailer", fault), upload, backend.bucket_name).status_code == 200
    recorded = step(backend, upload, "thumbnailer")
    assert recorded["status"] == "done"
    assert (
        recorded["output"]["object"]
        == f"{promises.THUMBNAILS_PREFIX}/{upload.owner}/{upload.workflow_id}.jpg"
    )
    assert not backend.bucket.blob(recorded["output"]["object"]).exists()


def test_fault_leaks_gps_stores_the_position(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("jpeg_with_exif_gps", done=["validator"])
    assert push(make_app("exif", "exif.leaks_gps"), upload, backend.bucket_name).status_code == 200
    assert step(backend, upload, "exif")["output"]["gps"]["latitude"] == pytest.approx(52.516333)


def test_fault_accepts_bad_passes_a_broken_file_on(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("corrupt_jpeg")
    response = push(make_app("validator", "validator.accepts_bad"), upload, backend.bucket_name)
    assert response.get_json()["outcome"] == "done"
    assert document(backend, upload)["status"] == "processing"
    assert len(backend.published(output_topic(backend, "validator"), upload.workflow_id)) == 1


def test_fault_finalizer_early_completes_before_the_dependencies(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    upload = make_upload("plain_jpeg", done=["validator"])
    assert push(make_app("finalizer", "finalizer.early"), upload, backend.bucket_name).status_code == 200
    doc = document(backend, upload)
    assert doc["status"] == "completed"
    assert {doc["steps"][name]["status"] for name in MANIFEST.agent("finalizer").depends_on} == {"pending"}
    assert len(backend.published(output_topic(backend, "finalizer"), upload.workflow_id)) == 1


def test_fault_slow_runs_past_the_deadline(
    backend: Backend, make_upload: MakeUpload, make_app: MakeApp
) -> None:
    # A 0.5 s deadline keeps the test short; the fault blocks deadline + 5 s.
    short = MANIFEST.agent("analysis")
    manifest = dataclasses.replace(
        MANIFEST,
        agents=tuple(
            dataclasses.replace(a, deadline_seconds=0.5) if a is short else a for a in MANIFEST.agents
        ),
    )
    upload = make_upload("tiny_png", done=["validator"])
    assert (
        push(make_app("analysis", "analysis.slow", manifest), upload, backend.bucket_name).status_code == 200
    )
    recorded = step(backend, upload, "analysis")
    assert recorded["status"] == "done"
    assert recorded["finished_at"] - recorded["started_at"] > timedelta(seconds=5.5)
    assert len(backend.published(output_topic(backend, "analysis"), upload.workflow_id)) == 1
