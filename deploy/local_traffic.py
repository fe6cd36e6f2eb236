"""The canary's traffic on the local stack: the router's weighted split and counts, the workflow documents."""

from __future__ import annotations

from datetime import UTC, datetime

from google.cloud import firestore

from deploy.analysis import Request
from deploy.canary import Mark, Requests, Steps, steps_by_revision
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
        self.restored = True

    def shift(self, percent: int) -> None:
        """Candidate `percent`, previous the rest, on every service (consumers first, like promote)."""
        self.restored = False
        for service in reversed(list(self.candidate)):
            split = {self.candidate[service].id: percent, self.previous[service].id: 100 - percent}
            self.control.split_traffic(service, split)

    def restore(self) -> None:
        """Every service's traffic back on its previous revision (once: a second call changes nothing)."""
        if self.restored:
            return
        self.restored = True
        for service in self.candidate:
            # route(), not a split: after the promotion the stack's live revision goes back too.
            self.control.route(service, self.previous[service].id)

    def mark(self) -> Mark:
        """The router's request counter and the time now."""
        service = next(iter(self.candidate))
        sequence = int(self.control.revision_stats(service, since=NO_SAMPLES)["sequence"])
        return Mark(sequence, datetime.now(UTC))

    def mark_before(self, seconds: float) -> Mark | None:
        """None: the canary's own traffic starts with it, there is no window before to read."""
        return None

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
