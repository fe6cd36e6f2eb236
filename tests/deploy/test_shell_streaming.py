"""Shell.run(stream=True): each line reaches the console while the command runs, scrubbed, and the record."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import psutil
import pytest

from deploy.record import RunRecord
from deploy.shell import OUTPUT_INDENT, Shell
from deploy.steps import StepFailed

# Prints a line, then blocks on a FIFO until the console has shown that line, then finishes.
PACED = (
    "import sys\n"
    "print('Deploying container to Cloud Run service [imageflow-dashboard]', flush=True)\n"
    "open(sys.argv[1]).read()\n"
    "print('Routing traffic...done', flush=True)\n"
    "print('Service URL: https://imageflow-dashboard.example', flush=True)\n"
)


class Console(io.StringIO):
    """A terminal that releases the paced command once it has shown the command's first line."""

    def __init__(self, fifo: Path, first: str) -> None:
        super().__init__()
        self.fifo, self.first = fifo, first
        self.seen_while_running = False

    def write(self, text: str) -> int:
        """Show text; on the first line of output, let the command go on (it waits for this)."""
        written = super().write(text)
        if text.startswith(OUTPUT_INDENT + self.first) and not self.seen_while_running:
            self.seen_while_running = True
            with self.fifo.open("w", encoding="utf-8") as release:
                release.write("go")
        return written


def fake(tmp_path: Path, body: str) -> list[str]:
    """argv of a fake CLI whose program is body (a file: the echoed command stays one short line)."""
    script = tmp_path / "fake_cli.py"
    script.write_text(body, encoding="utf-8")
    return [sys.executable, str(script)]


def streamed(console: str) -> list[str]:
    """The command output lines the console showed (under the `$ command` line)."""
    return [line for line in console.splitlines() if line.startswith(OUTPUT_INDENT)]


def shell(out: io.StringIO) -> Shell:
    """A Shell writing to out, recording into a fresh run record."""
    record = RunRecord(session="deploy", environment="staging", kind="gcp", commit="c0ffee", run_id="t1")
    record.begin(1, "candidates", "deploy candidates")
    return Shell(record, out=out)


def test_the_first_line_reaches_the_console_before_the_command_ends(tmp_path: Path) -> None:
    """A deploy's first progress line is shown while it still runs (it cannot end before it is shown)."""
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    console = Console(fifo, "Deploying container")
    runner = shell(console)
    # Were the output held until the end, the command would wait on the FIFO until the timeout.
    result = runner.run([*fake(tmp_path, PACED), str(fifo)], stream=True, timeout=30)
    assert console.seen_while_running
    assert result.ok
    shown = streamed(console.getvalue())
    assert shown == [
        OUTPUT_INDENT + "Deploying container to Cloud Run service [imageflow-dashboard]",
        OUTPUT_INDENT + "Routing traffic...done",
        OUTPUT_INDENT + "Service URL: https://imageflow-dashboard.example",
    ]
    assert result.stdout.splitlines()[-1] == "Service URL: https://imageflow-dashboard.example"
    entry = runner.record.steps[-1].commands[-1]
    assert entry.output == [line.removeprefix(OUTPUT_INDENT) for line in shown]


def test_secrets_are_masked_on_the_console_and_in_the_record_but_not_for_the_caller(tmp_path: Path) -> None:
    """A registered token, raw or URL-encoded, shows as *** on the console and in the record."""
    out = io.StringIO()
    runner = shell(out)
    token = "ya29.secret/token+value"
    runner.register_secret(token, "access token")
    script = (
        "import sys, urllib.parse\n"
        f"print('token {token}')\n"
        f"print('url ?t=' + urllib.parse.quote({token!r}, safe=''))\n"
        f"print('failed with {token}', file=sys.stderr)\n"
        "raise SystemExit(3)\n"
    )
    result = runner.run(fake(tmp_path, script), stream=True, check=False)
    assert result.exit_code == 3
    assert token in result.stdout, "the caller parses the real output"
    entry = runner.record.steps[-1].commands[-1]
    recorded = "\n".join([*entry.output, entry.error, *streamed(out.getvalue())])
    assert "ya29" not in recorded
    assert "secret%2Ftoken" not in recorded
    assert sorted(entry.output) == ["failed with ***", "token ***", "url ?t=***"]
    assert entry.error == "failed with ***"


def test_a_failing_streamed_command_raises_with_its_error_line(tmp_path: Path) -> None:
    """check=True: a non-zero exit is a StepFailed naming the exit code and the CLI's last stderr line."""
    runner = shell(io.StringIO())
    script = "import sys; print('ERROR: (gcloud.run.deploy) quota exceeded', file=sys.stderr); sys.exit(1)"
    with pytest.raises(StepFailed, match=r"exited 1: ERROR: \(gcloud.run.deploy\) quota exceeded$"):
        runner.run(fake(tmp_path, script), stream=True)


def test_a_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    """A hung CLI and the child it started are both stopped when the step's timeout ends."""
    child_pid = tmp_path / "child.pid"
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    # The child blocks on a FIFO nobody writes: only a signal ends it.
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import sys; open(sys.argv[1]).read()',"
        f" {str(fifo)!r}])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "child.wait()\n"
    )
    runner = shell(io.StringIO())
    with pytest.raises(StepFailed, match=r"did not finish within 5s"):
        runner.run(fake(tmp_path, script), stream=True, timeout=5)
    pid = int(child_pid.read_text(encoding="utf-8"))
    # Gone, or a zombie waiting for init to reap it: not running either way.
    with contextlib.suppress(psutil.NoSuchProcess):
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"the step's child {pid} still runs"
    assert runner.record.steps[-1].commands[-1].error == "timed out after 5s"
