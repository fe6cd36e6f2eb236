"""Start and stop the whole local stack: emulators, router, infrastructure, one revision per service."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from google.api_core.exceptions import GoogleAPIError

from imageflow import manifest as manifest_module
from imageflow.manifest import Manifest
from stack import emulators, localsecrets, processes, state
from stack.control import ControlError, RevisionFailed, StackControl, client_env
from stack.emulators import BUCKET, PROJECT, Tools
from stack.processes import HOST, ManagedProcess, ReadinessError
from stack.state import ProcessRecord, StackState

ROUTER_TIMEOUT_SECONDS = 30.0
# How long a user waits for a stack another process is starting (a cold start takes ~30 s here).
START_WAIT_SECONDS = 300.0


class StackError(RuntimeError):
    """The stack could not start (everything already started has been stopped)."""


@dataclass
class StartedStack:
    """A stack started by this interpreter: its state file and the processes it owns."""

    state_path: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def control(self) -> StackControl:
        """A control handle on this stack."""
        return StackControl(self.state_path)

    def stop(self) -> None:
        """Stop every revision and process of this stack, then remove its state file."""
        stop(self.state_path, owned=self.processes)


def _say(message: str) -> None:
    print(f"stack: {message}", flush=True)


def healthy(state_path: Path, start_timeout: float = START_WAIT_SECONDS) -> bool:
    """True when the stack at state_path is ready and its router answers.

    A stack that another live process is still starting is waited for (bounded), so a second
    user never takes a half-deployed stack for a ready one, nor for no stack at all.
    """
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            current = state.read(state_path)
        except state.StateError:
            return False
        starting = not current.ready_at and current.owner_pid != os.getpid() and _alive(current.owner_pid)
        if not starting:
            return processes.http_status(current.router_admin_url + "/healthz", timeout=2) == 200
        if time.monotonic() >= deadline:
            return False
        time.sleep(processes.POLL_INTERVAL_SECONDS * 5)  # bounded-poll: the starter writes no event


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_old_runs(root: Path, max_age_seconds: float = 86400.0) -> list[Path]:
    """Delete run directories (logs) older than a day whose stack is gone; returns what was removed."""
    removed = []
    cutoff = time.time() - max_age_seconds
    for runs in [root / "runs", *root.glob("*/runs")]:
        for run in runs.glob("*") if runs.is_dir() else []:
            try:
                old = run.stat().st_mtime < cutoff
            except OSError:
                continue
            # A run directory belongs to a live stack while a state file next to runs/ names it.
            state_file = runs.parent / "stack.json"
            if old and not (state_file.exists() and str(run) in state_file.read_text(encoding="utf-8")):
                shutil.rmtree(run, ignore_errors=True)
                removed.append(run)
    return removed


def _run_dir(state_path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = state_path.parent / "runs" / f"{stamp}-{os.getpid()}"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    return run_dir


def _deploy_all(
    control: StackControl, manifest: Manifest, strict: bool, say: Callable[[str], None]
) -> dict[str, str]:
    """First revision of every service, in parallel; returns services skipped as not implemented."""
    failures: dict[str, RevisionFailed | ControlError] = {}

    def deploy(name: str) -> None:
        try:
            revision = control.deploy_revision(name)
            say(f"{name}: revision {revision.id} live")
        except (RevisionFailed, ControlError) as exc:
            failures[name] = exc

    threads = [threading.Thread(target=deploy, args=(spec.name,)) for spec in manifest.services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    skipped: dict[str, str] = {}
    fatal = []
    for name, exc in failures.items():
        if isinstance(exc, RevisionFailed) and exc.not_implemented and not strict:
            skipped[name] = str(exc)
            say(f"SKIPPED {name}: not implemented yet ({exc})")
        else:
            fatal.append(f"{name}: {exc}")
    if fatal:
        raise StackError("service failed to start: " + "\n".join(fatal))
    return skipped


def start(
    state_path: Path | None = None,
    *,
    strict: bool = True,
    tools: Tools | None = None,
    manifest: Manifest | None = None,
    say: Callable[[str], None] = _say,
    import_metadata: Path | None = None,
) -> StartedStack:
    """Start the whole stack and write its state file; on failure stop all of it and raise StackError."""
    chosen = Path(state_path) if state_path else state.default_path()
    if healthy(chosen):
        raise StackError(f"a stack is already running ({chosen}); stop it with `python -m stack down`")
    tools = tools or Tools.default()
    try:
        emulators.preflight(tools)
    except emulators.PreflightError as exc:
        raise StackError(str(exc)) from exc
    manifest = manifest or manifest_module.default()
    if import_metadata is not None and not import_metadata.is_file():
        raise StackError(f"--import-data needs an export's .overall_export_metadata file: {import_metadata}")
    localsecrets.ensure()
    sweep_old_runs(state.REPO_ROOT / ".stack")
    run_dir = _run_dir(chosen)
    log_dir = run_dir / "logs"
    started: list[ManagedProcess] = []
    chosen.unlink(missing_ok=True)
    began = time.monotonic()
    try:
        booting = [
            emulators.start_firestore(tools, run_dir, import_metadata=import_metadata),
            emulators.start_pubsub(tools, run_dir),
            emulators.start_auth(tools, run_dir),
            emulators.start_storage(tools, run_dir),
        ]
        started.extend(e.process for e in booting)
        admin_port = processes.free_port()
        router = processes.start(
            "router",
            [sys.executable, "-m", "stack.router", "--admin-port", str(admin_port)],
            log_dir / "router.log",
            cwd=state.REPO_ROOT,
        )
        started.append(router)
        hosts = {e.name: e.host_port for e in booting}
        current = StackState(
            project=PROJECT,
            bucket=BUCKET,
            run_dir=str(run_dir),
            log_dir=str(log_dir),
            env=client_env(PROJECT, hosts),
            emulators=hosts,
            emulator_urls={name: f"http://{host}" for name, host in hosts.items()},
            router_admin_url=f"http://{HOST}:{admin_port}",
            processes=[ProcessRecord(**p.as_record()) for p in started],  # type: ignore[arg-type]
            owner_pid=os.getpid(),
            secrets_file=str(localsecrets.secrets_path()),
            started_at=datetime.now(UTC).isoformat(),
        )
        # Written before anything is ready, so `stack down` can clean up after a crash mid-start.
        state.write(current, chosen)
        processes.wait_http(current.router_admin_url + "/healthz", "router", ROUTER_TIMEOUT_SECONDS, router)
        for emulator in booting:
            emulators.wait_ready(emulator)
        say(f"emulators ready in {time.monotonic() - began:.1f} s")
        control = StackControl(chosen, manifest)
        for spec in manifest.services:
            control.add_service(spec.name)
        control.ensure_infrastructure()
        skipped = _deploy_all(control, manifest, strict, say)
        with state.update(chosen) as ready:
            ready.ready_at = datetime.now(UTC).isoformat()
    except (
        ReadinessError,
        ControlError,
        StackError,
        OSError,
        requests.RequestException,
        GoogleAPIError,
    ) as exc:
        stop(chosen, owned=started)
        message = str(exc) if isinstance(exc, StackError | ReadinessError | ControlError) else repr(exc)
        raise StackError(message) from exc
    except BaseException:
        stop(chosen, owned=started)
        raise
    say(f"stack up in {time.monotonic() - began:.1f} s")
    return StartedStack(state_path=chosen, processes=started, skipped=skipped)


def stop(state_path: Path | None = None, owned: list[ManagedProcess] | None = None) -> list[str]:
    """Stop every process group recorded in the state file (and those owned), remove the file."""
    chosen = Path(state_path) if state_path else state.default_path()
    stopped: list[str] = []
    try:
        current: StackState | None = state.read(chosen)
    except state.StateError:
        current = None
    by_pgid = {p.pgid: p for p in owned or []}
    if current is not None:
        for record in current.all_process_groups():
            owned_process = by_pgid.pop(record.pgid, None)
            if owned_process is not None:
                owned_process.stop()
            else:
                processes.stop_group(record.pgid)
            stopped.append(record.name)
    for process in reversed(list(by_pgid.values())):
        process.stop()
        stopped.append(process.name)
    for process in owned or []:
        processes.REGISTRY.forget(process)
    if current is not None:
        state.remove(chosen)
    return stopped


def describe(current: StackState) -> list[str]:
    """Human-readable lines: URLs and emulator hosts (never secret values)."""
    lines = [f"project {current.project}, bucket {current.bucket}, state {current.run_dir}"]
    lines += [f"  {name:<10} {url}" for name, url in sorted(current.env.items()) if name.endswith("_HOST")]
    lines.append(f"  router admin {current.router_admin_url}")
    for name, service in current.services.items():
        live = service.revision or "(no live revision)"
        lines.append(f"  {name:<12} {service.url}  live={live}  direct={service.revision_url or '-'}")
    return lines


def status_lines(current: StackState) -> tuple[list[str], bool]:
    """What runs and whether each part answers; ok is False when any part is unhealthy."""
    ok = True
    lines = []
    router_ok = processes.http_status(current.router_admin_url + "/healthz") == 200
    ok &= router_ok
    lines.append(f"router       {'healthy' if router_ok else 'DOWN'}  {current.router_admin_url}")
    for name, host in sorted(current.emulators.items()):
        up = processes.http_status(f"http://{host}/") == 200
        ok &= up
        lines.append(f"{name:<12} {'healthy' if up else 'DOWN'}  {host}")
    for name, service in current.services.items():
        if not service.revision:
            ok = False
            lines.append(f"{name:<12} NO LIVE REVISION  {service.url}")
            continue
        code = processes.http_status(service.url + "/healthz")
        up = code == 200
        ok &= up
        lines.append(
            f"{name:<12} {'healthy' if up else f'UNHEALTHY ({code})'}  {service.url}  {service.revision}"
        )
        for revision in service.revisions:
            if revision.state == "candidate":
                # Candidates take no traffic: shown for information, not counted in the verdict.
                answer = processes.http_status(revision.url + "/healthz")
                health = "healthy" if answer == 200 else f"not answering ({answer})"
                lines.append(f"{'':<12}   candidate {revision.id} {health}  {revision.url} {revision.tag}")
    return lines, ok
