"""Test failure plans: refused on production, honoured only when switched on and only for their owner.

The agent behaviours run through the agents' Flask apps against the emulators (agent_harness.py and
this folder's conftest.py: prefixed topics, one workflow document per test).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

import pytest
from agent_harness import MANIFEST, REVISION, Backend, MakeUpload, Upload, document, output_topic, push, step
from flask import Flask

from imageflow import config, test_failures
from imageflow.agents import base
from imageflow.manifest import default as default_manifest

pytestmark = pytest.mark.system
ALLOWED = {config.TEST_FAILURES_KEY: config.TEST_FAILURES_ALLOWED}
SERVICES = [default_manifest().dashboard, *default_manifest().agents]


# --- the setting -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_every_service_refuses_test_failures_on_production(spec: object) -> None:
    with pytest.raises(config.ConfigError, match="IMAGEFLOW_TEST_FAILURES is refused on production"):
        config.load(spec, {**ALLOWED, "IMAGEFLOW_ENV": "production"})  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", ["local", "staging"])
def test_test_failures_are_allowed_on_local_and_staging_and_reported(environment: str) -> None:
    settings = config.load(MANIFEST.agent("exif"), {**ALLOWED, "IMAGEFLOW_ENV": environment})
    assert settings.test_failures is True
    assert settings.readiness()["test_failures"] is True


def test_test_failures_are_off_unless_allowed_and_a_typo_is_refused() -> None:
    off = config.load(MANIFEST.agent("exif"), {"IMAGEFLOW_ENV": "production"})
    assert (off.test_failures, off.readiness()["test_failures"]) == (False, False)
    with pytest.raises(config.ConfigError, match="must be 'allowed' or unset"):
        config.load(MANIFEST.agent("exif"), {config.TEST_FAILURES_KEY: "yes"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("error", test_failures.Mode("error")),
        ("transient", test_failures.Mode("transient", 1)),
        ("transient:3", test_failures.Mode("transient", 3)),
        ("always_5xx", test_failures.Mode("always_5xx")),
        ("publish_fails:2", test_failures.Mode("publish_fails", 2)),
    ],
)
def test_agent_modes_parse(raw: str, expected: test_failures.Mode) -> None:
    assert test_failures.parse_mode(raw, test_failures.AGENT_MODES) == expected


@pytest.mark.parametrize("raw", ["explode", "error:2", "transient:0", "transient:x", 3, "store_fails"])
def test_unknown_or_malformed_agent_modes_are_refused(raw: object) -> None:
    with pytest.raises(test_failures.PlanError):
        test_failures.parse_mode(raw, test_failures.AGENT_MODES)


# --- agents against the emulators --------------------------------------------------------------


def agent_app(backend: Backend, name: str, *, allowed: bool = True) -> Flask:
    """An agent's app on this module's topics, with the test failures setting on or off."""
    environ = {
        "GOOGLE_CLOUD_PROJECT": backend.project,
        "IMAGEFLOW_BUCKET": backend.bucket_name,
        "K_REVISION": REVISION,
        "IMAGEFLOW_TOPIC_PREFIX": backend.prefix,
        **(ALLOWED if allowed else {}),
    }
    app: Flask = importlib.import_module(MANIFEST.agent(name).module).create_app(
        config.load(MANIFEST.agent(name), environ)
    )
    return app


PlanFor = Callable[[Upload, str, str], None]


@pytest.fixture
def plan_for(backend: Backend) -> Iterator[PlanFor]:
    """plan_for(upload, agent, mode): a failure plan for the upload's owner, deleted after the test."""
    owners: list[str] = []

    def plan(upload: Upload, agent: str, mode: str) -> None:
        owners.append(upload.owner)  # cleanup registered before the write
        test_failures.plan_ref(backend.db, upload.owner).set({"agents": {agent: {"mode": mode}}})

    yield plan
    for owner in owners:
        test_failures.plan_ref(backend.db, owner).delete()


