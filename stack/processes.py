"""Server processes in their own process groups: start, wait until ready, stop the whole group."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1


class ReadinessError(RuntimeError):
    """Something never became ready; the message names it and ends with its log tail."""


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the kernel picks it by binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path | None, lines: int = 20) -> str:
    """The last lines of a log file, or a note that there is none."""
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"


def _reap(pid: int) -> None:
    """Collect the exit status of pid if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, status) of every process in the group, status as psutil names it ("zombie", "sleeping")."""
    members: list[tuple[int, str]] = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):  # gone meanwhile, or not ours to read
            if os.getpgid(process.pid) == pgid:
                members.append((process.pid, process.status()))
    return members


def group_alive(pgid: int) -> bool:
    """True while any process of the group still runs (zombies, already dead, do not count)."""
    _reap(pgid)
    return any(status != psutil.STATUS_ZOMBIE for _pid, status in group_members(pgid))


def stop_group(
    pgid: int, grace: float = STOP_GRACE_SECONDS, popen: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process group, wait a bounded time, then SIGKILL whatever is left."""
    try:
        _signal_and_wait(pgid, signal.SIGTERM, grace, popen)
        if group_alive(pgid):
            _signal_and_wait(pgid, signal.SIGKILL, 5.0, popen)
    finally:
        if popen is not None:
            # Record the exit status (ECHILD counts as exited) so Popen does not warn "still running".
            popen.poll()


def _signal_and_wait(pgid: int, signum: int, timeout: float, popen: subprocess.Popen[bytes] | None) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()  # reap our own child so it does not linger as a zombie group member
        if not group_alive(pgid):
            return
        time.sleep(POLL_INTERVAL_SECONDS)  # bounded-poll


@dataclass
class ManagedProcess:
    """A started server: its name, command, pid, process group and log file."""

    name: str
    command: tuple[str, ...]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pid: int = 0
    pgid: int = 0

    def running(self) -> bool:
        """True while the leader has not exited."""
        if self.popen is not None:
            return self.popen.poll() is None
        return group_alive(self.pgid)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop the whole process group (children included), bounded."""
        if self.pgid:
            stop_group(self.pgid, grace, self.popen)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)

    def tail(self, lines: int = 20) -> str:
        """The last lines of this process's log."""
        return log_tail(self.log_path, lines)

    def as_record(self) -> dict[str, object]:
        """What the state file records about this process."""
        return {"name": self.name, "pid": self.pid, "pgid": self.pgid, "log": str(self.log_path)}


class Registry:
    """Every process this interpreter started, so a finally/atexit/signal stops them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[ManagedProcess] = []

    def add(self, process: ManagedProcess) -> None:
        """Remember a started process."""
        with self._lock:
            self._processes.append(process)

    def forget(self, process: ManagedProcess) -> None:
        """Stop tracking a process (it was stopped, or handed over to a detached stack)."""
        with self._lock:
            if process in self._processes:
                self._processes.remove(process)

    def stop_all(self) -> None:
        """Stop every tracked process, newest first."""
        with self._lock:
            processes = list(reversed(self._processes))
            self._processes.clear()
        for process in processes:
            process.stop()

    def detach_all(self) -> None:
        """Forget every process without stopping it (a detached stack outlives this interpreter)."""
        with self._lock:
            self._processes.clear()


REGISTRY = Registry()
atexit.register(REGISTRY.stop_all)


def start(
    name: str,
    command: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    registry: Registry | None = REGISTRY,
) -> ManagedProcess:
    """Start command in a new session (its own process group), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    process = ManagedProcess(
        name=name, command=tuple(command), log_path=log_path, popen=popen, pid=popen.pid, pgid=popen.pid
    )
    if registry is not None:
        registry.add(process)
    return process


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    process: ManagedProcess | None = None,
    interval: float = POLL_INTERVAL_SECONDS,
) -> None:
    """Poll check until it is true; raise ReadinessError naming what never happened (and the log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if process is not None and not process.running():
            raise ReadinessError(f"{what}: process {process.name} exited early; log tail:\n{process.tail()}")
        if time.monotonic() >= deadline:
            tail = f"; log tail:\n{process.tail()}" if process is not None else ""
            raise ReadinessError(f"{what}: not ready after {timeout:.0f} s{tail}")
        time.sleep(interval)  # bounded-poll


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_http(
    url: str,
    what: str,
    timeout: float = 60.0,
    process: ManagedProcess | None = None,
    ok: Callable[[int], bool] = lambda status: status < 500,
) -> None:
    """Wait until GET url answers with a status ok() accepts."""

    def check() -> bool:
        status = http_status(url)
        return status is not None and ok(status)

    wait_until(check, f"{what} ({url})", timeout, process)


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_tcp(
    host: str, port: int, what: str, timeout: float = 60.0, process: ManagedProcess | None = None
) -> None:
    """Wait until host:port accepts TCP connections."""
    wait_until(lambda: port_open(host, port), f"{what} ({host}:{port})", timeout, process)


# Tests set it (and pass it through with IMAGEFLOW_STACK_PASS_ENV) so every process of a stack they
# start carries their own value: processes_with_env then finds any that outlived the stack.
MARKER_ENV = "IMAGEFLOW_STACK_TEST_MARKER"


def processes_with_env(name: str, value: str) -> list[str]:
    """Command lines of live processes whose environment has name=value (leak checks in tests)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # gone meanwhile, or not ours to read
            if process.environ().get(name) == value and process.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(process.cmdline()))
    return found
