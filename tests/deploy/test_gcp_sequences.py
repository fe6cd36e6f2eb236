"""The Google Cloud executor against fake gcloud/firebase: exact command sequences and the failure paths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deploy import cli
from fixtures.deployment import RULES_V0, RULES_V1, FakeCloud
from fixtures.expected_commands import COMMIT, IMAGE, LANE, SERVICES, TAG, Commands


def run(*argv: str) -> tuple[int, str]:
    """Run `python -m deploy ...` in-process; return the exit code and what it printed."""
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def commands(cloud: FakeCloud, project: str = "imageflow-staging", env: str = "staging") -> Commands:
    """Expected command lines for the project of the test."""
    expected = Commands(project, env, COMMIT, cloud.runs_dir)
    expected.url_base = cloud.url_base
    return expected


def live(cloud: FakeCloud, service: str) -> str:
    """The revision with 100 % of a fake service's traffic."""
    traffic = cloud.state["services"][f"imageflow-{service}"]["traffic"]
    return next(t["revision"] for t in traffic if t.get("percent") == 100)


@pytest.fixture
def staging(fake_cloud: FakeCloud, rules_history: str) -> FakeCloud:
    """A staging project that already runs the previous release (deployed from the rules_history commit)."""
    fake_cloud.seed_live(commit=rules_history)
    return fake_cloud


def test_staging_e2e_runs_the_exact_plan_and_promotes(staging: FakeCloud, rules_history: str) -> None:
    """Green: every step's commands in order, traffic moved only after the suite, record written."""
    code, output = run("staging_e2e")
    c = commands(staging)
    expected = c.verified() + c.canary() + c.promote() + c.monitoring_present() + c.checklist()
    assert staging.calls() == expected
    assert code == 0, output
    assert all(live(staging, s) != f"imageflow-{s}-00001-old" for s in SERVICES)
    assert staging.state["rules"]["imageflow-staging"] == RULES_V1
    assert not [t for t in staging.state["topics"] if t.startswith(LANE)], "lane topics left behind"
    record = staging.record()
    assert record["decision"] == "promoted"
    assert record["exit_code"] == 0
    assert record["revisions_before"] == {s: f"imageflow-{s}-00001-old" for s in SERVICES}
    assert record["revisions_after"] == {s: live(staging, s) for s in SERVICES}
    assert record["verification"]["passed"] is True
    assert record["verification"]["lane"] == LANE
    assert "[3/10] deploy candidates ... done in" in output
    written = "".join(p.read_text(encoding="utf-8") for p in staging.runs_dir.glob("*.*") if p.is_file())
    for secret in ("fake-token-not-a-secret", "fake-api-key-for-tests"):
        assert secret not in output, "a token or key reached the terminal"
        assert secret not in written, "a token or key reached the run record"
    assert (staging.runs_dir / (staging.runs_dir.glob("*.json").__next__().stem + ".md")).exists()


def test_a_regression_under_traffic_aborts_the_first_step_and_keeps_the_candidates_tagged(
    staging: FakeCloud, rules_history: str
) -> None:
    """A quarter of the candidates' requests fail: caught at 5 %, all traffic back at once, exit 1."""
    state = staging.state
    state["regressed_images"] = {IMAGE: "errors"}
    staging.write(state)
    code, output = run("staging_e2e")
    c = commands(staging)
    expected = c.verified() + c.canary((5,)) + c.traffic_back() + [c.firebase(rules_history)]
    assert staging.calls() == expected
    assert code == 1, output
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    services = staging.state["services"]
    tagged = [t for s in SERVICES for t in services[f"imageflow-{s}"]["traffic"] if t.get("tag") == TAG]
    assert len(tagged) == len(SERVICES), "the candidates' tags must stay for inspection"
    assert all(not t["percent"] for t in tagged)
    record = staging.record()
    assert record["decision"] == "rolled back"
    phase = record["canary"]["phases"][0]
    assert (phase["name"], phase["decision"]) == ("5%", "abort")
    assert "http error rate" in record["reason"]
    assert any("kept with tag cand-t1 for inspection" in w for w in record["warnings"])


def test_a_failure_only_at_full_traffic_is_rolled_back_by_the_bake(
    staging: FakeCloud, rules_history: str
) -> None:
    """Clean at every share, failing at 100 %: the bake rolls the release back (traffic and rules), exit 1."""
    state = staging.state
    state["regressed_images"] = {IMAGE: "errors_at_full"}
    staging.write(state)
    code, output = run("staging_e2e")
    c = commands(staging)
    expected = c.verified() + c.canary() + c.promote() + c.traffic_back() + [c.firebase(rules_history)]
    assert staging.calls() == expected
    assert code == 1, output
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    record = staging.record()
    assert [p["decision"] for p in record["canary"]["phases"]] == ["advance", "advance", "advance", "abort"]
    assert [s["status"] for s in record["steps"]][-3:] == ["failed", "not run", "not run"]
    assert "bake aborted" in record["reason"]


