"""The workflow document (one per upload) and the atomic read-decide-write steps that move it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.api_core.exceptions import Aborted, FailedPrecondition, NotFound
from google.cloud import firestore

from imageflow.manifest import Manifest

COLLECTION = "workflows"
T = TypeVar("T")


class Status(enum.StrEnum):
    """Overall status of a workflow."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.REJECTED})


class StepStatus(enum.StrEnum):
    """Status of one agent's step."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class Claim(enum.StrEnum):
    """What an agent may do with a delivery, decided atomically against concurrent deliveries."""

    RUN = "run"  # the step is ours: do the work
    ALREADY_DONE = "already-done"  # a duplicate delivery: acknowledge, do nothing
    BUSY = "busy"  # another delivery holds a live lease: ask for redelivery later
    CLOSED = "closed"  # the workflow already ended (failed or rejected): acknowledge
    UNKNOWN = "unknown"  # no such workflow, or no such step in it


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def new_document(
    workflow_id: str, owner: str, image: Mapping[str, Any], manifest: Manifest
) -> dict[str, Any]:
    """A fresh workflow document with one pending step per agent of the manifest."""
    created = now()
    return {
        "workflow_id": workflow_id,
        "owner": owner,
        "image": dict(image),
        "status": Status.PENDING.value,
        "reason": None,
        "failed_agent": None,
        "pipeline": manifest.name,
        "agents": list(manifest.agent_names),
        "created_at": created,
        "updated_at": created,
        "completed_at": None,
        "steps": {
            name: {
                "status": StepStatus.PENDING.value,
                "started_at": None,
                "finished_at": None,
                "attempts": 0,
                "deliveries": 0,
                "revision": None,
                "output": None,
                "error": None,
            }
            for name in manifest.agent_names
        },
        "events": [{"at": created, "agent": "dashboard", "event": "created"}],
    }


def _event(agent: str, event: str, revision: str, **extra: object) -> dict[str, Any]:
    return {"at": now(), "agent": agent, "event": event, "revision": revision, **extra}


def workflow_ref(client: firestore.Client, workflow_id: str) -> firestore.DocumentReference:
    """The document reference of a workflow."""
    return client.collection(COLLECTION).document(workflow_id)


Decision = tuple[T, dict[str, Any] | None]
# Enough for every agent of a workflow writing at once; each round is one read and one write.
MAX_WRITE_ROUNDS = 50


def _read_decide_write(
    client: firestore.Client,
    workflow_id: str,
    decide: Callable[[dict[str, Any] | None], Decision[T]],
) -> T:
    """Read the workflow, decide, and write only if the document is unchanged since the read.

    Optimistic concurrency (a last-update-time precondition) instead of a transaction: the agents
    of one workflow write to the same document at the same moment, and lock-based transactions
    then wait on each other (about 2 s per conflict on the emulator); a lost race costs one re-read.
    decide gets None when the workflow does not exist; it returns (result, fields or None).
    """
    ref = workflow_ref(client, workflow_id)
    for _ in range(MAX_WRITE_ROUNDS):
        snapshot = ref.get()
        result, fields = decide(snapshot.to_dict() if snapshot.exists else None)
        if not fields:
            return result
        try:
            ref.update(fields, option=client.write_option(last_update_time=snapshot.update_time))
        except (FailedPrecondition, NotFound):
            continue  # written (or deleted) since the read: decide again on what is there now
        return result
    raise Aborted(f"workflow {workflow_id} kept changing: gave up after {MAX_WRITE_ROUNDS} tries")


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of claim(), with the document as read when the claim was decided."""

    claim: Claim
    document: dict[str, Any] | None


