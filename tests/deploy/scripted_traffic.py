"""Scripted traffic for the canary's tests: every analysis sees a fixed number of requests per service."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from deploy.analysis import Request, StepResult, Thresholds
from deploy.canary import CanaryRun, Mark, Requests, Revisions, Steps
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

    def __init__(
        self, per_window: int = 200, bad: str = "", bad_from: int = 0, load: float = 0.0, slow: float = 3.0
    ) -> None:
        self.per_window = per_window
        self.slow = slow  # how much slower a "slow" candidate is
        # A revision slows with its share of the load, as near saturation: ms x (1 + load x share²).
        self.load = load
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

    def mark_before(self, seconds: float) -> Mark | None:
        return None

    def _share(self, n: int) -> int:
        """The candidate's part of n (in a slow bake, one more per read)."""
        if self.percent == 100 and self.slow_bake:
            self.bake_analyses += 1
            return min(n, self.bake_analyses)
        return n * self.percent // 100

    def _requests(self, n: int, candidate: bool) -> list[Request]:
        misbehaves = candidate and self.bad and self.percent >= self.bad_from
        slow = self.slow if misbehaves and self.bad == "slow" else 1.0
        share = (self.percent if candidate else 100 - self.percent) / 100
        slow *= 1 + self.load * share**2
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
