"""The reports: the Allure HTML report shows a run with its trend and categories, and no secret survives.

The session-end gate (fixtures/reporting.py) scrubs reports/ of every registered secret and of
cookie/authorization headers, then scans again and fails the run if anything is left. These tests
prove the scanner and the gate on planted secrets, in inner pytest runs of their own.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import allure
import playwright
import pytest
from playwright.sync_api import Browser, expect

from fixtures.allure_report import generate_allure_html, report_dir
from fixtures.reporting import labels
from fixtures.scrubber import scan_for_secrets, scrub_secrets
from stack.state import REPO_ROOT

Severity = allure.severity_level
PLANTED = "Pw0planted0secret0value0for0the0scanner"
INNER_TIMEOUT_SECONDS = 120


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _network_line(cookie: str) -> bytes:
    """A request as Playwright's trace.network records it, carrying a session cookie."""
    request = {
        "method": "POST",
        "url": "http://127.0.0.1:1/login",
        "cookies": [{"name": "imageflow_session", "value": cookie}],
        "headers": [{"name": "Cookie", "value": f"imageflow_session={cookie}"}],
    }
    return json.dumps({"type": "resource-snapshot", "snapshot": {"request": request}}).encode()


@labels("Reports", "Secret scrubbing", Severity.CRITICAL)
def test_scanner_finds_a_planted_secret_in_files_and_nested_zip_members(tmp_path: Path) -> None:
    """A secret raw, URL-encoded, or in a zip inside a zip is found, then scrubbed to ***."""
    secrets = {PLANTED: "the planted password"}
    (tmp_path / "plain.txt").write_text(f"password={PLANTED}\n")
    (tmp_path / "form.har").write_text(f"email=a%40b&password={PLANTED}")
    inner = _zip({"trace.trace": json.dumps({"method": "fill", "value": PLANTED}).encode()})
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "attachment.zip").write_bytes(_zip({"trace.zip": inner, "clean.txt": b"nothing"}))
    (tmp_path / "clean.json").write_text('{"status": "passed"}')

    found = {(Path(leak.path.split("!")[0]).name, leak.label) for leak in scan_for_secrets(tmp_path, secrets)}
    assert found == {
        ("plain.txt", "the planted password"),
        ("form.har", "the planted password"),
        ("attachment.zip", "the planted password"),
    }

    assert scrub_secrets(tmp_path, secrets) == 3
    assert scan_for_secrets(tmp_path, secrets) == []
    assert (tmp_path / "plain.txt").read_text() == "password=***\n"
    with zipfile.ZipFile(tmp_path / "nested" / "attachment.zip") as outer:
        with zipfile.ZipFile(io.BytesIO(outer.read("trace.zip"))) as trace:
            assert json.loads(trace.read("trace.trace")) == {"method": "fill", "value": "***"}
        assert outer.read("clean.txt") == b"nothing"


@labels("Reports", "Secret scrubbing", Severity.CRITICAL)
def test_scanner_flags_a_session_cookie_it_was_never_told_about(tmp_path: Path) -> None:
    """Cookie headers in a trace are credentials whatever their value: flagged, then masked."""
    trace = tmp_path / "trace.zip"
    trace.write_bytes(_zip({"trace.network": _network_line("eyJ1aWQiOiJ4In0.unregistered.sig")}))
    leaks = scan_for_secrets(tmp_path, {})
    assert [leak.label for leak in leaks] == ["an unmasked cookie or authorization header"]
    scrub_secrets(tmp_path, {})
    assert scan_for_secrets(tmp_path, {}) == []
    with zipfile.ZipFile(trace) as archive:
        request = json.loads(archive.read("trace.network"))["snapshot"]["request"]
    assert request["cookies"] == [{"name": "imageflow_session", "value": "***"}]
    assert request["headers"] == [{"name": "Cookie", "value": "***"}]


# --- inner pytest runs ----------------------------------------------------------------------------

INNER_INI = """[pytest]
reports_dir = reports
addopts = -p fixtures.target -p fixtures.reporting -p no:cacheprovider
    --alluredir=reports/allure-results --junitxml=reports/junit.xml
"""


