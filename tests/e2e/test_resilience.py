"""Failure paths of a release: one agent, or the dashboard, fails for this test's own uploads only.

Each scenario writes a failure plan for its own test user (fixtures/failures.py), uploads, and holds
the rest of the system to its promises: a failed workflow names the agent within that agent's
deadline, never completes, leaves no step running, never runs the finalizer, and the page says so;
transient failures are redelivered a bounded number of times and then recover, or end in the
dead-letter topic with the workflow failed; a failed publish is re-published without redoing the
work; an upload the dashboard could not store or queue is never reported as accepted. The
dead-letter witness is shown not to be vacuous: a message no agent can ever take really reaches it.

The scenarios share one worker: while one agent's pushes keep failing, the Pub/Sub emulator is slow
to redeliver on the other subscriptions too, so two of these at once delay each other past their
deadlines (seen in parallel runs: the unknown workflow's message got two deliveries of five in 180 s
while another scenario's agent answered 5xx).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import allure
import pytest
import requests
from contract_checks import only_these_stored
from google.cloud import storage
from pipeline_checks import UI_CATCH_UP_MS, every_agent_once, no_dead_letters, published_once, views_agree
from playwright.sync_api import expect

from fixtures.diagnosis import ready_after_seconds, unpublished
from fixtures.failures import FailurePlans
from fixtures.firestore import Document, WatchResult, WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.pubsub import Taps
from fixtures.reporting import labels
from fixtures.target import Target, unique_name
from fixtures.timeline import as_datetime
from fixtures.uploads import ApiSession
from fixtures.users import TestUser, UserFactory
from imageflow import clients, test_failures
from imageflow.manifest import Manifest
from pages.dashboard import DashboardPage

pytestmark = [
    pytest.mark.destructive,
    pytest.mark.resilience,
    pytest.mark.one_worker("failing pushes slow the emulator's redeliveries for every scenario here"),
]
# Pub/Sub backs off between failed pushes (about 15 s for 5 attempts on the emulator; longer on Cloud).
DEAD_LETTER_TIMEOUT_SECONDS = 180
Severity = allure.severity_level

# Slack on top of a manifest deadline for the writes and pushes around the failing step itself.
MARGIN_SECONDS = 5.0
# What Pub/Sub's redelivery backoff adds (1 s doubling to 10 s between the 5 deliveries: about 15 s).
REDELIVERY_BACKOFF_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 15


def dependants(manifest: Manifest, agent: str) -> set[str]:
    """Every agent that waits, directly or not, for agent."""
    found: set[str] = set()
    for spec in manifest.agents:
        if agent in spec.depends_on:
            found |= {spec.name, *dependants(manifest, spec.name)}
    return found


def last_agent(manifest: Manifest) -> str:
    """The agent nobody waits for: the one that completes the workflow (the finalizer)."""
    return next(a.name for a in manifest.agents if not dependants(manifest, a.name))


def settled_after_failure(manifest: Manifest) -> Callable[[Document | None], bool]:
    """Failed, settled, and every message the finalizer will ever get has reached it.

    The finalizer counts each push it gets even for a closed workflow: once it has seen one per
    published sibling, nothing more can happen to the workflow (waiting on an event, not a sleep).
    """
    finalizer = last_agent(manifest)
    feeders = manifest.agent(finalizer).depends_on

    def until(document: Document | None) -> bool:
        if document is None or document.get("status") != "failed" or unpublished(document):
            return False
        steps = document.get("steps") or {}
        if any((steps.get(name) or {}).get("status") == "running" for name in feeders):
            return False
        published = sum(1 for name in feeders if (steps.get(name) or {}).get("published"))
        return int((steps.get(finalizer) or {}).get("deliveries") or 0) >= published

    return until


def took(document: Document, manifest: Manifest, agent: str) -> float:
    """Seconds from agent's trigger being there (its last dependency done, or the upload) to its end."""
    steps = document.get("steps") or {}
    starts = [as_datetime((steps.get(d) or {}).get("finished_at")) for d in manifest.agent(agent).depends_on]
    ready = max((t for t in starts if t), default=None) or as_datetime(document.get("created_at"))
    finished = as_datetime((steps.get(agent) or {}).get("finished_at"))
    assert isinstance(ready, datetime), f"no time {agent}'s trigger was there"
    assert isinstance(finished, datetime), f"{agent} has no finish time"
    return (finished - ready).total_seconds()


