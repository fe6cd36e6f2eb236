"""The canary's traffic on the local stack: the router's weighted split and counts, the workflow documents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from deploy.analysis import Request, StepResult
from deploy.canary import Mark, Requests, Steps
from imageflow import clients
from imageflow.workflow import COLLECTION
from stack.control import StackControl
from stack.state import RevisionRecord

# A sequence number past any the router has given: the stats answer carries the counter, no samples.
NO_SAMPLES = 2**62


class LocalTraffic:
    """Moves every service's share between its candidate and previous revision through the router."""

    def __init__(
        self,
        control: StackControl,
        candidate: dict[str, RevisionRecord],
        previous: dict[str, RevisionRecord],
        agents: list[str],
    ) -> None:
        self.control = control
        self.candidate = candidate
        self.previous = previous
        self.agents = agents

    def shift(self, percent: int) -> None:
        """Candidate `percent`, previous the rest, on every service (consumers first, like promote)."""
        for service in reversed(list(self.candidate)):
            split = {self.candidate[service].id: percent, self.previous[service].id: 100 - percent}
            self.control.split_traffic(service, split)

    def restore(self) -> None:
        """Every service's traffic back on its previous revision."""
        for service in self.candidate:
            self.control.split_traffic(service, {self.previous[service].id: 100})

    def mark(self) -> Mark:
        """The router's request counter and the time now."""
        service = next(iter(self.candidate))
        sequence = int(self.control.revision_stats(service, since=NO_SAMPLES)["sequence"])
        return Mark(sequence, datetime.now(UTC))

    def requests(self, since: Mark) -> Requests:
        """The router's samples per service and revision since the mark."""
        result: Requests = {}
        for service in self.candidate:
            samples = self.control.revision_stats(service, since=since.sequence).get("samples", {})
            result[service] = {
                revision: [Request(int(status), float(ms)) for _, status, ms in rows]
                for revision, rows in samples.items()
            }
        return result

    def steps(self, since: Mark) -> Steps:
        """Each agent's steps per revision, from the workflows created since the mark."""
        with self.control.client_environment():
            db = clients.firestore_client(self.control.state.project)
            query = db.collection(COLLECTION).where(
                filter=firestore.FieldFilter("created_at", ">=", since.at)
            )
            documents = [snapshot.to_dict() or {} for snapshot in query.stream()]
        return steps_by_revision(documents, self.agents)


def steps_by_revision(documents: list[dict[str, Any]], agents: list[str]) -> Steps:
    """{agent: {revision: [StepResult]}} of the steps these workflow documents record."""
    result: Steps = {agent: {} for agent in agents}
    for document in documents:
        for agent in agents:
            step = (document.get("steps") or {}).get(agent) or {}
            revision = step.get("revision")
            if not revision:
                continue
            started, finished = step.get("started_at"), step.get("finished_at")
            seconds = (
                (finished - started).total_seconds()
                if isinstance(started, datetime) and isinstance(finished, datetime)
                else None
            )
            result[agent].setdefault(str(revision), []).append(
                StepResult(str(step.get("status", "")), seconds, int(step.get("attempts") or 0))
            )
    return result
