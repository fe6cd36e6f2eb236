"""Cloud Run's `describe` answers read as the plan needs them: traffic, live revision, tags, env."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from deploy.context import RunContext
    from deploy.environments import Environment
    from deploy.record import RunRecord
    from deploy.shell import Shell
    from imageflow.manifest import Manifest


class CloudRunCommands(Protocol):
    """What the post-launch checks and the canary use of the Google Cloud executor (no import cycle)."""

    ctx: RunContext
    env: Environment
    manifest: Manifest
    shell: Shell
    record: RunRecord
    workdir: Path

    @property
    def push_account(self) -> str:
        """The service account Pub/Sub signs pushes with."""

    def gcloud(self, *args: str) -> list[str]:
        """A gcloud command in the target project."""

    def run_cmd(self, *args: str) -> list[str]:
        """A `gcloud run` command in the target region and project."""

    def describe(self, service: str) -> dict[str, Any] | None:
        """`gcloud run services describe` as JSON, or None when the service does not exist."""


def dry_service(name: str) -> str:
    """A stand-in `run services describe` answer for dry runs: placeholders, clearly not real."""
    return json.dumps(
        {
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [{"env": []}]}}},
            "status": {
                "url": f"https://<{name}-url>",
                "latestCreatedRevisionName": f"<new revision of {name}>",
                "latestReadyRevisionName": f"<new revision of {name}>",
                "traffic": [{"revisionName": f"<live revision of {name}>", "percent": 100}],
            },
        }
    )


def traffic_split(service: dict[str, Any]) -> dict[str, int]:
    """The revisions serving traffic, with their percent (tags without traffic left out)."""
    split: dict[str, int] = {}
    for target in service.get("status", {}).get("traffic", []):
        percent = int(target.get("percent") or 0)
        name = target.get("revisionName") or service.get("status", {}).get("latestReadyRevisionName", "")
        if percent and name:
            split[name] = split.get(name, 0) + percent
    return split


def live_revision(service: dict[str, Any]) -> str:
    """The revision with the most traffic."""
    split = traffic_split(service)
    return max(split, key=lambda r: split[r]) if split else ""


def tagged_url(service: dict[str, Any], tag: str) -> str:
    """The URL Cloud Run gives a tag (status.traffic[].url)."""
    for target in service.get("status", {}).get("traffic", []):
        if target.get("tag") == tag and target.get("url"):
            return str(target["url"])
    return ""


def container_env(resource: dict[str, Any]) -> dict[str, str]:
    """The plain env of a service (its template) or revision (names and values; secrets are refs)."""
    spec = resource.get("spec", {})
    spec = spec.get("template", {}).get("spec", spec)
    containers = spec.get("containers") or [{}]
    return {e["name"]: str(e.get("value", "")) for e in containers[0].get("env", []) if "name" in e}
