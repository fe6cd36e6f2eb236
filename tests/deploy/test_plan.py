"""The dry run (`plan`), the suite command and option parsing: no side effect, no network."""

from __future__ import annotations

import io

import pytest

from deploy import cli, runner, verify
from deploy.record import RunRecord
from deploy.shell import Shell
from deploy.steps import Change, Step
from fixtures.deployment import FakeCloud


@pytest.mark.parametrize("env", ["staging", "production"])
def test_plan_prints_every_command_in_order_and_runs_nothing(fake_cloud: FakeCloud, env: str) -> None:
    """Every step header and its commands, traffic moves after verification, no command executed."""
    out = io.StringIO()
    assert cli.main(["plan", "--env", env], out=out) == 0
    text = out.getvalue()
    assert fake_cloud.calls() == [], "the dry run executed a command"
    order = [
        "infrastructure",
        "secrets present",
        "deploy candidates",
        "deploy firestore.rules",
        "verify candidates",
        "canary steps",
        "promote candidates",
        "bake at 100 %",
        "monitoring active",
        "post-launch checklist",
    ]
    if env == "production":
        order.insert(2, "backup Firestore")
    positions = [text.index(f"] {title}") for title in order]
    assert positions == sorted(positions)
    assert text.index("--no-traffic") < text.index("--to-tags=cand-t1=5 ")
    # The canary's shares step by step, every service each time, before all traffic moves.
    steps = [text.index(f"imageflow-dashboard --to-tags=cand-t1={p} ") for p in (5, 25, 50, 100)]
    assert steps == sorted(steps)
    assert "gcloud firestore export" in text if env == "production" else "gcloud firestore export" not in text
    assert f"[{len(order)}/{len(order)}] post-launch checklist" in text
    assert fake_cloud.record()["dry_run"] is True


def test_no_canary_promotes_in_one_switch_after_the_lane(fake_cloud: FakeCloud) -> None:
    """--no-canary is the explicit opt-out: no canary step, no bake, traffic from 0 to 100 %."""
    out = io.StringIO()
    assert cli.main(["plan", "--env", "staging", "--no-canary"], out=out) == 0
    text = out.getvalue()
    assert "canary steps" not in text
    assert "bake at 100 %" not in text
    assert "--to-tags=cand-t1=5 " not in text
    assert "--to-tags=cand-t1=100" in text


def test_plan_local_needs_no_stack(fake_cloud: FakeCloud) -> None:
    """The local plan is described without a running stack."""
    out = io.StringIO()
    assert cli.main(["plan", "--env", "local"], out=out) == 0
    assert "deploy candidates" in out.getvalue()


def test_options_before_double_dash_and_pytest_args_after() -> None:
    """Known options are the tool's; unknown ones and everything after -- go to pytest."""
    options, pytest_args = cli.parse(["e2e", "-k", "upload_jpeg", "--confirm", "--", "--env", "x"])
    assert options.verb == "e2e"
    assert options.confirm
    assert options.env == ""
    assert pytest_args == ["-k", "upload_jpeg", "--env", "x"]


def test_production_runs_only_smoke_and_never_destructive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate's suite command selects smoke scenarios and excludes destructive ones."""
    monkeypatch.delenv("IMAGEFLOW_VERIFY_COMMAND", raising=False)
    ctx = cli.context(cli.parse(["production_gate", "-x"])[0], ["-x"])
    command = verify.suite_command(ctx)
    marker = len(command) - 1 - command[::-1].index("-m")
    assert command[marker + 1] == "smoke and not destructive"
    assert command[-1] == "-x"
    assert ctx.backup is True


def test_the_suite_runs_on_the_default_workers_unless_the_arguments_choose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate's suite is parallel by default; the user's -n wins, and a debugger runs it serially."""
    monkeypatch.delenv("IMAGEFLOW_VERIFY_COMMAND", raising=False)

    def command(*pytest_args: str) -> list[str]:
        return verify.suite_command(cli.context(cli.parse(["e2e"])[0], list(pytest_args)))

    default = command("-k", "upload_jpeg")
    assert default[-4:] == ["-n", verify.DEFAULT_WORKERS, "-k", "upload_jpeg"]
    for chosen in (["-n", "0"], ["-n3"], ["--numprocesses=auto"], ["--numprocesses", "4"]):
        assert command(*chosen).count("-n") == chosen.count("-n"), chosen
        assert command(*chosen)[-len(chosen) :] == chosen
    for serial in (["--pdb"], ["-p", "no:xdist"], ["-pno:xdist"], ["--trace"]):
        assert "-n" not in command(*serial), serial


def test_a_run_that_selects_no_test_is_red_with_a_reason() -> None:
    """pytest exit 5 (nothing selected) never counts as verified, and the record says why."""
    assert (
        verify.red_reason(5)
        == "the suite was red (exit 5: no test was selected (check -k / -m): nothing was verified)"
    )
    assert verify.red_reason(1) == "the suite was red (exit 1: tests failed)"


def test_a_sigterm_mid_step_still_undoes_what_the_run_changed() -> None:
    """SIGTERM arrives as SystemExit (stack.sigterm): a canary's traffic split must not stay behind."""
    undone: list[str] = []
    changes: list[Change] = []

    def split_traffic() -> str:
        changes.append(Change("traffic back", lambda: undone.append("traffic back"), "manual"))
        return "split"

    def terminated() -> str:
        raise SystemExit(143)

    record = RunRecord(session="deploy", environment="local", kind="local", commit="c", run_id="r")
    shell = Shell(record, out=io.StringIO())
    steps = [Step("canary", "canary", split_traffic), Step("promote", "promote", terminated)]
    assert runner.run_steps(steps, changes, record, shell) == runner.EXIT_FAILED
    assert undone == ["traffic back"]
    assert record.steps[-1].status == "failed"
    assert "SystemExit" in record.reason