def test_planned_error_fails_only_the_owners_workflow(
    backend: Backend,
    make_upload: MakeUpload,
    plan_for: PlanFor,
) -> None:
    planned, other = make_upload(done=["validator"]), make_upload(done=["validator"])
    plan_for(planned, "exif", "error")
    app = agent_app(backend, "exif")

    failed = push(app, planned, backend.bucket_name)
    assert (failed.status_code, failed.get_json()["outcome"]) == (200, "failed")
    doc = document(backend, planned)
    assert (doc["status"], doc["failed_agent"]) == ("failed", "exif")
    assert doc["steps"]["exif"]["error"].startswith("InjectedFailure: planned failure of exif")

    untouched = push(app, other, backend.bucket_name)
    assert (untouched.status_code, untouched.get_json()["outcome"]) == (200, "done")


def test_a_plan_is_ignored_when_the_setting_is_off(
    backend: Backend,
    make_upload: MakeUpload,
    plan_for: PlanFor,
) -> None:
    upload = make_upload(done=["validator"])
    plan_for(upload, "exif", "error")
    response = push(agent_app(backend, "exif", allowed=False), upload, backend.bucket_name)
    assert (response.status_code, response.get_json()["outcome"]) == (200, "done")


def test_transient_plan_is_released_then_recovers(
    backend: Backend,
    make_upload: MakeUpload,
    plan_for: PlanFor,
) -> None:
    upload = make_upload(done=["validator"])
    plan_for(upload, "analysis", "transient:1")
    app = agent_app(backend, "analysis")
    first = push(app, upload, backend.bucket_name)
    assert (first.status_code, first.get_json()["outcome"]) == (503, "released")
    assert step(backend, upload, "analysis")["status"] == "pending"
    second = push(app, upload, backend.bucket_name)
    assert (second.status_code, second.get_json()["outcome"]) == (200, "done")
    recorded = step(backend, upload, "analysis")
    assert (recorded["attempts"], recorded["deliveries"]) == (2, 2)


def test_always_5xx_gives_up_on_the_last_delivery_and_fails_the_step(
    backend: Backend,
    make_upload: MakeUpload,
    plan_for: PlanFor,
) -> None:
    upload = make_upload(done=["validator"])
    plan_for(upload, "thumbnailer", "always_5xx")
    app = agent_app(backend, "thumbnailer")
    most = MANIFEST.max_delivery_attempts
    outcomes = [push(app, upload, backend.bucket_name) for _ in range(most)]
    assert [(r.status_code, r.get_json()["outcome"]) for r in outcomes] == [(503, "released")] * (
        most - 1
    ) + [(503, "gave-up")]
    doc = document(backend, upload)
    assert (doc["status"], doc["failed_agent"]) == ("failed", "thumbnailer")
    assert f"gave up after {most} deliveries" in doc["steps"]["thumbnailer"]["error"]
    assert (doc["steps"]["thumbnailer"]["attempts"], doc["steps"]["thumbnailer"]["deliveries"]) == (
        most,
        most,
    )


def test_pubsubs_own_delivery_count_decides_the_last_delivery(
    backend: Backend,
    make_upload: MakeUpload,
    plan_for: PlanFor,
) -> None:
    upload = make_upload(done=["validator"])
    plan_for(upload, "thumbnailer", "always_5xx")
    envelope = base.envelope(upload.message(backend.bucket_name), {"workflow_id": upload.workflow_id})
    envelope["deliveryAttempt"] = MANIFEST.max_delivery_attempts
    response = agent_app(backend, "thumbnailer").test_client().post("/", json=envelope)
    assert (response.status_code, response.get_json()["outcome"]) == (503, "gave-up")
    assert document(backend, upload)["status"] == "failed"


def test_publish_failure_plan_republishes_without_redoing_the_work(
    backend: Backend,
    make_upload: MakeUpload,
    plan_for: PlanFor,
) -> None:
    upload = make_upload(done=["validator"])
    plan_for(upload, "exif", "publish_fails:1")
    app = agent_app(backend, "exif")
    first = push(app, upload, backend.bucket_name)
    assert (first.status_code, first.get_json()["outcome"]) == (503, "publish-failed")
    recorded = step(backend, upload, "exif")
    assert (recorded["status"], recorded.get("published")) == ("done", None)
    second = push(app, upload, backend.bucket_name)
    assert (second.status_code, second.get_json()["outcome"]) == (200, "republished")
    recorded = step(backend, upload, "exif")
    assert (recorded["attempts"], recorded["deliveries"], recorded["published"]) == (1, 2, True)
    assert len(backend.published(output_topic(backend, "exif"), upload.workflow_id)) == 1
