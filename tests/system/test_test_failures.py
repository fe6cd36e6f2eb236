"""Test failure plans: refused on production, honoured only when switched on and only for their owner.

The agent behaviours run through the agents' Flask apps against the emulators (agent_harness.py and
this folder's conftest.py: prefixed topics, one workflow document per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from agent_harness import MANIFEST, Backend, MakeApp, MakeUpload, Upload, document, output_topic, push, step
from flask import Flask
from werkzeug.test import TestResponse

from imageflow import config, test_failures
from imageflow.agents import base
from imageflow.manifest import default as default_manifest

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


Planned = Callable[..., tuple[Upload, Flask]]


@pytest.fixture
def planned(backend: Backend, make_upload: MakeUpload, make_app: MakeApp) -> Iterator[Planned]:
    """planned(agent, mode): an upload past the validator, its owner planning agent's failure; agent's app."""
    owners: list[str] = []

    def plan(
        agent: str, mode: str, *, allowed: bool = True, done: Sequence[str] = ("validator",)
    ) -> tuple[Upload, Flask]:
        upload = make_upload(done=done)
        owners.append(upload.owner)  # cleanup registered before the write
        test_failures.plan_ref(backend.db, upload.owner).set({"agents": {agent: {"mode": mode}}})
        return upload, make_app(agent, test_failures=allowed)

    yield plan
    for owner in owners:
        test_failures.plan_ref(backend.db, owner).delete()


def answer(response: TestResponse) -> tuple[int, str]:
    """An agent's answer to a push: its status code and the outcome it names."""
    return response.status_code, response.get_json()["outcome"]


def test_planned_error_fails_only_the_owners_workflow(
    backend: Backend, make_upload: MakeUpload, planned: Planned
) -> None:
    upload, app = planned("exif", "error")
    other = make_upload(done=["validator"])

    assert answer(push(app, upload, backend.bucket_name)) == (200, "failed")
    doc = document(backend, upload)
    assert (doc["status"], doc["failed_agent"]) == ("failed", "exif")
    assert doc["steps"]["exif"]["error"].startswith("InjectedFailure: planned failure of exif")

    assert answer(push(app, other, backend.bucket_name)) == (200, "done")


def test_a_plan_is_ignored_when_the_setting_is_off(backend: Backend, planned: Planned) -> None:
    upload, app = planned("exif", "error", allowed=False)
    assert answer(push(app, upload, backend.bucket_name)) == (200, "done")


def test_transient_plan_is_released_then_recovers(backend: Backend, planned: Planned) -> None:
    upload, app = planned("analysis", "transient:1")
    assert answer(push(app, upload, backend.bucket_name)) == (503, "released")
    assert step(backend, upload, "analysis")["status"] == "pending"
    assert answer(push(app, upload, backend.bucket_name)) == (200, "done")
    recorded = step(backend, upload, "analysis")
    assert (recorded["attempts"], recorded["deliveries"]) == (2, 2)


def test_always_5xx_gives_up_on_the_last_delivery_and_fails_the_step(
    backend: Backend, planned: Planned
) -> None:
    upload, app = planned("thumbnailer", "always_5xx")
    most = MANIFEST.max_delivery_attempts
    outcomes = [answer(push(app, upload, backend.bucket_name)) for _ in range(most)]
    assert outcomes == [(503, "released")] * (most - 1) + [(503, "gave-up")]
    doc = document(backend, upload)
    assert (doc["status"], doc["failed_agent"]) == ("failed", "thumbnailer")
    assert f"gave up after {most} deliveries" in doc["steps"]["thumbnailer"]["error"]
    assert (doc["steps"]["thumbnailer"]["attempts"], doc["steps"]["thumbnailer"]["deliveries"]) == (
        most,
        most,
    )