def _inner_env() -> dict[str, str]:
    """The environment of an inner run: this repository importable, no state shared with this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "IMAGEFLOW_RUN_ID"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["IMAGEFLOW_TARGET"] = "local"
    return env


def _run_inner(project: Path, test_source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (project / "pytest.ini").write_text(INNER_INI)
    (project / "test_inner.py").write_text(test_source)
    with allure.step(f"Inner pytest run in {project}"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "--rootdir",
                str(project),
                "-c",
                str(project / "pytest.ini"),
                *args,
            ],
            cwd=project,
            env=_inner_env(),
            capture_output=True,
            text=True,
            timeout=INNER_TIMEOUT_SECONDS,
            check=False,
        )
    allure.attach(
        result.stdout + result.stderr, name="inner run output", attachment_type=allure.attachment_type.TEXT
    )
    return result


LEAKY_TEST = f'''
import zipfile
from pathlib import Path
from fixtures.scrubber import register_secret

def test_writes_a_password_into_the_reports():
    register_secret("{PLANTED}", "the planted password")
    reports = Path("reports")
    (reports / "playwright").mkdir(parents=True, exist_ok=True)
    (reports / "leak.log").write_text("login with {PLANTED}")
    with zipfile.ZipFile(reports / "playwright" / "trace.zip", "w") as trace:
        trace.writestr("trace.trace", '{{"method": "fill", "value": "{PLANTED}"}}')
    UNSCRUBBABLE
'''


@labels("Reports", "Secret scrubbing", Severity.CRITICAL)
def test_session_end_scrubs_every_registered_secret_from_reports(tmp_path: Path) -> None:
    """A run that wrote a password into its reports ends green with the password masked everywhere."""
    result = _run_inner(tmp_path, LEAKY_TEST.replace("UNSCRUBBABLE", "pass"))
    assert result.returncode == 0, result.stdout[-2000:]
    reports = tmp_path / "reports"
    assert (reports / "leak.log").read_text() == "login with ***"
    assert scan_for_secrets(reports, {PLANTED: "the planted password"}) == []
    assert PLANTED not in (reports / "junit.xml").read_text()


@labels("Reports", "Secret scrubbing", Severity.CRITICAL)
def test_session_end_fails_the_run_when_a_secret_cannot_be_proven_gone(tmp_path: Path) -> None:
    """A report the scrubber cannot read (a broken archive) fails the run, naming the file, not the secret."""
    broken_archive = '(reports / "broken.zip").write_bytes(bytes([80, 75, 3, 4]) + b"not an archive")'
    result = _run_inner(tmp_path, LEAKY_TEST.replace("UNSCRUBBABLE", broken_archive))
    assert result.returncode == 1, result.stdout[-2000:]
    assert "SECRET LEAK:" in result.stdout
    assert "broken.zip holds an unreadable archive" in result.stdout
    assert PLANTED not in result.stdout + result.stderr


KNOWN_TEST = """
import allure

@allure.epic("Inner run")
@allure.feature("Reports")
@allure.story("Known test")
@allure.severity(allure.severity_level.MINOR)
def test_known_inner_scenario_{marker}():
    with allure.step("a step the report shows"):
        assert 1 + 1 == 2