def test_production_gate_backs_up_first_and_needs_confirmation(
    fake_cloud: FakeCloud, rules_history: str
) -> None:
    """Production: refused without confirmation; with it the backup comes before any change."""
    fake_cloud.seed_live(project="imageflow-production", commit=rules_history)
    code, _ = run("production_gate")
    assert code == 2
    assert fake_cloud.calls() == []
    code, output = run("production_gate", "--confirm")
    assert code == 0, output
    c = commands(fake_cloud, "imageflow-production", "production")
    backup = "gs://imageflow-production-backups/backup-t1"
    expected = (
        c.preflight()
        + c.infrastructure_present()
        + c.secrets()
        + [c.gcloud("firestore", "export", backup, "--format=json")]
        + c.candidates()
        + c.rules("imageflow-dashboard-00001-old")
        + c.lane_open()
        + c.lane_close()
        + c.canary()
        + c.promote()
        + c.monitoring_present()
        + c.checklist()
    )
    assert fake_cloud.calls() == expected
    assert fake_cloud.record()["backup"] == backup
    assert fake_cloud.state["exports"] == [backup]


def test_test_failures_setting_reaches_staging_services_and_never_production(
    fake_cloud: FakeCloud, rules_history: str
) -> None:
    """Staging services get IMAGEFLOW_TEST_FAILURES=allowed; no production command carries it."""
    fake_cloud.seed_live(commit=rules_history)
    assert run("staging_e2e")[0] == 0
    staging_deploys = [c for c in fake_cloud.calls() if c.startswith("gcloud run deploy ")]
    assert len(staging_deploys) == len(SERVICES), staging_deploys
    assert all("IMAGEFLOW_TEST_FAILURES=allowed" in c for c in staging_deploys), staging_deploys

    fake_cloud.clear_log()
    fake_cloud.seed_live(project="imageflow-production", commit=rules_history)
    code, output = run("production_gate", "--confirm")
    assert code == 0, output
    production = fake_cloud.calls()
    assert [c for c in production if c.startswith("gcloud run deploy ")], "no production deploy ran"
    assert not [c for c in production if "IMAGEFLOW_TEST_FAILURES" in c]