def failed_as_promised(result: WatchResult, manifest: Manifest, agent: str, budget: float) -> None:
    """Failed naming agent within budget seconds of its trigger; no step running, no dependant run."""
    document = result.document or {}
    with allure.step(f"Workflow {result.workflow_id} failed naming {agent}, the rest as promised"):
        assert result.reached, result.message
        assert result.status == "failed", result.message
        assert document.get("failed_agent") == agent, result.message
        assert agent in str(document.get("reason")), result.message
        assert result.step(agent).get("status") == "failed", result.message
        assert not result.diagnosis.still_running, result.message
        elapsed = took(document, manifest, agent)
        with allure.step(f"{agent} failed {elapsed:.1f}s after its trigger (budget {budget:g}s)"):
            assert elapsed <= budget, f"{agent} failed {elapsed:.1f}s after its trigger (budget {budget:g}s)"
        for name in dependants(manifest, agent):
            step = result.step(name)
            assert step.get("status") in ("pending", "skipped"), f"dependant {name} ran: {step}"
            assert not step.get("attempts"), f"dependant {name} did work: {step}"
        ran = {e.get("agent") for e in document.get("events") or [] if e.get("event") in ("started", "done")}
        assert not ran & dependants(manifest, agent), (
            f"dependants ran: {sorted(ran & dependants(manifest, agent))}"
        )


def page_shows_failed(dashboard: DashboardPage, result: WatchResult, agent: str) -> None:
    """Page, API and document agree; the page says failed, names the agent and marks its row failed."""
    workflow = views_agree(dashboard.page, result)
    with allure.step(f"The workflow page of {result.workflow_id} shows {agent} failed"):
        expect(workflow.status).to_have_text("failed", timeout=UI_CATCH_UP_MS)
        expect(workflow.reason).to_be_visible(timeout=UI_CATCH_UP_MS)
        expect(workflow.reason).to_contain_text(agent)
        expect(workflow.step(agent)).to_have_attribute("data-status", "failed", timeout=UI_CATCH_UP_MS)
        expect(workflow.step_status(agent)).to_have_text("failed")
        expect(workflow.thumbnail).to_have_count(0)


def released_events(document: Document, agent: str) -> int:
    """How many times agent gave its step back after a transient error."""
    return sum(
        1 for e in document.get("events") or [] if e.get("agent") == agent and e.get("event") == "released"
    )


@dataclass
class Scenario:
    """One agent failure scenario: its user's page, API session and plans, the watcher, taps and manifest."""

    dashboard: DashboardPage
    session: ApiSession
    user: TestUser
    plans: FailurePlans
    make_image: MakeImage
    watcher: WorkflowWatcher
    taps: Taps
    manifest: Manifest

    def plan(self, agent: str, mode: str) -> None:
        """Make agent fail as mode says for this user's uploads."""
        self.plans.plan(self.user, agents={agent: mode})

    def upload(self) -> str:
        """Upload one image as this user, insisting it was accepted; its workflow id."""
        return self.session.upload_one(self.make_image("plain_jpeg").multipart())

    def failed(self, workflow_id: str, agent: str, slack: float) -> WatchResult:
        """Watched until settled after agent's failure, held to failed_as_promised (deadline plus slack)."""
        budget = self.manifest.agent(agent).deadline_seconds + slack
        result = self.watcher.watch(
            workflow_id,
            until=settled_after_failure(self.manifest),
            timeout=ready_after_seconds(self.manifest)[agent] + budget,
        )
        failed_as_promised(result, self.manifest, agent, budget)
        return result

    def recovered(self, workflow_id: str) -> WatchResult:
        """Watched to completion through redeliveries; each output published once, nothing dead-lettered."""
        result = self.watcher.watch(
            workflow_id, timeout=self.watcher.deadline_seconds + REDELIVERY_BACKOFF_SECONDS
        )
        assert result.completed, result.message
        published_once(self.taps, self.manifest, [workflow_id])
        no_dead_letters(self.taps, self.manifest, [workflow_id])
        return result


