"""The running stack's state file (.stack/stack.json): atomic writes under a file lock."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

# The repository root: the one definition every package of the project uses.
REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_ENV = "IMAGEFLOW_STACK_FILE"
LOCK_TIMEOUT_SECONDS = 30.0


class StateError(RuntimeError):
    """No state file, or one that cannot be read."""


def default_path() -> Path:
    """$IMAGEFLOW_STACK_FILE or .stack/stack.json at the repository root."""
    return Path(os.environ.get(STATE_ENV) or REPO_ROOT / ".stack" / "stack.json")


@dataclass
class ProcessRecord:
    """A started process: enough to find it and stop its whole group later."""

    name: str
    pid: int
    pgid: int
    log: str


@dataclass
class RevisionRecord:
    """One revision of a service: a process serving one fixed configuration."""

    id: str
    service: str
    url: str = ""
    port: int = 0
    pid: int = 0
    pgid: int = 0
    log: str = ""
    # Override names with their values; secret values are replaced by "<secret>".
    env: dict[str, str] = field(default_factory=dict)
    # starting | live | candidate | stopped | failed
    state: str = "starting"
    tag: str = ""


@dataclass
class ServiceState:
    """A service behind the router: its stable URL and its revisions."""

    name: str
    url: str = ""
    port: int = 0
    revision: str = ""
    revision_url: str = ""
    revisions: list[RevisionRecord] = field(default_factory=list)
    counter: int = 0

    def find(self, revision_id: str) -> RevisionRecord | None:
        """The revision with that id, if any."""
        return next((r for r in self.revisions if r.id == revision_id), None)


@dataclass
class StackState:
    """Everything a process needs to use or stop a running stack."""

    project: str
    bucket: str
    run_dir: str
    log_dir: str
    environment: str = "local"
    env: dict[str, str] = field(default_factory=dict)
    # Emulator name -> host:port, and -> base URL.
    emulators: dict[str, str] = field(default_factory=dict)
    emulator_urls: dict[str, str] = field(default_factory=dict)
    router_admin_url: str = ""
    services: dict[str, ServiceState] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)
    owner_pid: int = 0
    started_at: str = ""
    # The local secrets file the stack started with: every process acting on the stack uses it, so
    # a revision or lane it deploys gets the same secrets (the push token) as the stack's own.
    secrets_file: str = ""
    # Set once every service is deployed: a state file without it is a stack still starting.
    ready_at: str = ""

    @property
    def dashboard_url(self) -> str:
        """The dashboard's stable URL (through the router)."""
        service = self.services.get("dashboard")
        return service.url if service else ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackState:
        """Rebuild from the JSON form."""
        services = {
            name: ServiceState(
                **{k: v for k, v in value.items() if k != "revisions"},
                revisions=[RevisionRecord(**r) for r in value.get("revisions", [])],
            )
            for name, value in data.get("services", {}).items()
        }
        processes = [ProcessRecord(**p) for p in data.get("processes", [])]
        plain = {k: v for k, v in data.items() if k not in ("services", "processes")}
        return cls(**plain, services=services, processes=processes)

    def all_process_groups(self) -> list[ProcessRecord]:
        """Every process group to stop: services' revisions first, then infrastructure processes."""
        records = [
            ProcessRecord(f"{service.name}/{rev.id}", rev.pid, rev.pgid, rev.log)
            for service in self.services.values()
            for rev in service.revisions
            if rev.pgid and rev.state not in ("stopped", "failed")
        ]
        return records + list(reversed(self.processes))


def _lock(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_SECONDS)


def read(path: Path | None = None) -> StackState:
    """Read the state file; StateError when absent or unreadable."""
    chosen = path or default_path()
    try:
        data = json.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StateError(
            f"no running stack: {chosen} does not exist (start one with `python -m stack up`)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise StateError(f"stack state {chosen} is unreadable: {exc}") from exc
    try:
        return StackState.from_dict(data)
    except TypeError as exc:
        raise StateError(f"stack state {chosen} has an unexpected shape: {exc}") from exc


def _write_unlocked(state: StackState, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def write(state: StackState, path: Path | None = None) -> Path:
    """Write the state file atomically (tmp + rename) under the file lock."""
    chosen = path or default_path()
    chosen.parent.mkdir(parents=True, exist_ok=True)
    with _lock(chosen):
        _write_unlocked(state, chosen)
    return chosen


@contextlib.contextmanager
def update(path: Path | None = None) -> Iterator[StackState]:
    """Read, let the caller change, and write back the state, all under the file lock."""
    chosen = path or default_path()
    with _lock(chosen):
        state = read(chosen)
        yield state
        _write_unlocked(state, chosen)


def remove(path: Path | None = None) -> None:
    """Delete the state file (the stack is gone)."""
    chosen = path or default_path()
    with _lock(chosen):
        chosen.unlink(missing_ok=True)
