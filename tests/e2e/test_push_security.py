"""Agents accept a push only from the push identity, and refuse an oversized body, changing nothing.

A push straight at an agent's URL, naming a workflow the test owns, is what an attacker who knows
(or guesses) a workflow id would send. On Cloud Run the platform's IAM check refuses it (401/403:
the agents are not public, the post-launch checklist proves it); on the local stack the agent
refuses it unless it carries the verification token the stack's push subscriptions send.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import allure
import pytest
import requests
from pipeline_checks import completed

from fixtures.firestore import WorkflowWatcher
from fixtures.images import MakeImage
from fixtures.reporting import labels
from fixtures.scrubber import register_secret
from fixtures.target import Target, stack_push_token
from fixtures.uploads import ApiSession, accepted_ids
from fixtures.users import TestUser
from imageflow.config import PUSH_TOKEN_PARAM
from imageflow.manifest import Manifest
from stack import localsecrets

pytestmark = pytest.mark.security

HTTP_TIMEOUT_SECONDS = 15
# What refuses an unauthenticated push: the agent itself locally, Cloud Run's IAM check elsewhere.
REFUSED = (401, 403)
# Past the agents' 64 KiB limit, well within what the router and Cloud Run take (32 MiB).
OVERSIZED_BYTES = 1024 * 1024


def push_envelope(workflow_id: str, owner: str, padding: int = 0) -> bytes:
    """A well-formed Pub/Sub push naming the workflow (padded in an attribute to a given size)."""
    data = base64.b64encode(json.dumps({"workflow_id": workflow_id, "owner": owner}).encode()).decode()
    attributes = {"pad": "a" * padding} if padding else {}
    message = {"data": data, "attributes": attributes, "messageId": f"push-security-{workflow_id}"}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


def local_push_token(target: Target) -> str:
    """The local stack's push verification token (the positive half needs it; only local has one)."""
    if not target.is_local:
        pytest.skip("only the local stack's push token is known to the suite (Cloud Run pushes use OIDC)")
    token = stack_push_token()
    assert token, f"the local stack has no {localsecrets.PUSH_TOKEN_KEY} in its secrets file"
    register_secret(token, "the local push verification token")
    return token


