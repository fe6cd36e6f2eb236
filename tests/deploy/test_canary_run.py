"""The canary's decisions on scripted traffic: steps advance, regressions abort at once, starvation holds."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from deploy.analysis import Request, StepResult, Thresholds
from deploy.canary import CanaryAborted, CanaryRun, Mark, Requests, Revisions, Steps
from deploy.environments import Canary

REVISIONS = Revisions(
    candidate={"dashboard": "dash-2", "exif": "exif-2"},
    previous={"dashboard": "dash-1", "exif": "exif-1"},
    deadlines={"exif": 20.0},
)
# Windows of a few hundredths of a second: the decisions, not the clock, are under test.
CONFIG = Canary(
    steps=(25, 50),
    window_seconds=0.05,
    check_seconds=0.01,
    max_holds=2,
    bake_seconds=0.05,
    thresholds=Thresholds(min_requests=20),
)


class ScriptedTraffic:
    """Traffic whose every analysis sees `per_window` requests per service, shared by the current split."""

    def __init__(self, per_window: int = 200, bad: str = "", bad_from: int = 0) -> None:
        self.per_window = per_window
        self.bad = bad  # "errors" or "slow" for the candidate
        self.bad_from = bad_from  # the share from which the candidate misbehaves (100: only in the bake)
        self.percent = 0
        self.calls: list[str] = []
        self.rng = random.Random(7)
        self.slow_bake = False
        self.bake_analyses = 0

    def shift(self, percent: int) -> None:
        self.percent = percent
        self.calls.append(f"shift {percent}")

    def restore(self) -> None:
        self.percent = 0
        self.calls.append("restore")

    def promote(self) -> None:
        self.percent = 100
        self.calls.append("promote")

    def mark(self) -> Mark:
        return Mark(len(self.calls), datetime.now(UTC))

    def _share(self, n: int) -> int:
        """The candidate's part of n (in a slow bake, one more per read)."""
        if self.percent == 100 and self.slow_bake:
            self.bake_analyses += 1
            return min(n, self.bake_analyses)
        return n * self.percent // 100

    def _requests(self, n: int, candidate: bool) -> list[Request]:
        misbehaves = candidate and self.bad and self.percent >= self.bad_from
        slow = 3.0 if misbehaves and self.bad == "slow" else 1.0
        return [
            Request(
                500 if misbehaves and self.bad == "errors" and i % 4 == 0 else 200,
                40 * slow * self.rng.uniform(0.8, 1.2),
            )
            for i in range(n)
        ]

    def requests(self, since: Mark) -> Requests:
        mine = self._share(self.per_window)
        return {
            service: {
                REVISIONS.candidate[service]: self._requests(mine, True),
                REVISIONS.previous[service]: self._requests(self.per_window - mine, False),
            }
            for service in REVISIONS.candidate
        }

    def steps(self, since: Mark) -> Steps:
        mine = self._share(self.per_window)
        return {
            "exif": {
                "exif-2": [StepResult("done", 0.3, 1)] * mine,
                "exif-1": [StepResult("done", 0.3, 1)] * (self.per_window - mine),
            }
        }


def run(traffic: ScriptedTraffic) -> CanaryRun:
    return CanaryRun(CONFIG, traffic, REVISIONS, say=lambda line: None)


def test_a_clean_release_advances_through_every_step_and_the_bake() -> None:
    traffic = ScriptedTraffic()
    canary = run(traffic)
    assert canary.steps() == "25% -> 50% passed"
    traffic.promote()
    assert "as good as the previous release" in canary.bake()
    assert traffic.calls == ["shift 25", "shift 50", "promote"]
    assert [p.decision for p in canary.phases] == ["advance", "advance", "advance"]
    assert canary.aborted_after_s is None
    # The bake's baseline is what the previous revisions did during the steps.
    assert len(canary.previous_requests["dashboard"]) > 0


def test_errors_on_the_candidate_abort_the_first_step_and_restore_traffic_at_once() -> None:
    traffic = ScriptedTraffic(bad="errors")
    canary = run(traffic)
    with pytest.raises(
        CanaryAborted, match="25% aborted, traffic back on the previous revisions: dashboard http error"
    ):
        canary.steps()
    assert traffic.calls == ["shift 25", "restore"]
    assert canary.phases[0].decision == "abort"
    assert canary.phases[0].windows == 0, "a clear regression must not wait for the window's end"
    assert canary.aborted_after_s is not None


def test_slowness_that_appears_only_at_full_traffic_is_caught_by_the_bake() -> None:
    traffic = ScriptedTraffic(bad="slow", bad_from=100)
    canary = run(traffic)
    canary.steps()
    traffic.promote()
    with pytest.raises(CanaryAborted, match=r"bake aborted, rolling the release back.*http latency ms"):
        canary.bake()
    # After the bake the promotion's own undo takes the traffic back, first thing in the rollback.
    assert traffic.calls[-1] == "promote"
    assert canary.aborted_after_s is not None
    record = canary.as_dict()
    assert [p["decision"] for p in record["phases"]] == ["advance", "advance", "abort"]
    failing = [s for s in record["phases"][-1]["signals"] if s["verdict"] == "fail"]
    assert {s["service"] for s in failing} == {"dashboard", "exif"}


def test_too_little_traffic_holds_then_aborts_unjudged_and_never_passes() -> None:
    traffic = ScriptedTraffic(per_window=30)
    canary = run(traffic)
    with pytest.raises(CanaryAborted, match="still inconclusive after 3 windows"):
        canary.steps()
    assert canary.phases[0].windows == CONFIG.max_holds + 1
    assert traffic.calls == ["shift 25", "restore"]


def test_every_analysis_is_on_the_timeline_for_the_picture() -> None:
    canary = run(ScriptedTraffic())
    canary.steps()
    points = [point for phase in canary.phases for point in phase.timeline]
    assert points
    assert all(set(p["services"]) == {"dashboard", "exif"} for p in points)
    assert all(0.0 <= f["success"] <= 1.0 for p in points for f in p["services"]["dashboard"].values())


def test_a_bake_with_too_little_traffic_is_held_not_failed() -> None:
    """A good release is never rolled back for a slow first window: the bake waits for samples."""
    traffic = ScriptedTraffic()
    canary = run(traffic)
    canary.steps()
    traffic.promote()
    traffic.slow_bake = True
    assert "as good as the previous release" in canary.bake()
    assert canary.phases[-1].windows > 1
