"""Act on a running stack from any process: deploy, route, drain and stop revisions; emulator data."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from imageflow import config as service_config
from imageflow import manifest as manifest_module
from imageflow.config import PUSH_TOKEN_ENV
from imageflow.manifest import Manifest, ManifestError
from stack import infra, localsecrets, processes, state
from stack.processes import HOST
from stack.state import RevisionRecord, ServiceState, StackState

READY_TIMEOUT_SECONDS = float(os.environ.get("IMAGEFLOW_REVISION_READY_TIMEOUT", "120"))
DRAIN_TIMEOUT_SECONDS = 60.0
ADMIN_TIMEOUT_SECONDS = 10.0
# serve.py exits with this code when the service's module or its create_app does not exist yet.
EXIT_NOT_IMPLEMENTED = 78
# What a revision inherits from the process that deploys it: only what makes Python run. The rest
# of its configuration is explicit, as on Cloud Run (and credentials for a real project never leak in).
_INHERITED_KEYS = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "IMAGEFLOW_MANIFEST"}
)
_INHERITED_PREFIXES = ("LC_",)
# Comma-separated extra variable names a deployer passes through to every revision (e.g. a marker).
PASS_ENV = "IMAGEFLOW_STACK_PASS_ENV"
_SECRET_HINTS = ("SECRET", "KEY", "TOKEN", "PASSWORD")


class ControlError(RuntimeError):
    """A stack operation failed; the message says what and why (never a secret value)."""


class RevisionFailed(ControlError):
    """A revision did not become ready; it was stopped."""

    def __init__(self, message: str, not_implemented: bool = False) -> None:
        super().__init__(message)
        self.not_implemented = not_implemented


# Popen objects of revisions this interpreter started, so stopping them also reaps them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def client_env(project: str, emulators: Mapping[str, str]) -> dict[str, str]:
    """The variables that point client libraries at the emulators."""
    return {
        "GOOGLE_CLOUD_PROJECT": project,
        "FIRESTORE_EMULATOR_HOST": emulators["firestore"],
        "PUBSUB_EMULATOR_HOST": emulators["pubsub"],
        "FIREBASE_AUTH_EMULATOR_HOST": emulators["auth"],
        "STORAGE_EMULATOR_HOST": f"http://{emulators['storage']}",
    }


class StackControl:
    """A handle on the stack described by a state file, usable from any process."""

    def __init__(self, state_path: Path | str | None = None, manifest: Manifest | None = None) -> None:
        self.state_path = Path(state_path) if state_path else state.default_path()
        self._manifest = manifest

    # -- reading ---------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The pipeline manifest the stack deploys."""
        if self._manifest is None:
            self._manifest = manifest_module.default()
        return self._manifest

    @property
    def state(self) -> StackState:
        """The current state, read fresh from the file."""
        return state.read(self.state_path)

    @property
    def env(self) -> dict[str, str]:
        """Client environment: project and emulator hosts."""
        return dict(self.state.env)

    def service(self, name: str) -> ServiceState:
        """A service of the stack, or ControlError."""
        current = self.state.services.get(name)
        if current is None:
            raise ControlError(f"the stack has no service {name!r}")
        return current

    def revisions(self, service: str) -> list[RevisionRecord]:
        """Every revision of the service, oldest first."""
        return list(self.service(service).revisions)

    def live_revision(self, service: str) -> RevisionRecord | None:
        """The revision the service's stable URL routes to."""
        current = self.service(service)
        return current.find(current.revision) if current.revision else None

    # -- router ----------------------------------------------------------------------------
    def _admin(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        url = self.state.router_admin_url + path
        try:
            response = requests.request(method, url, json=body, timeout=ADMIN_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise ControlError(f"router admin API at {url} did not answer: {exc.__class__.__name__}") from exc
        if response.status_code >= 400:
            raise ControlError(
                f"router admin {method} {path} -> {response.status_code}: {response.text.strip()}"
            )
        result: dict[str, Any] = response.json()
        return result

    def routes(self) -> dict[str, Any]:
        """The router's view: per service the live upstream and in-flight counts per upstream."""
        services: dict[str, Any] = self._admin("GET", "/services")["services"]
        return services

    def add_service(self, name: str, port: int = 0) -> ServiceState:
        """Give a service a stable URL on the router (idempotent)."""
        answer = self._admin("POST", "/services", {"name": name, "port": port})
        with state.update(self.state_path) as current:
            service = current.services.setdefault(name, ServiceState(name=name))
            service.url = answer["url"]
            service.port = int(answer["port"])
            return service

    def _switch(self, service: str, revision: RevisionRecord) -> None:
        self._admin("PUT", f"/services/{service}/route", {"revision": revision.id, "upstream": revision.url})

    def split_traffic(self, service: str, percents: Mapping[str, int]) -> None:
        """Share the service's new requests between running revisions by percent (adding up to 100).

        A canary step, as `gcloud run services update-traffic --to-revisions=A=95,B=5`: the state's
        live revision stays the one route() last chose, and the step to all traffic is route().
        """
        if not percents:
            raise ControlError(f"a split of {service} names no revision")
        current = self.service(service)
        targets = []
        for revision_id, percent in percents.items():
            revision = current.find(revision_id)
            if revision is None:
                raise ControlError(f"{service} has no revision {revision_id}")
            if revision.state in ("stopped", "failed", "starting"):
                raise ControlError(f"revision {revision_id} is {revision.state}; it cannot take traffic")
            targets.append({"revision": revision.id, "upstream": revision.url, "percent": percent})
        self._admin("PUT", f"/services/{service}/traffic", {"targets": targets})

    def revision_stats(self, service: str, since: int = 0) -> dict[str, Any]:
        """Per revision: requests and status classes, and (status, ms) samples after sequence `since`."""
        return self._admin("GET", f"/services/{service}/stats?since={since}")

    def drain(self, service: str, upstream: str, timeout: float = DRAIN_TIMEOUT_SECONDS) -> None:
        """Wait until no request routed to upstream is in flight (ControlError when that never happens)."""
        try:
            processes.wait_until(
                lambda: not self.routes().get(service, {}).get("in_flight", {}).get(upstream, 0),
                f"draining {service}: requests still in flight to {upstream}",
                timeout,
            )
        except processes.ReadinessError as exc:
            raise ControlError(str(exc)) from exc

    # -- revisions -------------------------------------------------------------------------
    def _secret_keys(self, service: str) -> set[str]:
        try:
            spec = next(s for s in self.manifest.services if s.name == service)
        except (StopIteration, ManifestError):
            return set()
        return set(spec.required_secrets)

    def _revision_env(
        self, service: str, revision_id: str, port: int, overrides: Mapping[str, str]
    ) -> dict[str, str]:
        current = self.state
        passed = _INHERITED_KEYS | {k.strip() for k in os.environ.get(PASS_ENV, "").split(",") if k.strip()}
        env = {k: v for k, v in os.environ.items() if k in passed or k.startswith(_INHERITED_PREFIXES)}
        env.update(current.env)
        local_secrets = self.local_secrets()
        env.update({k: local_secrets[k] for k in self._secret_keys(service) if k in local_secrets})
        if self._is_agent(service):
            # Every local agent requires the token its push subscriptions carry (infra.push_endpoint).
            env[PUSH_TOKEN_ENV] = local_secrets[localsecrets.PUSH_TOKEN_KEY]
        env.update(
            {
                "IMAGEFLOW_BUCKET": current.bucket,
                "IMAGEFLOW_ENV": current.environment,
                "K_SERVICE": service,
                "K_REVISION": revision_id,
                "PORT": str(port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if current.environment not in service_config.TEST_FAILURES_REFUSED_ENVIRONMENTS:
            # The release's failure-path scenarios plan failures for their own users' uploads.
            env[service_config.TEST_FAILURES_KEY] = service_config.TEST_FAILURES_ALLOWED
        env.update(overrides)
        return env

    def _is_agent(self, service: str) -> bool:
        try:
            return service in self.manifest.agent_names
        except ManifestError:
            return False

    def _redacted(self, service: str, overrides: Mapping[str, str]) -> dict[str, str]:
        secret_keys = self._secret_keys(service) | {
            k for k in overrides if any(h in k.upper() for h in _SECRET_HINTS)
        }
        return localsecrets.redact(dict(overrides), secret_keys)

    def _allocate(self, service: str, overrides: Mapping[str, str], tag: str | None) -> RevisionRecord:
        with state.update(self.state_path) as current:
            if service not in current.services:
                raise ControlError(f"the stack has no service {service!r} (add it to the router first)")
            record = current.services[service]
            record.counter += 1
            revision_id = f"{service}-{record.counter:05d}-{secrets.token_hex(2)[:3]}"
            port = processes.free_port()
            revision = RevisionRecord(
                id=revision_id,
                service=service,
                url=f"http://{HOST}:{port}",
                port=port,
                log=str(Path(current.log_dir) / f"{revision_id}.log"),
                env=self._redacted(service, overrides),
                state="starting",
                tag=tag or "",
            )
            record.revisions.append(revision)
            return revision

    def _set_revision(self, service: str, revision_id: str, **changes: object) -> RevisionRecord:
        with state.update(self.state_path) as current:
            revision = current.services[service].find(revision_id)
            if revision is None:
                raise ControlError(f"{service} has no revision {revision_id}")
            for key, value in changes.items():
                setattr(revision, key, value)
            return revision

    def deploy_revision(
        self,
        service: str,
        env_overrides: Mapping[str, str] | None = None,
        *,
        route: bool = True,
        tag: str | None = None,
        command: Sequence[str] | None = None,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> RevisionRecord:
        """Start a new revision, wait until /readyz is 200, and (route=True) make it live.

        The previous live revision is drained (no request in flight) and then stopped. A revision
        that never becomes ready is stopped and RevisionFailed carries its readiness message.
        command replaces `python -m imageflow.serve SERVICE` (used for the router's own tests).
        """
        overrides = dict(env_overrides or {})
        revision = self._allocate(service, overrides, tag)
        env = self._revision_env(service, revision.id, revision.port, overrides)
        argv = list(command) if command else [sys.executable, "-m", "imageflow.serve", service]
        argv += ["--host", HOST, "--port", str(revision.port)] if not command else []
        process = processes.start(
            revision.id, argv, Path(revision.log), env=env, cwd=state.REPO_ROOT, registry=None
        )
        if process.popen is not None:
            _CHILDREN[process.pid] = process.popen
        revision = self._set_revision(service, revision.id, pid=process.pid, pgid=process.pgid)
        try:
            self._wait_ready(revision, process, ready_timeout)
        except RevisionFailed:
            self._stop_process(revision.pgid)
            self._set_revision(service, revision.id, state="failed")
            raise
        revision = self._set_revision(service, revision.id, state="candidate")
        if not route:
            return revision
        return self.route(service, revision.id, stop_previous=True)

    def _wait_ready(
        self, revision: RevisionRecord, process: processes.ManagedProcess, timeout: float
    ) -> None:
        url = revision.url + "/readyz"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not process.running():
                code = process.popen.poll() if process.popen is not None else None
                not_implemented = code == EXIT_NOT_IMPLEMENTED
                detail = "" if not_implemented else f"; log tail:\n{process.tail(15)}"
                raise RevisionFailed(
                    f"revision {revision.id} exited (code {code}) before it was ready: "
                    f"{process.tail(1)}{detail}",
                    not_implemented=not_implemented,
                )
            try:
                response = requests.get(url, timeout=2)
            except requests.RequestException:
                time.sleep(processes.POLL_INTERVAL_SECONDS)  # bounded-poll
                continue
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
            with contextlib.suppress(ValueError):
                report = response.json()
                if isinstance(report, dict) and report.get("missing"):
                    # Missing configuration does not fix itself: fail now with the service's own message.
                    raise RevisionFailed(
                        f"revision {revision.id} is not ready: {report.get('message', last)}"
                    )
                if isinstance(report, dict) and report.get("message"):
                    last = f"HTTP {response.status_code}: {report['message']}"
            time.sleep(processes.POLL_INTERVAL_SECONDS)  # bounded-poll
        raise RevisionFailed(
            f"revision {revision.id} not ready after {timeout:.0f} s ({url}: {last}); "
            f"log tail:\n{process.tail()}"
        )

    def route(self, service: str, revision_id: str, *, stop_previous: bool = False) -> RevisionRecord:
        """Send the service's new requests to revision_id; the previous live one stays up unless stopped."""
        current = self.service(service)
        target = current.find(revision_id)
        if target is None:
            raise ControlError(f"{service} has no revision {revision_id}")
        if target.state in ("stopped", "failed", "starting"):
            raise ControlError(
                f"revision {revision_id} is {target.state}; only a running revision can take traffic"
            )
        previous = current.find(current.revision) if current.revision else None
        # Never switch traffic to a revision that stopped answering since it was deployed.
        ready = processes.http_status(target.url + "/readyz", timeout=5)
        if ready != 200:
            answer = ready or "no answer"
            raise ControlError(f"revision {revision_id} is not ready (readyz: {answer}); not switched")
        self._switch(service, target)
        with state.update(self.state_path) as updated:
            record = updated.services[service]
            record.revision = target.id
            record.revision_url = target.url
            for revision in record.revisions:
                if revision.id == target.id:
                    revision.state = "live"
                elif revision.state == "live":
                    revision.state = "candidate"
        if previous is not None and previous.id != target.id and stop_previous:
            try:
                self.drain(service, previous.url)
            except ControlError as exc:
                # Never cut requests off: the previous revision keeps running until they finish.
                raise ControlError(f"{target.id} is live, but {previous.id} was left running: {exc}") from exc
            self.stop_revision(service, previous.id)
        result = self.service(service).find(target.id)
        assert result is not None  # just written above
        return result

    def _stop_process(self, pgid: int) -> None:
        popen = _CHILDREN.pop(pgid, None)
        processes.stop_group(pgid, popen=popen)

    def stop_revision(self, service: str, revision_id: str) -> None:
        """Stop a revision that takes no traffic (the live one must be replaced first)."""
        current = self.service(service)
        revision = current.find(revision_id)
        if revision is None:
            raise ControlError(f"{service} has no revision {revision_id}")
        if current.revision == revision_id:
            raise ControlError(
                f"revision {revision_id} is live; route {service} elsewhere before stopping it"
            )
        if revision.pgid:
            self._stop_process(revision.pgid)
        self._set_revision(service, revision_id, state="stopped")

    # -- infrastructure and emulator data --------------------------------------------------
    def ensure_infrastructure(
        self, prefix: str = "", endpoints: Mapping[str, str] | None = None
    ) -> infra.InfraReport:
        """Topics, push subscriptions (to the agents' stable URLs unless endpoints says otherwise), bucket."""
        current = self.state
        chosen = (
            dict(endpoints)
            if endpoints is not None
            else {
                agent.name: current.services[agent.name].url
                for agent in self.manifest.agents
                if agent.name in current.services
            }
        )
        # Every push, live or through a lane, carries the token its agents require.
        token = self.push_token()
        with _temporary_env(current.env):
            return infra.ensure(current.project, current.bucket, self.manifest, chosen, prefix, token)

    def push_token(self) -> str:
        """The push verification token of this stack's subscriptions and agents (a local secret)."""
        return self.local_secrets()[localsecrets.PUSH_TOKEN_KEY]

    def local_secrets(self) -> dict[str, str]:
        """The stack's own local secrets (the file it started with, whoever calls)."""
        recorded = self.state.secrets_file
        return localsecrets.ensure(Path(recorded) if recorded else None)

    def client_environment(self) -> contextlib.AbstractContextManager[None]:
        """A block in which client libraries talk to this stack's emulators."""
        return _temporary_env(self.state.env)

    def delete_lane(self, prefix: str) -> None:
        """Delete a verification lane's topics and subscriptions."""
        current = self.state
        with _temporary_env(current.env):
            infra.delete_lane(current.project, self.manifest, prefix)

    def _firestore(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> None:
        current = self.state
        url = f"http://{current.emulators['firestore']}/emulator/v1/projects/{current.project}{path}"
        try:
            response = requests.request(method, url, json=body, timeout=60)
        except requests.RequestException as exc:
            raise ControlError(
                f"Firestore emulator did not answer {method} {path}: {exc.__class__.__name__}"
            ) from exc
        if response.status_code != 200:
            raise ControlError(
                f"Firestore emulator {method} {path} -> {response.status_code}: {response.text.strip()}"
            )

    def load_rules(self, text: str) -> None:
        """Replace the Firestore emulator's security rules at run time."""
        self._firestore(
            "PUT", ":securityRules", {"rules": {"files": [{"name": "firestore.rules", "content": text}]}}
        )

    def clear_data(self) -> None:
        """Delete every Firestore document."""
        self._firestore("DELETE", "/databases/(default)/documents")

    def export_data(self, directory: Path | str) -> Path:
        """Export every document into directory; returns the .overall_export_metadata file to import."""
        target = Path(directory).resolve()
        target.mkdir(parents=True, exist_ok=True)
        before = set(target.glob("*/*.overall_export_metadata"))
        database = f"projects/{self.state.project}/databases/(default)"
        self._firestore("POST", ":export", {"database": database, "export_directory": str(target)})
        written = sorted(
            set(target.glob("*/*.overall_export_metadata")) - before, key=lambda p: p.stat().st_mtime
        )
        if not written:
            raise ControlError(
                f"the Firestore emulator reported an export but wrote no metadata file under {target}"
            )
        return written[-1]

    def import_data(self, export: Path | str, *, clear: bool = True) -> None:
        """Restore an export at run time: clear, then the emulator's :import of the metadata file.

        The emulator's import takes the path of the .overall_export_metadata file in
        `export_directory` (a directory is refused with "Failed to parse overall export metadata
        file") and merges documents into what exists, so a restore clears first.
        """
        path = Path(export).resolve()
        if path.is_dir():
            found = sorted(path.glob("*.overall_export_metadata")) or sorted(
                path.glob("*/*.overall_export_metadata")
            )
            if not found:
                raise ControlError(f"no .overall_export_metadata file in {path}")
            path = found[-1]
        if clear:
            self.clear_data()
        database = f"projects/{self.state.project}/databases/(default)"
        self._firestore("POST", ":import", {"database": database, "export_directory": str(path)})


@contextlib.contextmanager
def _temporary_env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
