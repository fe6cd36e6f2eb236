"""Progressive promotion: canary steps with analysis, and the bake after 100 %, for any executor.

The executor moves traffic and reads samples (Traffic); this module decides. Each step gives the
candidates a share of every service and is analysed every check_seconds against the previous
revisions over the same window: a failed signal aborts at once (all traffic back to the previous
revisions), a window that ends with every signal passing advances, and too little traffic holds the
step for another window, at most max_holds times. The bake watches the release at 100 % against the
previous release alone at 100 % over the window before the first step: the same load on one revision
(during a step the previous revisions shared it, and were faster for it). Every analysis lands in
the run record.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from deploy.analysis import Request, Signal, StepResult, StepVerdict, decide, http_signals, outcome_signals
from deploy.environments import Canary
from deploy.steps import StepFailed

# service -> revision -> what that revision did in the window.
Requests = dict[str, dict[str, list[Request]]]
Steps = dict[str, dict[str, list[StepResult]]]


class CanaryAborted(StepFailed):
    """The analysis failed a signal (or could not judge): traffic is back on the previous revisions."""


@dataclass(frozen=True)
class Mark:
    """The start of a window: the traffic counter's position and the wall-clock time."""

    sequence: int
    at: datetime


class Traffic(Protocol):
    """What the canary needs from an executor: shares to move, windows to read."""

    def shift(self, percent: int) -> None:
        """Give every service's candidate `percent` of its traffic, the rest to its previous revision."""

    def restore(self) -> None:
        """All traffic of every service back to its previous revision, at once (again: nothing)."""

    def mark(self) -> Mark:
        """Where a window starts."""

    def mark_before(self, seconds: float) -> Mark | None:
        """Where the window that ends now started, if traffic ran then (None: the traffic starts now)."""

    def requests(self, since: Mark) -> Requests:
        """Every service's HTTP requests per revision since the mark."""

    def steps(self, since: Mark) -> Steps:
        """Every agent's workflow steps per revision, for the workflows created since the mark."""


@dataclass
class Revisions:
    """The two revisions of every service the canary compares, and the agents' deadlines."""

    candidate: Mapping[str, str]
    previous: Mapping[str, str]
    deadlines: Mapping[str, float]