@pytest.fixture
def scenario(
    logged_in_page: DashboardPage,
    logged_in_session: ApiSession,
    new_user: TestUser,
    failure_plans: FailurePlans,
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
) -> Scenario:
    """The logged-in test user's failure scenario."""
    return Scenario(
        logged_in_page,
        logged_in_session,
        new_user,
        failure_plans,
        make_image,
        workflow_watcher,
        pubsub_taps,
        pipeline_manifest,
    )


@labels("Resilience", "An agent that raises fails the workflow, and only this user's", Severity.CRITICAL)
def test_agent_error_fails_only_the_planned_users_workflow_naming_the_agent(
    scenario: Scenario, user_factory: UserFactory, api_session: Callable[[TestUser], ApiSession]
) -> None:
    agent = "thumbnailer"
    scenario.plan(agent, "error")
    bystander = api_session(user_factory())
    bystander_id = bystander.upload_one(scenario.make_image("plain_jpeg").multipart())
    workflow_id = scenario.upload()

    result = scenario.failed(workflow_id, agent, MARGIN_SECONDS)

    assert "InjectedFailure" in str(result.step(agent).get("error")), result.message
    assert result.step(agent).get("attempts") == 1, result.message
    page_shows_failed(scenario.dashboard, result, agent)
    no_dead_letters(scenario.taps, scenario.manifest, [workflow_id])
    with allure.step("The bystander's upload, beside it on the same stack, completed untouched"):
        bystanding = scenario.watcher.watch(bystander_id)
        assert bystanding.completed, bystanding.message
        every_agent_once(bystanding, scenario.manifest)


@labels("Resilience", "An agent failing transiently is redelivered and recovers", Severity.CRITICAL)
def test_agent_answering_5xx_twice_is_redelivered_and_the_workflow_completes(scenario: Scenario) -> None:
    agent, failures = "exif", 2
    scenario.plan(agent, f"transient:{failures}")
    workflow_id = scenario.upload()

    result = scenario.recovered(workflow_id)

    step = result.step(agent)
    with allure.step(f"{agent} was delivered {failures + 1} times, gave the step back {failures} times"):
        assert (step.get("status"), step.get("attempts"), step.get("deliveries")) == (
            "done",
            failures + 1,
            failures + 1,
        ), result.message
        assert released_events(result.document or {}, agent) == failures, result.message
    others = {n: result.step(n).get("attempts") for n in scenario.manifest.agent_names if n != agent}
    assert set(others.values()) == {1}, f"other agents' attempts: {others}"
    assert took(result.document or {}, scenario.manifest, agent) <= (
        scenario.manifest.agent(agent).deadline_seconds + REDELIVERY_BACKOFF_SECONDS
    ), result.message
    views_agree(scenario.dashboard.page, result)


@labels("Resilience", "An agent that always answers 5xx is dead-lettered and fails", Severity.CRITICAL)
def test_agent_always_5xx_is_dead_lettered_after_max_deliveries_and_fails_the_workflow(
    scenario: Scenario, target: Target
) -> None:
    agent, manifest = "analysis", scenario.manifest
    most = manifest.max_delivery_attempts
    scenario.plan(agent, "always_5xx")
    workflow_id = scenario.upload()

    result = scenario.failed(workflow_id, agent, REDELIVERY_BACKOFF_SECONDS)

    step = result.step(agent)
    with allure.step(f"{agent} was delivered exactly {most} times (max_delivery_attempts), then gave up"):
        assert (step.get("deliveries"), step.get("attempts")) == (most, most), result.message
        assert f"gave up after {most} deliveries" in str(step.get("error")), result.message
        assert released_events(result.document or {}, agent) == most - 1, result.message
    dead = scenario.taps.wait_for(manifest.dead_letter_topic, workflow_id, count=1, timeout=60)
    with allure.step("The message that never succeeded is on the dead-letter topic, once"):
        assert len(dead) == 1, f"dead letters for {workflow_id}: {[dict(m.attributes) for m in dead]}"
        attributes = dead[0].attributes
        source = attributes.get("CloudPubSubDeadLetterSourceSubscription", "").removeprefix(target.lane)
        trigger = manifest.agent(agent).triggers[0]
        assert source.endswith(manifest.subscription_name(agent, trigger)), attributes
        assert attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") == str(most), attributes
    page_shows_failed(scenario.dashboard, result, agent)