"""


@pytest.fixture
def serve_directory() -> Iterator[Callable[[Path], str]]:
    """Serve directories over http on 127.0.0.1 (the Allure report needs http, not file://)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        return


@labels("Reports", "Allure HTML report", Severity.NORMAL)
def test_allure_html_report_shows_the_runs_test(
    tmp_path: Path, browser: Browser, serve_directory: Callable[[Path], str]
) -> None:
    """allure generate turns a run's results into a report that Chromium shows, test and environment."""
    marker = os.urandom(3).hex()
    result = _run_inner(tmp_path, KNOWN_TEST.format(marker=marker))
    assert result.returncode == 0, result.stdout[-2000:]
    results = tmp_path / "reports" / "allure-results"
    assert (results / "environment.properties").read_text().startswith("target=local\n")

    with allure.step("allure generate"):
        index = generate_allure_html(results, tmp_path / "reports" / "allure-report")
    url = serve_directory(index.parent)

    context = browser.new_context()
    try:
        page = context.new_page()
        with allure.step("Open the report's suites in Chromium"):
            page.goto(url + "index.html#suites")
        with allure.step("Expand the inner run's suite and open its test"):
            page.get_by_text("test_inner", exact=True).click()
            page.get_by_text(f"test_known_inner_scenario_{marker}").click()
        expect(page.get_by_text("a step the report shows")).to_be_visible()
        page.goto(url + "index.html")
        expect(page.get_by_text("git.commit")).to_be_visible(timeout=30_000)
    except AssertionError:
        allure.attach(page.screenshot(), name="report", attachment_type=allure.attachment_type.PNG)
        raise
    finally:
        context.close()


NEVER_FIRING_TEST = """
from fixtures.diagnosis import diagnose, explain

def test_passes():
    pass

def test_thumbnailer_never_fires():
    # The watcher's own account of a workflow whose thumbnailer never took its trigger.
    document = {"status": "processing", "steps": {
        "validator": {"status": "done", "attempts": 1, "revision": "r1", "published": True,
                      "output": {"format": "JPEG", "width": 1, "height": 1, "bytes": 1, "sha256": "0"}},
        "thumbnailer": {"status": "pending", "attempts": 0}}}
    agents = ["validator", "thumbnailer"]
    assert False, explain("wf-1", document, diagnose(document, agents), 25.0, reached=False)
"""


@labels("Reports", "Allure HTML report", Severity.NORMAL)
def test_second_report_shows_the_trend_of_both_runs_and_the_failures_category(
    tmp_path: Path, browser: Browser, serve_directory: Callable[[Path], str]
) -> None:
    """Two gated runs in a row: the second report's Trend has both builds, Categories names the defect."""
    for build in (1, 2):
        with allure.step(f"Gated run {build}: one test passes, one fails, --allure-html"):
            result = _run_inner(tmp_path, NEVER_FIRING_TEST, "--allure-html")
        assert result.returncode == 1, result.stdout[-2000:]
        assert "allure report: " in result.stdout, result.stdout[-2000:]
    report = report_dir(tmp_path / "reports", "local")
    trend = json.loads((report / "history" / "history-trend.json").read_text())
    assert [item["buildOrder"] for item in trend] == [2, 1]

    context = browser.new_context()
    page = context.new_page()
    try:
        url = serve_directory(report)
        with allure.step("Open the second report's overview: the Trend widget has builds #1 and #2"):
            page.goto(url + "index.html")
            widget = page.locator(".history-trend").filter(has=page.get_by_role("heading", name="Trend"))
            expect(widget.get_by_text("#1", exact=True)).to_be_visible(timeout=30_000)
            expect(widget.get_by_text("#2", exact=True)).to_be_visible()
        allure.attach(
            page.screenshot(full_page=True), name="overview", attachment_type=allure.attachment_type.PNG
        )
        with allure.step("Open Categories: the failing test is under the thumbnailer's never-fired defect"):
            page.goto(url + "index.html#categories")
            page.get_by_text("Product defect: thumbnailer never fired").click()
            expect(page.get_by_text("workflow wf-1 did not complete within 25s").first).to_be_visible()
        allure.attach(
            page.screenshot(full_page=True), name="categories", attachment_type=allure.attachment_type.PNG
        )
    except AssertionError:
        allure.attach(page.screenshot(), name="report", attachment_type=allure.attachment_type.PNG)
        raise
    finally:
        context.close()


TRACE_VIEWER = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "vite" / "traceViewer"
LOGIN_FORM = """<form method="post" action="/login"><label>Email <input name="email"></label>
<label>Password <input name="password" type="password"></label><button>Log in</button></form>"""


@labels("Reports", "Secret scrubbing", Severity.CRITICAL)
def test_scrubbed_trace_still_opens_in_the_trace_viewer_with_the_password_masked(
    tmp_path: Path, browser: Browser, serve_directory: Callable[[Path], str]
) -> None:
    """A real trace of a password fill is scrubbed, and Playwright's viewer still shows the action, masked."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(LOGIN_FORM)
    context = browser.new_context()
    context.tracing.start(screenshots=True, snapshots=True)
    page = context.new_page()
    page.goto(serve_directory(site) + "index.html")
    page.get_by_label("Email").fill("e2e-trace@example.test")
    page.get_by_label("Password").fill(PLANTED)
    viewer_root = tmp_path / "viewer"
    shutil.copytree(TRACE_VIEWER, viewer_root)
    trace = viewer_root / "trace.zip"
    context.tracing.stop(path=trace)
    context.close()
    secrets = {PLANTED: "the planted password"}
    assert scan_for_secrets(trace, secrets), "the unscrubbed trace should hold the password"

    scrub_secrets(trace, secrets)
    assert scan_for_secrets(trace, secrets) == []

    viewer = serve_directory(viewer_root)
    viewer_context = browser.new_context()
    try:
        viewer_page = viewer_context.new_page()
        with allure.step("Open the scrubbed trace in Playwright's trace viewer"):
            viewer_page.goto(f"{viewer}index.html?trace={viewer}trace.zip")
        actions = viewer_page.get_by_test_id("actions-tree")
        expect(actions.get_by_text('Fill "***"')).to_be_visible(timeout=30_000)
        expect(actions.get_by_text('Fill "e2e-trace@example.test"')).to_be_visible()
    finally:
        viewer_context.close()