def claim(
    client: firestore.Client,
    workflow_id: str,
    agent: str,
    revision: str,
    lease: timedelta,
) -> ClaimResult:
    """Take the step for this delivery unless it is done, held by a live lease, or closed."""

    def decide(doc: dict[str, Any] | None) -> tuple[ClaimResult, dict[str, Any] | None]:
        if doc is None:
            return ClaimResult(Claim.UNKNOWN, None), None
        step = (doc.get("steps") or {}).get(agent)
        if step is None:
            return ClaimResult(Claim.UNKNOWN, doc), None
        deliveries = {f"steps.{agent}.deliveries": firestore.Increment(1)}
        if step["status"] in (StepStatus.DONE, StepStatus.REJECTED):
            return ClaimResult(Claim.ALREADY_DONE, doc), deliveries
        if doc["status"] in (Status.FAILED, Status.REJECTED) or step["status"] == StepStatus.SKIPPED:
            return ClaimResult(Claim.CLOSED, doc), deliveries
        lease_until = step.get("lease_until")
        if step["status"] == StepStatus.RUNNING and lease_until and lease_until > now():
            # A concurrent duplicate is still a delivery seen; it is counted, not worked on.
            return ClaimResult(Claim.BUSY, doc), deliveries
        started = now()
        # A workflow completed already (a late step after an early finalize) is never reopened.
        status = doc["status"] if doc["status"] == Status.COMPLETED else Status.PROCESSING.value
        fields = {
            **deliveries,
            "status": status,
            "updated_at": started,
            f"steps.{agent}.status": StepStatus.RUNNING.value,
            f"steps.{agent}.started_at": started,
            f"steps.{agent}.lease_until": started + lease,
            f"steps.{agent}.attempts": firestore.Increment(1),
            f"steps.{agent}.revision": revision,
            "events": firestore.ArrayUnion([_event(agent, "started", revision)]),
        }
        return ClaimResult(Claim.RUN, doc), fields

    return _read_decide_write(client, workflow_id, decide)


def _finish(
    client: firestore.Client,
    workflow_id: str,
    agent: str,
    revision: str,
    step_status: StepStatus,
    fields: Mapping[str, Any],
    event: dict[str, Any],
    *,
    ends_workflow: bool = False,
) -> None:
    def decide(doc: dict[str, Any] | None) -> tuple[None, dict[str, Any]]:
        if doc is None:
            raise NotFound(f"workflow {workflow_id} does not exist")
        # Read before the clock, written only if nothing landed since: a sibling's finish written
        # between this clock reading and this write would otherwise leave updated_at behind it.
        last = doc.get("updated_at")
        finished = max(now(), last) if isinstance(last, datetime) else now()
        # A step that ends the workflow ends it at its own finish: never before the step itself finished.
        ending = {"completed_at": finished} if ends_workflow else {}
        return None, {
            **fields,
            **ending,
            "updated_at": finished,
            f"steps.{agent}.status": step_status.value,
            f"steps.{agent}.finished_at": finished,
            f"steps.{agent}.lease_until": None,
            f"steps.{agent}.revision": revision,
            "events": firestore.ArrayUnion([{**event, "at": finished}]),
        }

    _read_decide_write(client, workflow_id, decide)


def complete_step(
    client: firestore.Client,
    workflow_id: str,
    agent: str,
    revision: str,
    output: Mapping[str, Any],
    publish_lease: timedelta | None = None,
) -> None:
    """Record that agent finished its work with this output summary.

    With publish_lease the caller also takes the right to publish the step's output message,
    so that a concurrent duplicate delivery does not publish it a second time.
    """
    fields: dict[str, Any] = {f"steps.{agent}.output": dict(output), f"steps.{agent}.error": None}
    if publish_lease is not None:
        fields[f"steps.{agent}.publishing_until"] = now() + publish_lease
    _finish(client, workflow_id, agent, revision, StepStatus.DONE, fields, _event(agent, "done", revision))


def fail_step(client: firestore.Client, workflow_id: str, agent: str, revision: str, error: str) -> None:
    """Record that agent failed: the step and the whole workflow end failed, naming both."""
    _finish(
        client,
        workflow_id,
        agent,
        revision,
        StepStatus.FAILED,
        {
            f"steps.{agent}.error": error,
            "status": Status.FAILED.value,
            "failed_agent": agent,
            "reason": f"{agent} failed: {error}",
        },
        _event(agent, "failed", revision, error=error),
    )


def reject(
    client: firestore.Client,
    workflow_id: str,
    agent: str,
    revision: str,
    reason: str,
    skipped: Iterable[str],
    output: Mapping[str, Any] | None = None,
) -> None:
    """End the workflow as rejected (bad input, not a fault) and mark the steps that will not run."""
    fields: dict[str, Any] = {
        f"steps.{agent}.output": dict(output or {}),
        f"steps.{agent}.error": reason,
        "status": Status.REJECTED.value,
        "reason": reason,
    }
    for name in skipped:
        fields[f"steps.{name}.status"] = StepStatus.SKIPPED.value
    event = _event(agent, "rejected", revision, reason=reason)
    _finish(client, workflow_id, agent, revision, StepStatus.REJECTED, fields, event, ends_workflow=True)


