"""The canary in the run's reports: the picture is drawn, and Allure itself renders the canary's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from scripted_traffic import ScriptedTraffic, run

from deploy import canary_report, cli, verify
from deploy.canary import CanaryAborted, CanaryRun
from deploy.context import RunContext
from fixtures.allure_report import generate_allure_html, prepare_results, report_dir


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunContext:
    """A local deploy run whose reports folder is tmp_path."""
    monkeypatch.setenv("IMAGEFLOW_REPORTS_DIR", str(tmp_path))
    monkeypatch.delenv("IMAGEFLOW_VERIFY_COMMAND", raising=False)
    return cli.context(cli.parse(["deploy", "--env", "local"])[0], [])


def aborted_run() -> CanaryRun:
    """A canary whose first step aborted: one dashboard request in four failed on the candidate."""
    canary = run(ScriptedTraffic(bad="errors"))
    with pytest.raises(CanaryAborted):
        canary.steps()
    return canary


def gate_report(reports: Path, target: str) -> Path:
    """A report as the gate's verification leaves it: one result, generated into reports/allure/<target>."""
    results = reports / verify.ALLURE_RESULTS
    results.mkdir(parents=True)
    (results / "gate-result.json").write_text(
        json.dumps({"uuid": "gate", "name": "test_upload", "status": "passed", "stage": "finished"}),
        encoding="utf-8",
    )
    report = report_dir(reports, target)
    prepare_results(results, report, target, "r1", ["validator", "exif"], {})
    return generate_allure_html(results, report).parent


def test_the_gate_suite_writes_its_reports_in_the_runs_reports_folder(
    ctx: RunContext, tmp_path: Path
) -> None:
    """The folder the canary adds its result to is the one the gate's suite wrote (and only that one)."""
    command = verify.suite_command(ctx)
    assert f"--alluredir={tmp_path / verify.ALLURE_RESULTS}" in command
    assert command[command.index("-o") + 1] == f"reports_dir={tmp_path}"
    assert not [c for c in command if c.startswith(("--junitxml=", "--output=")) and str(tmp_path) not in c]


def test_an_aborted_canary_is_a_failed_result_with_its_picture_in_the_report(
    ctx: RunContext, tmp_path: Path
) -> None:
    report = gate_report(tmp_path, "local")
    data = canary_report.keep(aborted_run(), ctx, verified=True)

    with Image.open(data["picture"]) as picture:
        assert (picture.format, picture.width > 400) == ("PNG", True)
    assert data["allure"] == str(report / "index.html")
    # What Allure made of it, read from the generated report (not from the result this module wrote).
    cases = [
        json.loads(p.read_text(encoding="utf-8")) for p in (report / "data" / "test-cases").glob("*.json")
    ]
    canary = next(c for c in cases if c["name"] == "canary and bake on local")
    assert {c["name"] for c in cases} == {"test_upload", "canary and bake on local"}, (
        "the gate's result is kept"
    )
    assert canary["status"] == "failed"
    assert canary["testStage"]["statusMessage"].startswith("canary aborted at 25%: dashboard http error rate")
    # The category is Allure's own match of the gate's categories.json against the message.
    assert [c["name"] for c in canary["extra"]["categories"]] == [
        "Product defect: regression under traffic (canary or bake)"
    ]
    steps = canary["testStage"]["steps"]
    assert [s["name"].split(":")[0] for s in steps] == ["25%"]
    assert steps[0]["status"] == "failed"
    assert any(
        s["status"] == "failed" and "dashboard http error rate" in s["name"] for s in steps[0]["steps"]
    )
    attachments = canary["testStage"]["attachments"]
    assert [(a["name"], a["type"]) for a in attachments] == [(canary_report.PICTURE_NAME, "image/png")]
    with Image.open(report / "data" / "attachments" / attachments[0]["source"]) as shown:
        assert shown.format == "PNG"


def test_a_passing_step_is_not_reported_until_the_bake_and_a_canary_alone_never(
    ctx: RunContext, tmp_path: Path
) -> None:
    """Mid-canary nothing is written; a canary without this run's verification stays out of the report."""
    canary = run(ScriptedTraffic())
    canary.steps()
    results = tmp_path / verify.ALLURE_RESULTS
    results.mkdir()
    assert "allure" not in canary_report.keep(canary, ctx, verified=True)
    assert list(results.iterdir()) == []
    canary.bake()
    data = canary_report.keep(canary, ctx, verified=False)
    assert data["allure"].startswith("not in a report")
    assert list(results.iterdir()) == []
    data = canary_report.keep(canary, ctx, verified=True)
    written = json.loads(Path(data["allure_result"]).read_text(encoding="utf-8"))
    assert written["status"] == "passed"
    assert [s["name"].split(":")[0] for s in written["steps"]] == ["25%", "50%", "bake"]
    assert "allure" not in data, "no earlier report: nothing to generate again"
