"""The canary end to end on a stack of its own: a traffic-only fault aborted, a clean release promoted."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from fixtures.deployment import deploy_env, deploy_tool, latest_record
from stack.control import StackControl
from stack.load_users import EMULATOR_ADMIN

pytestmark = pytest.mark.destructive

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def live_revisions(stack: StackControl) -> dict[str, str]:
    """Each service's live revision id."""
    revisions = {s.name: stack.live_revision(s.name) for s in stack.manifest.services}
    return {name: revision.id for name, revision in revisions.items() if revision is not None}


def load_accounts(stack: StackControl) -> list[str]:
    """The emails of the Locust users still in the Auth emulator."""
    current = stack.state
    url = f"http://{current.emulators['auth']}/identitytoolkit.googleapis.com/v1/projects/{current.project}/accounts:query"
    answer = requests.post(url, json={"returnUserInfo": True}, headers=EMULATOR_ADMIN, timeout=30)
    answer.raise_for_status()
    return [
        str(u.get("email", "")) for u in answer.json().get("userInfo", []) if "load-" in str(u.get("email"))
    ]


def test_a_traffic_only_fault_is_aborted_at_the_first_step_and_a_clean_release_promoted(
    private_stack: StackControl, tmp_path: Path
) -> None:
    log, runs = tmp_path / "canary.log", tmp_path / "runs"
    env = deploy_env(private_stack.state_path, runs)
    before = live_revisions(private_stack)

    # 1. One dashboard request in four fails on the candidate: the lane would not see it, the canary must.
    code = deploy_tool("canary", "--revision-env", "IMAGEFLOW_FAULTS=dashboard.fails_share", env=env, log=log)
    assert code == 1, log.read_text(encoding="utf-8")
    aborted = latest_record(runs, "canary")
    assert aborted["decision"] == "rolled back"
    first = aborted["canary"]["phases"][0]
    assert (first["name"], first["decision"]) == ("25%", "abort"), first
    assert any(r.startswith("dashboard http error rate") for r in first["reasons"]), first["reasons"]
    assert live_revisions(private_stack) == before
    routes = private_stack.routes()
    for service, revision in before.items():
        assert [(t["revision"], t["percent"]) for t in routes[service]["traffic"]] == [(revision, 100)]
    # The router's own counts, not the analysis: the faulty candidate answered 5xx, the previous none.
    counts = private_stack.revision_stats("dashboard", since=2**62)["counts"]
    candidate = aborted["revisions_candidate"]["dashboard"]
    assert counts[candidate].get("5xx", 0) > 0
    assert counts[before["dashboard"]].get("5xx", 0) == 0
    assert load_accounts(private_stack) == [], "the canary's load users were left behind"

    # 2. The same release without the fault: every step and the bake pass, the candidates are live.
    code = deploy_tool("canary", env=env, log=log)
    assert code == 0, log.read_text(encoding="utf-8")
    promoted = latest_record(runs, "canary")
    assert promoted["decision"] == "promoted"
    phases = promoted["canary"]["phases"]
    assert [(p["name"], p["decision"]) for p in phases] == [
        ("25%", "advance"),
        ("50%", "advance"),
        ("bake", "advance"),
    ]
    assert live_revisions(private_stack) == promoted["revisions_candidate"]
    # Each step gave the candidate its share of the dashboard's requests (the router's exact split).
    for phase in phases[:2]:
        served = phase["timeline"][-1]["services"]["dashboard"]
        total = sum(f["requests"] for f in served.values())
        mine = served[promoted["revisions_candidate"]["dashboard"]]["requests"]
        assert abs(mine / total - phase["percent"] / 100) <= 0.05, (phase["name"], mine, total)
    picture = Path(promoted["canary"]["picture"])
    assert picture.read_bytes()[:8] == PNG_MAGIC
    assert "## Canary" in next(runs.glob("*-canary-*.md")).read_text(encoding="utf-8")
    assert load_accounts(private_stack) == []
