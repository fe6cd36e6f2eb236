"""The benchmarks' and the load scenario's own logic: percentiles, workflow facts, loopback guard, CSV."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import allure
import pytest

from benchmarks import load, time_to_red
from benchmarks.harness import facts, percentile, summary
from imageflow import manifest as manifest_module

pytestmark = [
    allure.epic("Drills"),
    allure.feature("Benchmarks"),
    allure.severity(allure.severity_level.NORMAL),
]

MANIFEST = manifest_module.default()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _document(attempts: int = 1, status: str = "completed") -> dict:
    steps = {
        name: {
            "status": "done",
            "attempts": attempts,
            "started_at": T0 + timedelta(seconds=i),
            "finished_at": T0 + timedelta(seconds=i + 0.5),
        }
        for i, name in enumerate(MANIFEST.agent_names)
    }
    return {"status": status, "steps": steps, "completed_at": T0 + timedelta(seconds=10)}


@allure.story("Percentiles")
def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50.0, 95.0, 99.0)
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) is None
    assert summary([1.0, 2.0, 3.0])["p50"] == 2.0


@allure.story("Workflow facts")
def test_facts_measure_upload_to_completed_and_each_agent_step() -> None:
    result = facts("w1", T0.timestamp() - 2.0, _document(), MANIFEST)
    assert result.upload_to_completed == 12.0
    assert result.agents_once is True
    assert set(result.agent_seconds) == set(MANIFEST.agent_names)
    assert all(v == 0.5 for v in result.agent_seconds.values())


@allure.story("Workflow facts")
def test_facts_flag_an_agent_that_ran_twice_and_a_workflow_never_written() -> None:
    twice = facts("w2", T0.timestamp(), _document(attempts=2), MANIFEST)
    assert twice.agents_once is False
    assert len(twice.problems) == len(MANIFEST.agent_names)
    missing = facts("w3", T0.timestamp(), None, MANIFEST)
    assert (missing.status, missing.upload_to_completed, missing.problems) == (
        "missing",
        None,
        ["document never written"],
    )


@allure.story("Load")
@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:1", True),
        ("http://[::1]:9", True),
        ("https://imageflow.example.com", False),
        ("http://10.0.0.5:8080", False),
    ],
)
def test_load_scenario_accepts_only_loopback_hosts(url: str, loopback: bool) -> None:
    locustfile = importlib.import_module("load.checks")
    assert locustfile.is_loopback(url) is loopback


@allure.story("Load")
def test_load_scenario_reads_a_workflow_document_from_firestore_rest() -> None:
    locustfile = importlib.import_module("load.checks")

    def step(status: str, attempts: int) -> dict:
        fields = {"status": {"stringValue": status}, "attempts": {"integerValue": str(attempts)}}
        return {"mapValue": {"fields": fields}}

    agents = MANIFEST.agent_names
    steps = {name: step("done", 2 if name == agents[0] else 1) for name in agents}
    document = {"fields": {"status": {"stringValue": "completed"}, "steps": {"mapValue": {"fields": steps}}}}
    assert locustfile.check_document(document, agents) == ("completed", [f"{agents[0]} done x2"])


@allure.story("Load")
def test_locust_csv_rows_become_request_statistics(tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    header = "Type,Name,Request Count,Failure Count,50%,95%,99%,Requests/s\n"
    Path(f"{prefix}_stats.csv").write_text(
        header + "POST,POST /api/uploads,40,1,310,900,1200,0.66\n", "utf-8"
    )
    Path(f"{prefix}_failures.csv").write_text(
        "Method,Name,Error,Occurrences\nPOST,POST /api/uploads,upload answered 503,1\n", "utf-8"
    )
    (row,) = load.locust_stats(prefix)
    assert row == {
        "type": "POST",
        "name": "POST /api/uploads",
        "requests": 40,
        "failures": 1,
        "p50_ms": 310.0,
        "p95_ms": 900.0,
        "p99_ms": 1200.0,
        "requests_per_s": 0.66,
    }
    assert load.locust_failures(prefix) == [
        {"method": "POST", "name": "POST /api/uploads", "error": "upload answered 503", "occurrences": 1}
    ]


def _red_sample(fault: str, watcher: str, upload_to_red: float, ready_to_red: float) -> time_to_red.Sample:
    return time_to_red.Sample(
        fault, f"wf-{fault}", watcher, True, upload_to_red, ready_to_red, "failed", True, ""
    )


def test_time_to_red_judges_the_median_past_the_deadline_and_keeps_a_zero() -> None:
    """A fault only a deadline shows is red past it, an error at once: 0 s past is a figure, not None."""
    deadline = 20.0
    samples = [
        _red_sample(kind, which, upload, ready)
        for which in time_to_red.WATCHERS
        for kind, upload, ready in (("never_fires", 21.5, 21.0), ("slow", 21.2, 21.0), ("errors", 0.8, 0.0))
    ]
    figures = time_to_red._figures(samples, deadline)
    assert figures["errors"]["after"]["past_deadline_s"] == 0.0
    assert figures["never_fires"]["after"]["past_deadline_s"] == 1.0
    verdict = time_to_red._verdicts(figures)["after"]
    assert verdict["every_fault_within_deadline_plus_slack"] is True
    assert verdict["median_past_deadline_s"] == 1.0
    assert verdict["median_goal_met"] is True
    late = [_red_sample("never_fires", w, 32.0, 31.5) for w in time_to_red.WATCHERS]
    late_verdict = time_to_red._verdicts(time_to_red._figures(late, deadline))["after"]
    assert late_verdict["every_fault_within_deadline_plus_slack"] is False
    assert late_verdict["median_goal_met"] is False


@allure.story("One run")
def test_every_benchmark_with_a_main_runs_in_the_benchmarks_session() -> None:
    from benchmarks.__main__ import BENCHMARKS, ON_THE_STACK

    folder = Path(importlib.import_module("benchmarks").__file__ or "").parent
    runnable = {
        path.stem
        for path in folder.glob("*.py")
        if not path.stem.startswith("_")
        and callable(getattr(importlib.import_module(f"benchmarks.{path.stem}"), "main", None))
    }
    assert runnable <= set(BENCHMARKS), f"not in `nox -s benchmarks`: {sorted(runnable - set(BENCHMARKS))}"
    assert set(ON_THE_STACK) == set(BENCHMARKS) - {"stack_start"}, "only the cold start brings its own stacks"
