"""The finalizer agent: completes the workflow once every step it depends on is done.

It is triggered by each dependency's output topic, so it hears about one workflow several times;
workflow.finalize decides in one transaction, so duplicate and concurrent pushes complete it once.
It does not claim a lease: until the last dependency is done a push is simply acknowledged, and the
last dependency's message triggers it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask

from imageflow import test_failures, workflow
from imageflow.agents.base import Agent, Delivery, Job, Outcome, create_agent_app
from imageflow.config import Settings
from imageflow.workflow import Status, StepStatus

NAME = "finalizer"
# The failure plans the finalizer can honour: it claims no step, so it has no attempts to fail
# transiently (`transient:N`, `always_5xx`); a plan naming those is refused, not quietly ignored.
HONOURED_MODES = frozenset({"error", "publish_fails"})


def refusal(mode: test_failures.Mode) -> str:
    """The one-line reason a failure plan the finalizer cannot honour is refused."""
    honoured = ", ".join(sorted(HONOURED_MODES))
    return f"the {NAME} claims no step and cannot honour failure mode {mode.text!r} (it honours {honoured})"


def missing_dependencies(document: Mapping[str, Any], depends_on: Iterable[str]) -> list[str]:
    """The dependencies whose step is not done yet (pure: used for the answer and in tests)."""
    steps = document.get("steps") or {}
    return [name for name in depends_on if (steps.get(name) or {}).get("status") != StepStatus.DONE]


def handle(job: Job) -> Mapping[str, Any]:
    """The output summary the finalizer records when it completes a workflow."""
    return {"completed_steps": list(job.spec.depends_on)}


class Finalizer(Agent):
    """Delivery logic of the finalizer: a transactional completion instead of a claimed step."""

    def deliver(self, delivery: Delivery) -> Outcome:
        """Complete the workflow if every dependency is done, and announce it once."""
        db = self.db()
        revision = self.settings.revision
        if not workflow.count_delivery(db, delivery.workflow_id, self.name):
            return Outcome(404, "unknown-workflow", {"error": "no such workflow"})
        # One job for the whole delivery, so its failure plan is read once (job.notes keeps it).
        job = self.job(delivery)
        try:
            mode = self.planned(job)
        except test_failures.PlanError as exc:
            return Outcome(422, "plan-refused", {"error": str(exc)})
        if mode and mode.kind not in HONOURED_MODES:
            return Outcome(422, "plan-refused", {"error": refusal(mode)})
        if self.faults.on("slow"):
            self.faults.block_past(self.spec.deadline_seconds)
        if self.faults.on("errors"):
            error = f"RuntimeError: fault {self.name}.errors switched on"
            workflow.fail_step(db, delivery.workflow_id, self.name, revision, error)
            return Outcome(200, "failed", {"error": error})
        depends_on = () if self.faults.on("early") else self.spec.depends_on
        # A failure plan's error: the delivery that would complete the workflow fails it instead.
        fail_with = None
        if mode and mode.kind == "error":
            fail_with = f"{test_failures.InjectedFailure.__name__}: planned failure of {self.name}"
        if self.faults.on("fake_done"):
            # The step says done, yet the workflow itself is never completed.
            workflow.complete_step(db, delivery.workflow_id, self.name, revision, handle(job))
            completed = False
        else:
            completed = workflow.finalize(
                db,
                delivery.workflow_id,
                self.name,
                revision,
                depends_on,
                publish_lease=self.lease,
                fail_with=fail_with,
            )
            if completed and fail_with:
                return Outcome(200, "failed", {"error": fail_with})
        if completed and self.faults.on("twice"):
            workflow.finalize(db, delivery.workflow_id, self.name, revision, depends_on)
            workflow.count_attempt(db, delivery.workflow_id, self.name)
        if completed and self.faults.on("wrong_output"):
            workflow.complete_step(db, delivery.workflow_id, self.name, revision, {})
        document = workflow.workflow_ref(db, delivery.workflow_id).get().to_dict() or {}
        job.document = document
        step = (document.get("steps") or {}).get(self.name) or {}
        if document.get("status") == Status.COMPLETED and step.get("status") == StepStatus.DONE:
            if completed:
                return self.publish_and_mark(job) or Outcome(200, "done")
            if step.get("published"):
                return Outcome(200, "duplicate")
            # Completed earlier by a delivery whose publish failed (or is still publishing).
            return self.republish(job)
        if document.get("status") in (Status.FAILED, Status.REJECTED):
            return Outcome(200, "closed")
        waiting = missing_dependencies(document, self.spec.depends_on)
        return Outcome(200, "waiting", {"waiting_for": waiting})

    def job(self, delivery: Delivery) -> Job:
        """A job without a document (the finalizer reads none before completing)."""
        return self.new_job(delivery, {})


def create_app(settings: Settings | None = None) -> Flask:
    """The finalizer service."""
    return create_agent_app(NAME, handle, settings, agent_class=Finalizer)
