"""The rollback session on Google Cloud: every service back to its previous revision, the rules of
the commit that revision was built from, and optionally a Firestore backup restored."""

from __future__ import annotations

import json
import shlex
from functools import partial
from typing import Any

from deploy.cloud_run import live_revision
from deploy.gcp import GcpExecutor
from deploy.steps import Change, StepFailed


def _ready(revision: dict[str, Any]) -> bool:
    """True when a revision's Ready condition is True."""
    conditions = revision.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class GcpRollback:
    """The rollback session on Google Cloud: previous revisions, previous rules, optionally a backup."""

    def __init__(self, executor: GcpExecutor) -> None:
        self.executor = executor

    def previous_revision(self, service: str) -> tuple[str, str]:
        """(live, previous) revision of a service: previous = newest ready revision older than live."""
        x = self.executor
        name = x.env.service_name(service)
        live = live_revision(x.describe(service) or {})
        out = x.shell.run(
            x.run_cmd("revisions", "list", f"--service={name}", "--format=json"),
            dry_stdout=json.dumps(
                [
                    {
                        "metadata": {"name": f"<previous revision of {name}>", "creationTimestamp": "0"},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                    }
                ]
            ),
        )
        revisions = sorted(json.loads(out.stdout or "[]"), key=lambda r: r["metadata"]["creationTimestamp"])
        names = [r["metadata"]["name"] for r in revisions]
        older = revisions[: names.index(live)] if live in names else revisions
        ready = [r["metadata"]["name"] for r in older if _ready(r) and r["metadata"]["name"] != live]
        if not ready:
            raise StepFailed(f"{name} has no earlier ready revision to roll back to (live: {live or 'none'})")
        return live, ready[-1]

    def plan(self) -> list[Change]:
        """Find what to go back to and return the changes to apply, in order."""
        x = self.executor
        changes: list[Change] = []
        for spec in x.manifest.services:
            name = x.env.service_name(spec.name)
            live, previous = self.previous_revision(spec.name)
            x.record.revisions_before[spec.name] = live
            x.record.revisions_after[spec.name] = previous
            argv = x.run_cmd("services", "update-traffic", name, f"--to-revisions={previous}=100")
            changes.append(
                Change(f"route {name} to {previous}", partial(x.shell.run, argv), shlex.join(argv))
            )
        commit = x.ctx.rules_from or x.deployed_commit("dashboard", x.record.revisions_after["dashboard"])
        if not commit:
            raise StepFailed(
                "the previous dashboard revision records no IMAGEFLOW_COMMIT: pass --rules-from REV"
            )
        changes.append(
            Change(
                f"redeploy firestore.rules of {commit}",
                lambda: x.deploy_rules_of(commit),
                f"git show {commit}:firestore.rules > firestore.rules && "
                "firebase deploy --only firestore:rules "
                f"--project={x.env.project}",
            )
        )
        if x.ctx.restore_backup:
            uri = x.ctx.restore_backup
            if not uri.startswith("gs://"):
                uri = f"{x.env.backup_bucket.rstrip('/')}/{uri}"
            argv = x.gcloud("firestore", "import", uri)
            restore = partial(x.shell.run, argv, stream=True)
            changes.append(Change(f"restore backup {uri}", restore, shlex.join(argv)))
            x.record.backup = uri
        return changes