def test_red_verification_rolls_back_exactly_and_exits_non_zero(
    staging: FakeCloud, rules_history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Suite red: lane closed, previous rules redeployed, candidate tags removed, traffic untouched."""
    monkeypatch.setenv("IMAGEFLOW_VERIFY_COMMAND", "python3 -c 'raise SystemExit(1)'")
    code, output = run("staging_e2e")
    assert code == 1, output
    c = commands(staging)
    undo = [f"git -C {staging.rules_path.parent / 'rules-repo'} show {rules_history}:firestore.rules"]
    expected = c.verified() + [c.firebase(rules_history)] + [c.remove_tag(s) for s in reversed(SERVICES)]
    assert staging.calls() == [line for line in expected if not line.startswith("git ")]
    assert undo  # git show is a local command: checked through the record below
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    assert staging.state["rules"]["imageflow-staging"] == RULES_V0
    assert not any(t.get("tag") for s in staging.state["services"].values() for t in s["traffic"])
    record = staging.record()
    assert record["decision"] == "rolled back"
    assert record["exit_code"] == 1
    assert record["verification"]["passed"] is False
    assert any(cmd["command"] == undo[0] for e in record["rollback"] for cmd in e["commands"])


def test_deploy_failing_midway_undoes_only_what_changed(
    staging: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exif deploy fails: the three earlier candidates lose their tags, nothing else is touched."""
    monkeypatch.setenv("FAKE_CLOUD_FAIL", "deploy imageflow-exif")
    code, output = run("staging_e2e")
    assert code == 1
    c = commands(staging)
    done = SERVICES[: SERVICES.index("exif")]
    expected = (
        c.preflight()
        + c.infrastructure_present()
        + c.secrets()
        + c.candidates(done)
        + [c.describe("exif"), c.deploy("exif")]
        + [c.remove_tag(s) for s in reversed(done)]
    )
    assert staging.calls() == expected
    assert "ERROR: (gcloud.run.deploy)" in output
    assert staging.state["rules"]["imageflow-staging"] == RULES_V1, (
        "rules were never deployed, so never touched"
    )
    assert staging.record()["steps"][3]["status"] == "failed"


def test_unreadable_rules_file_fails_its_step_and_undoes_the_candidates(
    staging: FakeCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """firestore.rules unreadable: one line names the file, candidates lose their tags, rules untouched."""
    missing = tmp_path / "absent" / "firestore.rules"
    monkeypatch.setenv("IMAGEFLOW_RULES_FILE", str(missing))
    code, output = run("staging_e2e")
    assert code == 1
    assert f"cannot read {missing}: No such file or directory" in output
    assert "Traceback" not in output
    c = commands(staging)
    assert staging.calls()[-len(SERVICES) :] == [c.remove_tag(s) for s in reversed(SERVICES)]
    assert not any("firebase deploy" in line for line in staging.calls())
    assert staging.state["rules"]["imageflow-staging"] == RULES_V1


def test_promotion_failing_midway_routes_back(
    staging: FakeCloud, rules_history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Traffic already moved for some services goes back to their previous revisions, newest change first."""
    monkeypatch.setenv("FAKE_CLOUD_FAIL", "update-traffic imageflow-exif --to-tags")
    code, _ = run("staging_e2e")
    assert code == 1
    c = commands(staging)
    promotion_order = list(reversed(SERVICES))  # consumers first, the dashboard last
    moved = promotion_order[: promotion_order.index("exif")]
    tail = staging.calls()[-(len(moved) + 1 + len(SERVICES)) :]
    assert tail == (
        [c.route_back(s, f"imageflow-{s}-00001-old") for s in reversed(moved)]
        + [c.firebase(rules_history)]
        + [c.remove_tag(s) for s in reversed(SERVICES)]
    )
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)


def test_rollback_that_fails_stops_loudly_with_manual_commands(
    staging: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An undo fails: exit 3, the rest is not attempted, the remaining commands are printed and recorded."""
    monkeypatch.setenv("IMAGEFLOW_VERIFY_COMMAND", "python3 -c 'raise SystemExit(1)'")
    monkeypatch.setenv("FAKE_CLOUD_FAIL", f"update-traffic imageflow-exif --remove-tags={TAG}")
    code, output = run("staging_e2e")
    assert code == 3
    c = commands(staging)
    remaining = [c.remove_tag(s) for s in ("exif", "thumbnailer", "validator", "dashboard")]
    assert "ROLLBACK FAILED" in output
    for line in remaining:
        assert f"  {line}" in output
    assert staging.calls()[-1] == remaining[0], "nothing was attempted after the failed undo"
    record = staging.record()
    assert record["manual_commands"] == remaining
    assert record["decision"] == "ROLLBACK FAILED"


def test_unready_service_after_promotion_rolls_everything_back(staging: FakeCloud) -> None:
    """The post-launch checklist is red: promotion is undone too, and the record says why."""
    state = staging.state
    state["unready_services"] = ["imageflow-analysis"]
    staging.write(state)
    code, _ = run("staging_e2e")
    assert code == 1
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    assert "imageflow-analysis not ready" in staging.record()["reason"]


def test_a_public_agent_turns_the_checklist_red(staging: FakeCloud) -> None:
    """An agent anyone may invoke (its IAM policy could not be tightened): red, rolled back, named."""
    state = staging.state
    state["services"]["imageflow-thumbnailer"]["public"] = True
    state["iam_denied"] = True  # the deploy's --no-allow-unauthenticated only warns, as the real CLI does
    staging.write(state)
    code, _ = run("staging_e2e")
    assert code == 1
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    reason = staging.record()["reason"]
    assert "imageflow-thumbnailer is public (allUsers has roles/run.invoker)" in reason
    assert "imageflow-dashboard is public" not in reason
    assert not [s for s in SERVICES if s != "thumbnailer" and f"imageflow-{s} is public" in reason]


def test_the_deploy_makes_every_agent_private_and_the_dashboard_public(staging: FakeCloud) -> None:
    """A public agent left over from before is made private by the deploy; the checklist then sees it so."""
    state = staging.state
    state["services"]["imageflow-exif"]["public"] = True
    staging.write(state)
    code, output = run("staging_e2e")
    assert code == 0, output
    public = {name for name, service in staging.state["services"].items() if service.get("public")}
    assert public == {"imageflow-dashboard"}


def test_the_push_identity_is_made_each_agents_invoker(staging: FakeCloud) -> None:
    """Each agent, private, lets exactly the push service account invoke it; the dashboard is untouched."""
    code, output = run("staging_e2e")
    assert code == 0, output
    services = staging.state["services"]
    push_identity = "serviceAccount:imageflow-pusher@imageflow-staging.iam.gserviceaccount.com"
    agents = [s for s in SERVICES if s != "dashboard"]
    assert all(services[f"imageflow-{s}"].get("invokers") == [push_identity] for s in agents)
    assert not services["imageflow-dashboard"].get("invokers")


def test_a_refused_invoker_grant_fails_the_candidates_and_undoes_them(
    staging: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the push identity as invoker no push would arrive: the candidates step fails, undone."""
    monkeypatch.setenv("FAKE_CLOUD_FAIL", "add-iam-policy-binding imageflow-validator")
    code, output = run("staging_e2e")
    assert code == 1
    assert "ERROR: (gcloud.run.services.add-iam-policy-binding)" in output
    assert all(live(staging, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    assert staging.record()["steps"][3]["status"] == "failed"


def test_missing_secret_fails_before_any_change(staging: FakeCloud) -> None:
    """A secret without an enabled version: the plan stops at the secrets step, nothing to undo."""
    state = staging.state
    del state["secrets"]["imageflow-firebase-api-key"]
    staging.write(state)
    code, output = run("staging_e2e")
    assert code == 1
    assert "secret imageflow-firebase-api-key has no enabled latest version" in output
    assert not any(" deploy " in f" {line} " for line in staging.calls())


def test_first_deploy_creates_infrastructure_and_services(fake_cloud: FakeCloud, rules_history: str) -> None:
    """An empty project: topics created, services created with traffic, subscriptions once services exist."""
    state = fake_cloud.state
    state["secrets"] = {"imageflow-session-secret": "ENABLED", "imageflow-firebase-api-key": "ENABLED"}
    fake_cloud.write(state)
    code, output = run("staging_e2e", "--rules-from", rules_history)
    assert code == 0, output
    c = commands(fake_cloud)
    calls = fake_cloud.calls()
    assert c.deploy("validator", new=True) in calls
    manifest = c.manifest
    assert set(fake_cloud.state["topics"]) == set(manifest.topics)
    assert set(fake_cloud.state["subscriptions"]) == {
        manifest.subscription_name(a.name, t) for a in manifest.agents for t in a.triggers
    }
    assert "gs://imageflow-staging-uploads" in fake_cloud.state["buckets"]


def test_rollback_session_restores_previous_revisions_rules_and_named_backup(
    fake_cloud: FakeCloud, rules_history: str
) -> None:
    """After a release: rollback routes to the previous revisions, redeploys old rules, imports the backup."""
    fake_cloud.seed_live(project="imageflow-production", commit=rules_history)
    assert run("production_gate", "--confirm")[0] == 0
    fake_cloud.clear_log()
    code, output = run("rollback", "--env", "production", "--confirm", "--restore-backup", "backup-t1")
    assert code == 0, output
    c = commands(fake_cloud, "imageflow-production", "production")
    finds: list[str] = []
    for s in SERVICES:
        finds += [c.describe(s), c.run("revisions", "list", f"--service=imageflow-{s}", "--format=json")]
    expected = (
        c.preflight()
        + finds
        + [
            c.run("revisions", "describe", "imageflow-dashboard-00001-old", "--format=json"),
            *[c.route_back(s, f"imageflow-{s}-00001-old") for s in SERVICES],
            c.firebase(rules_history),
            c.gcloud("firestore", "import", "gs://imageflow-production-backups/backup-t1"),
        ]
    )
    assert fake_cloud.calls() == expected
    assert all(live(fake_cloud, s) == f"imageflow-{s}-00001-old" for s in SERVICES)
    assert fake_cloud.state["rules"]["imageflow-production"] == RULES_V0
    assert fake_cloud.state["imports"] == ["gs://imageflow-production-backups/backup-t1"]


def test_rollback_session_without_flag_never_restores_data(staging: FakeCloud) -> None:
    """Data is restored only with an explicit --restore-backup."""
    assert run("staging_e2e")[0] == 0
    assert run("rollback", "--env", "staging")[0] == 0
    assert staging.state["imports"] == []
    assert not any("firestore import" in line for line in staging.calls())


def test_first_deploy_failing_leaves_the_project_as_it_found_it(
    fake_cloud: FakeCloud, rules_history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Empty project, the third service fails: new services deleted, created topics and bucket removed."""
    state = fake_cloud.state
    state["secrets"] = {"imageflow-session-secret": "ENABLED", "imageflow-firebase-api-key": "ENABLED"}
    fake_cloud.write(state)
    monkeypatch.setenv("FAKE_CLOUD_FAIL", "deploy imageflow-thumbnailer")
    code, output = run("staging_e2e", "--rules-from", rules_history)
    assert code == 1, output
    after = fake_cloud.state
    assert after["services"] == {}
    assert after["topics"] == []
    assert after["subscriptions"] == {}
    assert after["buckets"] == []
    assert after["databases"] == ["imageflow-staging"], "a created database is never deleted automatically"
    c = commands(fake_cloud)
    assert c.run("services", "delete", "imageflow-thumbnailer", "--quiet") not in fake_cloud.calls()
    assert c.run("services", "delete", "imageflow-validator", "--quiet") in fake_cloud.calls()