def test_pubsubs_own_delivery_count_decides_the_last_delivery(backend: Backend, planned: Planned) -> None:
    upload, app = planned("thumbnailer", "always_5xx")
    envelope = base.envelope(upload.message(backend.bucket_name), {"workflow_id": upload.workflow_id})
    envelope["deliveryAttempt"] = MANIFEST.max_delivery_attempts
    assert answer(app.test_client().post("/", json=envelope)) == (503, "gave-up")
    assert document(backend, upload)["status"] == "failed"


def test_publish_failure_plan_republishes_without_redoing_the_work(
    backend: Backend, planned: Planned
) -> None:
    upload, app = planned("exif", "publish_fails:1")
    assert answer(push(app, upload, backend.bucket_name)) == (503, "publish-failed")
    recorded = step(backend, upload, "exif")
    assert (recorded["status"], recorded.get("published")) == ("done", None)
    assert answer(push(app, upload, backend.bucket_name)) == (200, "republished")
    recorded = step(backend, upload, "exif")
    assert (recorded["attempts"], recorded["deliveries"], recorded["published"]) == (1, 2, True)
    assert len(backend.published(output_topic(backend, "exif"), upload.workflow_id)) == 1


def test_planned_finalizer_error_fails_the_workflow_where_it_would_complete_it(
    backend: Backend, planned: Planned
) -> None:
    finalizer = MANIFEST.agent("finalizer")
    waiting, app = planned(finalizer.name, "error")
    assert answer(push(app, waiting, backend.bucket_name)) == (200, "waiting")
    assert step(backend, waiting, finalizer.name)["status"] == "pending"

    upload, app = planned(finalizer.name, "error", done=["validator", *finalizer.depends_on])
    assert answer(push(app, upload, backend.bucket_name)) == (200, "failed")
    doc = document(backend, upload)
    assert (doc["status"], doc["failed_agent"]) == ("failed", finalizer.name)
    recorded = doc["steps"][finalizer.name]
    assert recorded["error"].startswith(f"InjectedFailure: planned failure of {finalizer.name}")
    assert (recorded["status"], recorded["attempts"]) == ("failed", 1)
    assert recorded["started_at"] <= recorded["finished_at"]
    events = [e["event"] for e in doc["events"] if e["agent"] == finalizer.name]
    assert events == ["started", "failed"]

    assert answer(push(app, upload, backend.bucket_name)) == (200, "closed")
    assert document(backend, upload)["status"] == "failed"
    assert backend.published(output_topic(backend, finalizer.name), upload.workflow_id, expect=0) == []


@pytest.mark.parametrize("mode", ["transient:2", "always_5xx", "explode"])
def test_the_finalizer_refuses_a_plan_it_cannot_honour_with_a_4xx(
    backend: Backend, planned: Planned, mode: str
) -> None:
    finalizer = MANIFEST.agent("finalizer")
    upload, app = planned(finalizer.name, mode, done=["validator", *finalizer.depends_on])
    before = document(backend, upload)["status"]
    response = push(app, upload, backend.bucket_name)
    assert answer(response) == (422, "plan-refused")
    error = response.get_json()["error"]
    assert mode in error
    assert "\n" not in error
    assert document(backend, upload)["status"] == before
    assert backend.published(output_topic(backend, finalizer.name), upload.workflow_id, expect=0) == []


def test_the_finalizer_reads_the_plan_once_per_completing_delivery(
    backend: Backend, planned: Planned, monkeypatch: pytest.MonkeyPatch
) -> None:
    finalizer = MANIFEST.agent("finalizer")
    # The finalizer counts this delivery before it publishes: publish_fails:2 fails this first push.
    upload, app = planned(finalizer.name, "publish_fails:2", done=["validator", *finalizer.depends_on])
    reads: list[str] = []
    read = test_failures.agent_mode

    def counted(client: object, uid: str, agent: str) -> test_failures.Mode | None:
        reads.append(uid)
        return read(client, uid, agent)  # type: ignore[arg-type]

    monkeypatch.setattr(test_failures, "agent_mode", counted)
    assert answer(push(app, upload, backend.bucket_name)) == (503, "publish-failed")
    assert reads == [upload.owner]
