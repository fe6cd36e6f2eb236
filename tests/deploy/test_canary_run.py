"""The canary's decisions on scripted traffic: steps advance, regressions abort at once, starvation holds."""

from __future__ import annotations

import statistics

import pytest
from scripted_traffic import CONFIG, ScriptedTraffic, run

from deploy.canary import CanaryAborted


def test_a_clean_release_advances_through_every_step_and_the_bake() -> None:
    traffic = ScriptedTraffic()
    canary = run(traffic)
    assert canary.steps() == "25% -> 50% passed"
    traffic.promote()
    assert "as good as the previous release" in canary.bake()
    assert traffic.calls == ["shift 25", "shift 50", "promote"]
    assert [p.decision for p in canary.phases] == ["advance", "advance", "advance"]
    assert canary.aborted_after_s is None
    # The bake's baseline is the previous release alone at 100 %, watched before the first step.
    assert len(canary.previous_requests["dashboard"]) == traffic.per_window
    assert canary.as_dict()["baseline"]["requests"] == {"dashboard": 200, "exif": 200}


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
    # Across windows only a gross slowdown counts (bake_latency_factor): five times as slow.
    traffic = ScriptedTraffic(bad="slow", bad_from=100, slow=5.0)
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


def test_a_release_as_fast_as_the_previous_one_under_the_same_load_is_not_slow_in_the_bake() -> None:
    """Each revision slows with its share of the load: the bake holds the candidate at 100 % against
    the previous release at 100 % (9x), not against its faster figures while it shared the load."""
    traffic = ScriptedTraffic(load=8.0)
    canary = run(traffic)
    canary.steps()
    traffic.promote()
    assert "as good as the previous release" in canary.bake()
    shared = [r.ms for r in traffic._requests(100, candidate=False)]
    assert statistics.median(r.ms for r in canary.previous_requests["dashboard"]) > 1.5 * statistics.median(
        shared
    )


def test_the_bake_tolerates_what_differs_between_windows_but_not_a_gross_slowdown() -> None:
    """Three times as slow at 100 % passes the bake (another window), where a step would abort it."""
    traffic = ScriptedTraffic(bad="slow", bad_from=100, slow=3.0)
    canary = run(traffic)
    canary.steps()
    traffic.promote()
    assert "as good as the previous release" in canary.bake()
    with pytest.raises(CanaryAborted, match="25% aborted"):
        run(ScriptedTraffic(bad="slow", slow=3.0)).steps()
