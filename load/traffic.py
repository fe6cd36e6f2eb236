"""Background traffic for a canary and its bake: Locust's CanaryUser, headless, bounded, then cleaned up.

Locust runs in its own process group for at most `seconds` (its own -t), so a deploy killed midway
leaves no traffic behind for long; stop() ends it earlier, waits for the users' last workflows to
settle and deletes the users and their data (the Auth emulator's admin API: local stacks only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from load.checks import is_loopback, read_log
from stack.load_users import StackInfo, remove_users, wait_terminal
from stack.state import REPO_ROOT, StackState

LOCUSTFILE = REPO_ROOT / "load" / "locustfile.py"
# Users finish the upload they are following before Locust exits (its --stop-timeout).
STOP_TIMEOUT_SECONDS = 10
SETTLE_TIMEOUT_SECONDS = 60.0


class TrafficError(RuntimeError):
    """The traffic could not start (one line)."""


class BackgroundUsers:
    """Locust CanaryUser users against one dashboard for a bounded time."""

    def __init__(self, state: StackState, users: int, seconds: float, directory: Path) -> None:
        self.info = StackInfo.of(state)
        if not is_loopback(self.info.dashboard_url):
            raise TrafficError(f"canary traffic only on loopback, not {self.info.dashboard_url}")
        self.users = users
        self.seconds = max(1, int(seconds))
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "canary-users.jsonl"
        self.output = directory / "canary-locust.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.removed = 0

    def start(self) -> None:
        """Start Locust headless; it stops by itself after `seconds` at the latest."""
        self.log.unlink(missing_ok=True)
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "CanaryUser", "--headless"]
        command += ["-u", str(self.users), "-r", str(self.users), "-t", f"{self.seconds}s", "--only-summary"]
        command += ["--stop-timeout", str(STOP_TIMEOUT_SECONDS), "--host", self.info.dashboard_url]
        command += ["--loglevel", "WARNING"]
        env = {**os.environ, **self.info.env, "IMAGEFLOW_LOAD_LOG": str(self.log)}
        env["IMAGEFLOW_LOAD_RUN"] = "canary" + time.strftime("%H%M%S")
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> int:
        """Stop Locust (its whole group), let its workflows settle, delete its users; things removed."""
        process, self.process = self.process, None
        if process is None:
            return 0
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_TIMEOUT_SECONDS + 15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        uploads, emails = read_log(self.log)
        # Deleting a workflow an agent still works on floods the emulator with redeliveries.
        wait_terminal(self.info.project, list(uploads), SETTLE_TIMEOUT_SECONDS)
        self.removed = remove_users(self.info, emails)
        return self.removed