def release(client: firestore.Client, workflow_id: str, agent: str, revision: str, error: str) -> None:
    """Give the step back after a transient error so that a redelivery can take it."""
    workflow_ref(client, workflow_id).update(
        {
            f"steps.{agent}.status": StepStatus.PENDING.value,
            f"steps.{agent}.lease_until": None,
            "events": firestore.ArrayUnion([_event(agent, "released", revision, error=error)]),
        }
    )


def count_attempt(client: firestore.Client, workflow_id: str, agent: str) -> None:
    """Count one more time the work was really done (a repeated run within one delivery)."""
    workflow_ref(client, workflow_id).update({f"steps.{agent}.attempts": firestore.Increment(1)})


def count_delivery(client: firestore.Client, workflow_id: str, agent: str) -> bool:
    """Count a push delivery for an agent that does not claim (the finalizer); False if no such workflow."""
    try:
        workflow_ref(client, workflow_id).update({f"steps.{agent}.deliveries": firestore.Increment(1)})
    except NotFound:
        return False
    return True


def mark_published(client: firestore.Client, workflow_id: str, agent: str) -> None:
    """Record that the step's output message was published (a redelivery must not publish again)."""
    workflow_ref(client, workflow_id).update(
        {f"steps.{agent}.published": True, f"steps.{agent}.publishing_until": None}
    )


def release_publish(client: firestore.Client, workflow_id: str, agent: str) -> None:
    """Give back the right to publish after a failed publish, so that a redelivery may retry it."""
    workflow_ref(client, workflow_id).update({f"steps.{agent}.publishing_until": None})


def claim_publish(client: firestore.Client, workflow_id: str, agent: str, lease: timedelta) -> bool:
    """Take the right to publish a done step's unpublished output; False if published or held."""

    def decide(doc: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
        step = ((doc or {}).get("steps") or {}).get(agent) or {}
        if step.get("status") != StepStatus.DONE or step.get("published"):
            return False, None
        held_until = step.get("publishing_until")
        if held_until and held_until > now():
            return False, None
        return True, {f"steps.{agent}.publishing_until": now() + lease}

    return _read_decide_write(client, workflow_id, decide)


def finalize(
    client: firestore.Client,
    workflow_id: str,
    agent: str,
    revision: str,
    depends_on: Iterable[str],
    publish_lease: timedelta | None = None,
    fail_with: str | None = None,
) -> bool:
    """Complete the workflow if every dependency is done; True when this call completed it.

    With publish_lease the completing call also takes the right to publish the completion. With
    fail_with (a test failure plan) the call that would complete the workflow fails it instead,
    and True then says this call failed it.
    """
    needed = tuple(depends_on)

    def decide(doc: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
        if doc is None:
            return False, None
        steps = doc.get("steps") or {}
        if doc.get("status") in TERMINAL or steps.get(agent, {}).get("status") == StepStatus.DONE:
            return False, None
        if any(steps.get(name, {}).get("status") != StepStatus.DONE for name in needed):
            return False, None
        finished = now()
        started = steps.get(agent, {}).get("started_at") or finished
        if fail_with is not None:
            return True, {
                "status": Status.FAILED.value,
                "failed_agent": agent,
                "reason": f"{agent} failed: {fail_with}",
                "updated_at": finished,
                f"steps.{agent}.status": StepStatus.FAILED.value,
                f"steps.{agent}.started_at": started,
                f"steps.{agent}.finished_at": finished,
                f"steps.{agent}.lease_until": None,
                f"steps.{agent}.attempts": firestore.Increment(1),
                f"steps.{agent}.revision": revision,
                f"steps.{agent}.error": fail_with,
                "events": firestore.ArrayUnion(
                    [
                        {**_event(agent, "started", revision), "at": started},
                        _event(agent, "failed", revision, error=fail_with),
                    ]
                ),
            }
        fields = {
            "status": Status.COMPLETED.value,
            "updated_at": finished,
            "completed_at": finished,
            f"steps.{agent}.status": StepStatus.DONE.value,
            f"steps.{agent}.started_at": started,
            f"steps.{agent}.finished_at": finished,
            f"steps.{agent}.lease_until": None,
            f"steps.{agent}.attempts": firestore.Increment(1),
            f"steps.{agent}.revision": revision,
            f"steps.{agent}.output": {"completed_steps": list(needed)},
            f"steps.{agent}.publishing_until": finished + publish_lease if publish_lease else None,
            # Decided and done in one write: the timeline still shows when the step started.
            "events": firestore.ArrayUnion(
                [{**_event(agent, "started", revision), "at": started}, _event(agent, "done", revision)]
            ),
        }
        return True, fields

    return _read_decide_write(client, workflow_id, decide)
