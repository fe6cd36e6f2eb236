"""What one session run works with: target, manifest, commit, ids and the options it was given."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deploy.environments import Environment
from deploy.steps import StepFailed
from imageflow.manifest import Manifest
from stack.state import REPO_ROOT


def git_commit() -> str:
    """The commit being deployed: $IMAGEFLOW_GIT_COMMIT (CI builds without .git), git HEAD, or "unknown"."""
    fixed = os.environ.get("IMAGEFLOW_GIT_COMMIT", "")
    if fixed:
        return fixed
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def new_run_id() -> str:
    """A short id for tags, lanes and backups: $IMAGEFLOW_DEPLOY_RUN_ID (tests) or time + random."""
    fixed = os.environ.get("IMAGEFLOW_DEPLOY_RUN_ID", "")
    if fixed:
        return fixed
    # Lowercase letters and digits only: it ends up in a Cloud Run tag, a topic name and a path.
    return datetime.now(UTC).strftime("%m%d%H%M") + secrets.token_hex(2)


RULES_API = "https://firebaserules.googleapis.com/v1"
MONITORING_API = "https://monitoring.googleapis.com/v3"
FIRESTORE_API = "https://firestore.googleapis.com/v1"


@dataclass(frozen=True)
class Sources:
    """Where a run reads what it deploys and writes what it did: this checkout, unless told otherwise."""

    rules_file: Path = REPO_ROOT / "firestore.rules"
    # The git repository whose history holds the rules of earlier commits (the rules' undo).
    rules_repo: Path = REPO_ROOT
    rules_api: str = RULES_API
    # The canary's readers on Google Cloud: Cloud Monitoring and Firestore's REST APIs.
    monitoring_api: str = MONITORING_API
    firestore_api: str = FIRESTORE_API
    runs_dir: Path = REPO_ROOT / "reports" / "runs"
    # Where the gate's suite writes its reports (Allure results and HTML, traces) and the canary its picture.
    reports_dir: Path = REPO_ROOT / "reports"

    @classmethod
    def from_env(cls) -> Sources:
        """The checkout's, each overridden by its IMAGEFLOW_* variable.

        The deploy tests run sessions as subprocesses against a fake cloud: these variables are how
        they point a run at their own rules, repository, Google APIs, records and reports, read here only.
        """
        env, default = os.environ, cls()
        return cls(
            rules_file=Path(env.get("IMAGEFLOW_RULES_FILE") or default.rules_file),
            rules_repo=Path(env.get("IMAGEFLOW_RULES_REPO") or default.rules_repo),
            rules_api=(env.get("IMAGEFLOW_FIREBASERULES_API") or default.rules_api).rstrip("/"),
            monitoring_api=(env.get("IMAGEFLOW_MONITORING_API") or default.monitoring_api).rstrip("/"),
            firestore_api=(env.get("IMAGEFLOW_FIRESTORE_API") or default.firestore_api).rstrip("/"),
            runs_dir=Path(env.get("IMAGEFLOW_RUNS_DIR") or default.runs_dir),
            reports_dir=Path(env.get("IMAGEFLOW_REPORTS_DIR") or default.reports_dir),
        )

    def rules_text(self) -> str:
        """The text of the rules this run deploys; StepFailed names the file when it cannot be read."""
        try:
            return self.rules_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise StepFailed(f"cannot read {self.rules_file}: {exc.strerror}") from exc


@dataclass
class RunContext:
    """The inputs of one run of a session."""

    session: str
    env: Environment
    manifest: Manifest
    commit: str
    run_id: str
    image: str = ""
    backup: bool = False
    smoke: bool = False
    pytest_args: list[str] = field(default_factory=list)
    restore_backup: str = ""
    rules_from: str = ""
    # Extra configuration for the local candidates (the rollback drill switches a fault on with it).
    revision_env: dict[str, str] = field(default_factory=dict)
    # False with --no-canary: promoted in one switch after the lane, as before canary steps existed.
    canary: bool = True
    sources: Sources = field(default_factory=Sources.from_env)

    @property
    def progressive(self) -> bool:
        """Canary steps and the bake run: the target configures them and --no-canary was not given."""
        return self.canary and self.env.canary is not None and self.session != "rollback"

    @property
    def tag(self) -> str:
        """The Cloud Run tag (and local revision tag) of this run's candidates."""
        return f"cand-{self.run_id}"

    @property
    def lane(self) -> str:
        """The verification lane prefix of this run (matches imageflow.config.LANE_PATTERN)."""
        return f"lane-{self.run_id}--"

    @property
    def image_ref(self) -> str:
        """The container image to deploy: --image, $IMAGEFLOW_IMAGE, or the registry path by commit."""
        return (
            self.image
            or os.environ.get("IMAGEFLOW_IMAGE")
            or (f"{self.env.region}-docker.pkg.dev/{self.env.project}/imageflow/imageflow:{self.commit}")
        )