def post(url: str, body: bytes | Iterator[bytes], params: dict[str, str] | None = None) -> requests.Response:
    """POST a push body to an agent (a generator body goes chunked)."""
    return requests.post(
        url + "/",
        data=body,
        params=params,
        headers={"Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def in_chunks(body: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    """The body as a stream of chunks (Transfer-Encoding: chunked, no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
def owned_workflow(
    new_user: TestUser,
    api_session: Callable[[TestUser], ApiSession],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
) -> tuple[str, str]:
    """(workflow id, owner uid) of a completed upload of this test's own user."""
    image = make_image("tiny_png")
    response = api_session(new_user).upload([image.multipart()])
    assert response.status_code == 201, f"upload answered {response.status_code}: {response.text[:300]}"
    workflow_id = accepted_ids(response)[image.filename]
    completed(workflow_watcher, workflow_id)
    return workflow_id, new_user.uid


def document(watcher: WorkflowWatcher, workflow_id: str) -> dict[str, Any]:
    """The whole workflow document as it is now."""
    found = watcher.read(workflow_id)
    assert found is not None, f"workflow {workflow_id} vanished"
    return dict(found)


# Pub/Sub delivers at least once: a real redelivery may still bump a step's `deliveries` after a
# workflow settled, exactly what an accepted push would do. A round (read, pushes, read) is
# repeated up to this many times: an agent that accepts changes the document in every round,
# a stray redelivery in one.
ROUNDS = 3


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Which fields differ (steps by agent and field), for the failure message."""
    changed = [
        key
        for key in sorted(set(before) | set(after))
        if key != "steps" and before.get(key) != after.get(key)
    ]
    steps_before, steps_after = before.get("steps") or {}, after.get("steps") or {}
    for agent in sorted(set(steps_before) | set(steps_after)):
        one, two = steps_before.get(agent) or {}, steps_after.get(agent) or {}
        changed += [f"steps.{agent}.{f}" for f in sorted(set(one) | set(two)) if one.get(f) != two.get(f)]
    return changed


def changes_in_every_round(
    watcher: WorkflowWatcher, workflow_id: str, push: Callable[[], None]
) -> list[list[str]]:
    """Run the pushes between two whole-document reads; [] once a round changed nothing."""
    seen: list[list[str]] = []
    for _ in range(ROUNDS):
        before = document(watcher, workflow_id)
        push()
        after = document(watcher, workflow_id)
        if after == before:
            return []
        seen.append(differences(before, after))
    return seen


@pytest.fixture
def agent_urls(target: Target, pipeline_manifest: Manifest) -> dict[str, str]:
    """Every manifest agent's URL on the target (pushes go straight there); a skip where it names none."""
    urls = target.agent_urls(pipeline_manifest.agent_names)
    if not urls:
        pytest.skip(f"target {target.name} names no agent URL (pass them with the deploy tool's overrides)")
    return urls


def every_agent_refuses(
    urls: Mapping[str, str],
    step: str,
    send: Callable[[str], tuple[int, int]],
    allowed: tuple[int, ...],
    what: str,
) -> Callable[[], None]:
    """One round of pushes: send(url) at every agent (two answers each), every status code one of allowed."""

    def push() -> None:
        answers: dict[str, tuple[int, int]] = {}
        for name, url in urls.items():
            with allure.step(step.format(name=name)):
                answers[name] = send(url)
        wrong = {name: codes for name, codes in answers.items() if not set(codes) <= set(allowed)}
        assert not wrong, f"agents did not refuse {what} with {allowed} (status codes): {wrong}"

    return push


@pytest.mark.smoke
@labels(
    "Push security",
    "A push without the push identity is refused by every agent and changes nothing",
    allure.severity_level.BLOCKER,
)
def test_a_push_without_the_push_identity_is_refused_and_changes_nothing(
    agent_urls: dict[str, str], owned_workflow: tuple[str, str], workflow_watcher: WorkflowWatcher
) -> None:
    workflow_id, owner = owned_workflow
    body = push_envelope(workflow_id, owner)
    push = every_agent_refuses(
        agent_urls,
        "Push at {name} without a token, then with a wrong one",
        lambda url: (post(url, body).status_code, post(url, body, {PUSH_TOKEN_PARAM: "wrong"}).status_code),
        REFUSED,
        "an unauthenticated push",
    )

    changed = changes_in_every_round(workflow_watcher, workflow_id, push)
    assert not changed, f"unauthenticated pushes changed the workflow document in every round: {changed}"


@pytest.mark.smoke
@labels("Push security", "An oversized push body is refused by every agent", allure.severity_level.CRITICAL)
def test_an_oversized_push_is_refused_and_changes_nothing(
    target: Target,
    agent_urls: dict[str, str],
    owned_workflow: tuple[str, str],
    workflow_watcher: WorkflowWatcher,
) -> None:
    workflow_id, owner = owned_workflow
    # Locally the token is sent too, so only the size can be the reason; Cloud Run's IAM check
    # refuses the unauthenticated request before the size matters, which is refused all the same.
    params = {PUSH_TOKEN_PARAM: local_push_token(target)} if target.is_local else None
    body = push_envelope(workflow_id, owner, padding=OVERSIZED_BYTES)
    push = every_agent_refuses(
        agent_urls,
        f"Push {len(body)} bytes at {{name}}, with a Content-Length, then chunked",
        lambda url: (post(url, body, params).status_code, post(url, in_chunks(body), params).status_code),
        (413,) if target.is_local else (413, *REFUSED),
        f"a {len(body)}-byte push",
    )

    changed = changes_in_every_round(workflow_watcher, workflow_id, push)
    assert not changed, f"oversized pushes changed the workflow document in every round: {changed}"


@labels(
    "Push security",
    "A push with the push identity is accepted beside a refused one",
    allure.severity_level.CRITICAL,
)
def test_a_push_with_the_token_is_accepted_beside_one_without(
    target: Target,
    pipeline_manifest: Manifest,
    owned_workflow: tuple[str, str],
    workflow_watcher: WorkflowWatcher,
) -> None:
    token = local_push_token(target)
    urls = target.agent_urls(pipeline_manifest.agent_names)
    agent = pipeline_manifest.agent_names[0]
    assert agent in urls, f"the local stack has no URL for agent {agent}"
    workflow_id, owner = owned_workflow
    body = push_envelope(workflow_id, owner)

    def push_without() -> None:
        with allure.step(f"Push at {agent} without the token"):
            refused = post(urls[agent], body)
        assert refused.status_code in REFUSED, f"{agent} took a push without the token: {refused.status_code}"

    changed = changes_in_every_round(workflow_watcher, workflow_id, push_without)
    assert not changed, f"a refused push changed the document in every round: {changed}"
    before = document(workflow_watcher, workflow_id)
    with allure.step(f"The same push at {agent} with the token"):
        accepted = post(urls[agent], body, {PUSH_TOKEN_PARAM: token})
    # The step is done: the agent acknowledges a duplicate, and counts the delivery it saw.
    assert accepted.status_code == 200, f"{agent} refused a push with the token: {accepted.status_code}"
    assert accepted.json().get("outcome") == "duplicate", accepted.text[:300]
    assert token not in accepted.text
    after = document(workflow_watcher, workflow_id)
    deliveries = (before["steps"][agent].get("deliveries") or 0, after["steps"][agent].get("deliveries") or 0)
    # At least the one it acknowledged (a real redelivery may land in between, never fewer).
    assert deliveries[1] >= deliveries[0] + 1, f"{agent} deliveries went {deliveries[0]} -> {deliveries[1]}"
    assert after["steps"][agent]["attempts"] == before["steps"][agent]["attempts"], "the work was redone"