@labels("Resilience", "A failed publish is re-published without redoing the work", Severity.CRITICAL)
def test_agent_publish_failing_once_is_republished_without_redoing_the_work(scenario: Scenario) -> None:
    agent = "validator"
    scenario.plan(agent, "publish_fails:1")
    workflow_id = scenario.upload()

    result = scenario.recovered(workflow_id)

    step = result.step(agent)
    with allure.step(f"{agent} did its work once over two deliveries and published once"):
        assert (step.get("attempts"), step.get("deliveries"), step.get("published")) == (1, 2, True), (
            result.message
        )
    every_agent_once(result, scenario.manifest)
    views_agree(scenario.dashboard.page, result)


@labels("Resilience", "A finalizer that raises never reports the workflow completed", Severity.CRITICAL)
def test_finalizer_error_fails_the_workflow_which_is_never_reported_completed(scenario: Scenario) -> None:
    manifest = scenario.manifest
    agent = last_agent(manifest)
    scenario.plan(agent, "error")
    workflow_id = scenario.upload()

    result = scenario.failed(workflow_id, agent, MARGIN_SECONDS)

    assert "InjectedFailure" in str(result.step(agent).get("error")), result.message
    assert result.step(agent).get("attempts") == 1, result.message
    with allure.step("Every other agent did its work once; the workflow's completion was never announced"):
        feeders = [name for name in manifest.agent_names if name != agent]
        others = {n: (result.step(n).get("status"), result.step(n).get("attempts")) for n in feeders}
        assert others == dict.fromkeys(others, ("done", 1)), result.message
        assert not (result.document or {}).get("completed_at"), result.message
        completion_topic = manifest.agent(agent).output_topic
        scenario.taps.drain([completion_topic])
        announced = scenario.taps.messages(completion_topic, workflow_id)
        assert announced == [], f"{completion_topic} announced a failed workflow: {announced}"
    page_shows_failed(scenario.dashboard, result, agent)
    no_dead_letters(scenario.taps, manifest, [workflow_id])


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("store_fails", "could not be stored"), ("publish_fails", "could not be queued for processing")],
)
@labels("Resilience", "An upload the dashboard could not keep is never shown accepted", Severity.BLOCKER)
def test_dashboard_failing_to_store_or_queue_never_reports_an_upload_accepted(
    mode: str,
    reason: str,
    logged_in_page: DashboardPage,
    new_user: TestUser,
    api_session: Callable[[TestUser], ApiSession],
    failure_plans: FailurePlans,
    make_image: MakeImage,
    upload_bucket: storage.Bucket,
    pubsub_taps: Taps,
    pipeline_manifest: Manifest,
    target: Target,
) -> None:
    failure_plans.plan(new_user, dashboard=mode)
    image = make_image("plain_jpeg")
    dashboard = logged_in_page.upload([image.path])
    with allure.step("The form says the upload failed and lists nothing"):
        expect(dashboard.upload_error(reason)).to_be_visible()
        expect(dashboard.upload_error("Please try again")).to_be_visible()
        expect(dashboard.flash.message(f"Uploaded {image.filename}")).to_have_count(0)
        expect(dashboard.upload_rows).to_have_count(0)

    response = api_session(new_user).upload([(image.filename, image.data, image.content_type)])
    with allure.step("The API answers 503 with the reason, accepting nothing"):
        assert response.status_code == 503, f"{response.status_code}: {response.text[:300]}"
        body = response.json()
        assert body["accepted"] == [], body
        assert [r["filename"] for r in body["rejected"]] == [image.filename], body
        assert reason in body["rejected"][0]["reason"], body

    with allure.step("No workflow document, stored original or upload message is left behind"):
        only_these_stored(new_user, upload_bucket, target, [])
        pubsub_taps.drain([pipeline_manifest.upload_topic])
        queued = [
            m
            for m in pubsub_taps.messages(pipeline_manifest.upload_topic)
            if isinstance(m.data, dict) and m.data.get("owner") == new_user.uid
        ]
        assert queued == [], f"upload messages of a refused upload: {queued}"
        listed = api_session(new_user).uploads()
        assert (listed.status_code, listed.json()) == (200, [])


