"""The official emulators (Firestore, Pub/Sub, Firebase Auth, Cloud Storage) on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stack import processes
from stack.processes import HOST, ManagedProcess
from stack.state import REPO_ROOT

PROJECT = "demo-imageflow"
BUCKET = "imageflow-uploads"
SDK_PLATFORM = Path(os.environ.get("IMAGEFLOW_SDK_PLATFORM", "/usr/lib/google-cloud-sdk/platform"))
# Generous but bounded: on a loaded 2-core machine the Auth emulator (node) alone can take a minute.
START_TIMEOUT_SECONDS = float(os.environ.get("IMAGEFLOW_STACK_START_TIMEOUT", "180"))


class PreflightError(RuntimeError):
    """A tool the stack needs is missing; the message says exactly what to install."""


@dataclass(frozen=True)
class Tools:
    """Where each emulator executable lives (overridable so the preflight can be tested)."""

    firestore: Path
    pubsub: Path
    firebase: Path
    storage: Path
    java: str

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> Tools:
        """The standard locations, each overridable by an IMAGEFLOW_* variable."""
        env = os.environ if environ is None else environ
        platform = Path(env.get("IMAGEFLOW_SDK_PLATFORM", str(SDK_PLATFORM)))
        return cls(
            firestore=Path(
                env.get(
                    "IMAGEFLOW_FIRESTORE_EMULATOR",
                    str(platform / "cloud-firestore-emulator" / "cloud_firestore_emulator"),
                )
            ),
            pubsub=Path(
                env.get(
                    "IMAGEFLOW_PUBSUB_EMULATOR",
                    str(platform / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"),
                )
            ),
            firebase=Path(
                env.get("IMAGEFLOW_FIREBASE_BIN", str(REPO_ROOT / "node_modules" / ".bin" / "firebase"))
            ),
            storage=Path(
                env.get(
                    "IMAGEFLOW_STORAGE_EMULATOR", str(Path(sys.executable).parent / "gcp-storage-emulator")
                )
            ),
            java=env.get("IMAGEFLOW_JAVA", "java"),
        )


def preflight(tools: Tools) -> None:
    """Raise PreflightError with one line naming what to install when a tool is missing."""
    missing: list[str] = []
    if shutil.which(tools.java) is None:
        missing.append("java (apt-get install -y openjdk-17-jre-headless)")
    packages = []
    if not os.access(tools.firestore, os.X_OK):
        packages.append("google-cloud-cli-firestore-emulator")
    if not os.access(tools.pubsub, os.X_OK):
        packages.append("google-cloud-cli-pubsub-emulator")
    if packages:
        missing.append(f"Cloud SDK emulators (apt-get install -y {' '.join(packages)})")
    if not os.access(tools.firebase, os.X_OK):
        missing.append(f"firebase-tools at {tools.firebase} (run `npm ci` in {REPO_ROOT})")
    if not os.access(tools.storage, os.X_OK):
        missing.append(
            f"gcp-storage-emulator at {tools.storage} (.venv/bin/pip install -r requirements.lock)"
        )
    if missing:
        raise PreflightError("missing: " + "; ".join(missing))


@dataclass
class Emulator:
    """One started emulator: its process and where clients reach it."""

    name: str
    host_port: str
    process: ManagedProcess

    @property
    def url(self) -> str:
        """The emulator's base URL."""
        return f"http://{self.host_port}"


def firestore_rules_path() -> Path | None:
    """The repository's firestore.rules, when another part of the project has written it."""
    path = REPO_ROOT / "firestore.rules"
    return path if path.exists() else None


def start_firestore(
    tools: Tools, run_dir: Path, port: int | None = None, import_metadata: Path | None = None
) -> Emulator:
    """Start the Firestore emulator, with the repository's rules and optionally an export loaded."""
    port = port or processes.free_port()
    command = [str(tools.firestore), "start", "--host", HOST, "--port", str(port)]
    rules = firestore_rules_path()
    if rules is not None:
        command += ["--rules", str(rules)]
    if import_metadata is not None:
        # --seed_from_export takes the .overall_export_metadata file written by an export.
        command += ["--seed_from_export", str(import_metadata)]
    process = processes.start("firestore", command, run_dir / "logs" / "firestore.log")
    return Emulator("firestore", f"{HOST}:{port}", process)


def start_pubsub(tools: Tools, run_dir: Path, port: int | None = None) -> Emulator:
    """Start the Pub/Sub emulator (its flags only parse in the --flag=value form)."""
    port = port or processes.free_port()
    command = [str(tools.pubsub), f"--host={HOST}", f"--port={port}"]
    # The emulator logs unacknowledged pushes with their endpoint URL, push token included.
    masked = [sys.executable, "-m", "stack.log_filter", *command]
    process = processes.start("pubsub", masked, run_dir / "logs" / "pubsub.log", cwd=REPO_ROOT)
    return Emulator("pubsub", f"{HOST}:{port}", process)


def start_auth(tools: Tools, run_dir: Path, port: int | None = None) -> Emulator:
    """Start the Firebase Auth emulator from firebase-tools with a generated config (offline)."""
    port = port or processes.free_port()
    config_dir = run_dir / "firebase"
    config_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "emulators": {
            "auth": {"host": HOST, "port": port},
            "ui": {"enabled": False},
            "hub": {"host": HOST, "port": processes.free_port()},
            "logging": {"host": HOST, "port": processes.free_port()},
        }
    }
    config_path = config_dir / "firebase.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    command = [
        str(tools.firebase),
        "emulators:start",
        "--only",
        "auth",
        "--project",
        PROJECT,
        "--config",
        str(config_path),
    ]
    env = dict(os.environ)
    # Offline machine: no update checks, no usage reporting, no prompts.
    env.update({"CI": "1", "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "1", "NO_UPDATE_NOTIFIER": "1"})
    # firebase-tools keeps a per-project "hub locator" file in the temp dir; a private temp dir
    # keeps parallel stacks (one per test run) from seeing, and warning about, each other.
    tmp = config_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp)
    process = processes.start("auth", command, run_dir / "logs" / "auth.log", env=env, cwd=config_dir)
    return Emulator("auth", f"{HOST}:{port}", process)


def start_storage(tools: Tools, run_dir: Path, port: int | None = None, bucket: str = BUCKET) -> Emulator:
    """Start gcp-storage-emulator in memory with the bucket already created."""
    port = port or processes.free_port()
    command = [
        str(tools.storage),
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
        "--in-memory",
        "--default-bucket",
        bucket,
    ]
    process = processes.start("storage", command, run_dir / "logs" / "storage.log")
    return Emulator("storage", f"{HOST}:{port}", process)


def wait_ready(emulator: Emulator, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Wait until the emulator answers HTTP on its root URL."""
    processes.wait_http(
        emulator.url + "/",
        f"{emulator.name} emulator",
        timeout,
        emulator.process,
        ok=lambda status: status == 200,
    )