@dataclass
class Phase:
    """One step (or the bake) as the run record keeps it."""

    name: str
    percent: int
    started_at: str
    windows: int = 0
    decision: str = ""
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    signals: list[dict[str, Any]] = field(default_factory=list)
    # Per analysis: when, and per service and revision the requests, success rate and median ms.
    timeline: list[dict[str, Any]] = field(default_factory=list)


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CanaryRun:
    """The steps and the bake of one release, judged as they go."""

    def __init__(
        self,
        config: Canary,
        traffic: Traffic,
        revisions: Revisions,
        say: Callable[[str], None],
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.traffic = traffic
        self.revisions = revisions
        self.say = say
        # Set on shutdown only: waiting on it is how a window passes, and how an interrupt ends it.
        self.stop = stop or threading.Event()
        self.phases: list[Phase] = []
        self.started = time.monotonic()
        # From the first step to the abort (s): traffic went back then, or the rollback began (bake).
        self.aborted_after_s: float | None = None
        # The previous release alone at 100 % over the window before the first step: the bake's baseline.
        self.previous_requests: dict[str, list[Request]] = {}
        self.previous_steps: dict[str, list[StepResult]] = {}
        self.baseline: dict[str, Any] = {}

    # -- analysis ---------------------------------------------------------------------------
    def analyse(self, since: Mark, *, against_previous_release: bool = False) -> StepVerdict:
        """Every signal of every service for the window since the mark."""
        t = self.config.thresholds
        if against_previous_release:
            t = dataclasses.replace(t, latency_factor=t.bake_latency_factor)
        requests, steps = self.traffic.requests(since), self.traffic.steps(since)
        signals: list[Signal] = []
        for service, candidate in self.revisions.candidate.items():
            previous = self.revisions.previous[service]
            by_revision = requests.get(service, {})
            base = (
                self.previous_requests.get(service, [])
                if against_previous_release
                else by_revision.get(previous, [])
            )
            signals += http_signals(service, by_revision.get(candidate, []), base, t)
            if service in self.revisions.deadlines:
                step_runs = steps.get(service, {})
                base_steps = (
                    self.previous_steps.get(service, [])
                    if against_previous_release
                    else step_runs.get(previous, [])
                )
                signals += outcome_signals(
                    service, step_runs.get(candidate, []), base_steps, t, self.revisions.deadlines[service]
                )
        return decide(signals)

    def _timeline(self, phase: Phase, since: Mark) -> None:
        requests = self.traffic.requests(since)
        point: dict[str, Any] = {"t": round(time.monotonic() - self.started, 2), "services": {}}
        for service, by_revision in requests.items():
            point["services"][service] = {
                revision: {
                    "requests": len(rs),
                    "success": (1 - sum(r.failed for r in rs) / len(rs)) if rs else None,
                    "median_ms": sorted(r.ms for r in rs)[len(rs) // 2] if rs else None,
                }
                for revision, rs in by_revision.items()
            }
        phase.timeline.append(point)

    # -- phases ------------------------------------------------------------------------------
    def _watch(self, phase: Phase, since: Mark, *, against_previous_release: bool) -> StepVerdict:
        """Analyse every check_seconds until a window ends in a verdict: abort early, advance at its end."""
        window_end = time.monotonic() + self.config.window_seconds
        while True:
            self.stop.wait(max(0.0, min(self.config.check_seconds, window_end - time.monotonic())))
            if self.stop.is_set():
                raise CanaryAborted(f"{phase.name}: interrupted")
            verdict = self.analyse(since, against_previous_release=against_previous_release)
            self._timeline(phase, since)
            if verdict.decision == "abort":
                return verdict
            if time.monotonic() < window_end:
                continue
            phase.windows += 1
            if verdict.decision == "advance":
                return verdict
            if phase.windows > self.config.max_holds:
                return verdict
            self.say(f"canary {phase.name}: hold ({'; '.join(verdict.reasons)[:300]})")
            window_end = time.monotonic() + self.config.window_seconds

    def _conclude(self, phase: Phase, verdict: StepVerdict, began: float) -> None:
        phase.seconds = round(time.monotonic() - began, 2)
        phase.signals = verdict.as_dict()["signals"]
        if verdict.decision == "hold":
            phase.decision = "abort"
            phase.reasons = [
                f"still inconclusive after {phase.windows} windows: {r}" for r in verdict.reasons
            ]
        else:
            phase.decision = verdict.decision
            phase.reasons = verdict.reasons
        self.say(f"canary {phase.name}: {phase.decision} after {phase.seconds:.1f}s")

    def _abort(self, phase: Phase, *, restore: bool) -> CanaryAborted:
        """Traffic back on the previous revisions (the steps do it here; after the bake, the rollback)."""
        if restore:
            self.traffic.restore()
        self.aborted_after_s = round(time.monotonic() - self.started, 2)
        reason = phase.reasons[0] if phase.reasons else "no reason recorded"
        then = "traffic back on the previous revisions" if restore else "rolling the release back"
        return CanaryAborted(f"{phase.name} aborted, {then}: {reason}")

    def measure_previous_release(self) -> None:
        """The previous revisions' figures over one window at 100 %, before any share moves.

        Where traffic ran before the canary (Google Cloud's users) that window has just ended; where
        the canary's own traffic starts with it (local), it is watched now.
        """
        began = time.monotonic()
        since = self.traffic.mark_before(self.config.window_seconds)
        if since is None:
            since = self.traffic.mark()
            if self.stop.wait(self.config.window_seconds):
                raise CanaryAborted("baseline: interrupted")
        requests, steps = self.traffic.requests(since), self.traffic.steps(since)
        for service, previous in self.revisions.previous.items():
            self.previous_requests[service] = list(requests.get(service, {}).get(previous, []))
            if service in self.revisions.deadlines:
                self.previous_steps[service] = list(steps.get(service, {}).get(previous, []))
        self.baseline = {
            "seconds": round(time.monotonic() - began, 2),
            "requests": {s: len(r) for s, r in self.previous_requests.items()},
            "steps": {s: len(r) for s, r in self.previous_steps.items()},
        }
        counts = ", ".join(f"{s} {n}" for s, n in self.baseline["requests"].items())
        self.say(f"canary baseline, the previous release at 100 %: {counts} requests")
        # Times in the record (aborted_after_s, the timeline) count from the first step, not from here.
        self.started = time.monotonic()

    def steps(self) -> str:
        """The previous release's baseline, then every traffic step in order; CanaryAborted when one fails."""
        self.measure_previous_release()
        for percent in self.config.steps:
            phase = Phase(name=f"{percent}%", percent=percent, started_at=_stamp())
            self.phases.append(phase)
            self.say(f"canary: {percent}% of every service's traffic on the candidates")
            self.traffic.shift(percent)
            since, began = self.traffic.mark(), time.monotonic()
            verdict = self._watch(phase, since, against_previous_release=False)
            self._conclude(phase, verdict, began)
            if phase.decision != "advance":
                raise self._abort(phase, restore=True)
        return " -> ".join(p.name for p in self.phases) + " passed"

    def bake(self) -> str:
        """Watch the release at 100 % for bake_seconds against the previous release's figures."""
        phase = Phase(name="bake", percent=100, started_at=_stamp())
        self.phases.append(phase)
        since, began = self.traffic.mark(), time.monotonic()
        deadline = began + self.config.bake_seconds
        verdict = StepVerdict("hold")
        while not self.stop.wait(max(0.0, min(self.config.check_seconds, deadline - time.monotonic()))):
            verdict = self.analyse(since, against_previous_release=True)
            self._timeline(phase, since)
            if verdict.decision == "abort":
                break
            if time.monotonic() < deadline:
                continue
            phase.windows += 1
            if verdict.decision == "advance" or phase.windows > self.config.max_holds:
                break
            # Too few samples is no verdict: the bake is held for another window, as a step is.
            self.say(f"canary bake: hold ({'; '.join(verdict.reasons)[:300]})")
            deadline = time.monotonic() + self.config.window_seconds
        if self.stop.is_set():
            raise CanaryAborted("bake: interrupted")
        self._conclude(phase, verdict, began)
        if phase.decision != "advance":
            # The promotion's own undo is the rollback's first change: traffic goes back in one move.
            raise self._abort(phase, restore=False)
        return f"{self.config.bake_seconds:g}s at 100% as good as the previous release"

    def as_dict(self) -> dict[str, Any]:
        """The canary's part of the run record."""
        return {
            "steps": list(self.config.steps),
            "window_seconds": self.config.window_seconds,
            "bake_seconds": self.config.bake_seconds,
            "candidate": dict(self.revisions.candidate),
            "previous": dict(self.revisions.previous),
            "baseline": self.baseline,
            "aborted_after_s": self.aborted_after_s,
            "phases": [vars(p) for p in self.phases],
        }


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