@labels("Resilience", "Clients can neither read nor write failure plans", Severity.BLOCKER)
def test_failure_plans_are_out_of_every_clients_reach(
    new_user: TestUser,
    failure_plans: FailurePlans,
    id_token_for: Callable[[TestUser], str],
    target: Target,
) -> None:
    failure_plans.plan(new_user, agents={"validator": "error"})
    url = f"{target.firestore_rest_url}/{test_failures.COLLECTION}/{new_user.uid}"
    token = {"Authorization": f"Bearer {id_token_for(new_user)}"}
    empty_plan: dict[str, Any] = {"fields": {"agents": {"mapValue": {"fields": {}}}}}
    with allure.step(
        f"Read, overwrite and delete {test_failures.COLLECTION}/<own uid> as the user and anonymously"
    ):
        answers = {
            f"{who} {verb}": requests.request(
                verb,
                url,
                headers=headers,
                json=empty_plan if verb == "PATCH" else None,
                timeout=HTTP_TIMEOUT_SECONDS,
            ).status_code
            for who, headers in (("owner", token), ("anonymous", {}))
            for verb in ("GET", "PATCH", "DELETE")
        }
    assert answers == dict.fromkeys(answers, 403), answers
    still = test_failures.agent_mode(failure_plans.client, new_user.uid, "validator")
    assert still == test_failures.Mode("error"), f"the plan changed under a client's request: {still}"


@labels("Pub/Sub", "A message that can never succeed is dead-lettered", Severity.CRITICAL)
def test_message_for_unknown_workflow_is_dead_lettered_after_max_attempts(
    pubsub_taps: Taps, pipeline_manifest: Manifest, target: Target
) -> None:
    workflow_id = unique_name("dl")
    upload_topic = pubsub_taps.topics[pipeline_manifest.upload_topic]
    payload = {"workflow_id": workflow_id, "owner": "nobody", "bucket": target.bucket, "object": "missing"}
    with allure.step(f"Publish a message for the unknown workflow {workflow_id} on {upload_topic}"):
        clients.publish(target.project, upload_topic, json.dumps(payload).encode(), workflow_id=workflow_id)

    dead = pubsub_taps.wait_for(
        pipeline_manifest.dead_letter_topic, workflow_id, count=1, timeout=DEAD_LETTER_TIMEOUT_SECONDS
    )

    assert dead, f"nothing reached {pipeline_manifest.dead_letter_topic} for {workflow_id}"
    triggered = {
        pipeline_manifest.subscription_name(agent.name, pipeline_manifest.upload_topic)
        for agent in pipeline_manifest.agents
        if pipeline_manifest.upload_topic in agent.triggers
    }
    sources = {m.attributes.get("CloudPubSubDeadLetterSourceSubscription", "") for m in dead}
    assert {s.removeprefix(target.lane) for s in sources} <= triggered, f"dead-lettered from {sources}"
    attempts = {m.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") for m in dead}
    assert attempts == {str(pipeline_manifest.max_delivery_attempts)}, f"delivery counts {attempts}"
