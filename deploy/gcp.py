"""The Google Cloud executor: every step of the plan as real gcloud and firebase commands."""

from __future__ import annotations

import json
import os
import shlex
from functools import partial
from pathlib import Path
from typing import Any

import requests

from deploy import verify
from deploy.context import RunContext, rules_text
from deploy.record import RunRecord, runs_dir
from deploy.shell import Shell, last_line
from deploy.steps import Change, StepFailed, VerificationFailed
from imageflow import config as service_config
from imageflow.manifest import AgentSpec
from stack.state import REPO_ROOT

RULES_API = "https://firebaserules.googleapis.com/v1"
HTTP_TIMEOUT = 30.0
# IAM principals that make a Cloud Run service public: an agent granting them anything would take
# pushes (and any request) from anyone, not only from the push identity.
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
INVOKER_ROLE = "roles/run.invoker"

# Alert policies the monitoring step keeps present and enabled (display name suffix -> condition).
POLICIES: dict[str, dict[str, Any]] = {
    "dashboard-uptime": {
        "displayName": "Dashboard uptime check failing",
        "filter": 'metric.type="monitoring.googleapis.com/uptime_check/check_passed" '
        'AND resource.type="uptime_url"',
        "comparison": "COMPARISON_LT",
        "threshold": 1,
    },
    "dead-letter": {
        "displayName": "Messages in the dead-letter topic",
        "filter": 'metric.type="pubsub.googleapis.com/topic/send_message_operation_count" '
        'AND resource.type="pubsub_topic"',
        "comparison": "COMPARISON_GT",
        "threshold": 0,
    },
}


def _dry_service(name: str) -> str:
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


class GcpExecutor:
    """Does, checks and undoes each step of the plan on Google Cloud."""

    def __init__(self, ctx: RunContext, shell: Shell, record: RunRecord) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.manifest = ctx.manifest
        self.shell = shell
        self.record = record
        self.changes: list[Change] = []
        self.before: dict[str, dict[str, int]] = {}
        self.candidate_revisions: dict[str, str] = {}
        self.candidate_urls: dict[str, str] = {}
        self.new_services: set[str] = set()
        self.deferred: list[tuple[AgentSpec, str]] = []
        self.workdir = runs_dir() / f"{ctx.run_id}-work"

    # -- command helpers -------------------------------------------------------------------
    @property
    def project(self) -> str:
        """--project=P, on every command so the ambient gcloud config never decides."""
        return f"--project={self.env.project}"

    def gcloud(self, *args: str) -> list[str]:
        """A gcloud command in the target project."""
        return ["gcloud", *args, self.project]

    def run_cmd(self, *args: str) -> list[str]:
        """A `gcloud run` command in the target region and project."""
        return ["gcloud", "run", *args, f"--region={self.env.region}", self.project]

    def undoable(self, what: str, argv: list[str]) -> None:
        """Register a change whose undo is one command."""
        self.changes.append(Change(what, partial(self.shell.run, argv), shlex.join(argv)))

    def exists(self, argv: list[str]) -> bool:
        """True when a describe command succeeds (a dry run assumes not, to show the create)."""
        return not self.shell.dry_run and self.shell.run(argv, check=False).ok

    def names(self, kind: str) -> set[str]:
        """Short names of the project's Pub/Sub topics or subscriptions."""
        out = self.shell.run(self.gcloud("pubsub", kind, "list", "--format=value(name)")).stdout
        return {line.rsplit("/", 1)[-1] for line in out.split() if line}

    def describe(self, service: str) -> dict[str, Any] | None:
        """`gcloud run services describe` as JSON, or None when the service does not exist."""
        name = self.env.service_name(service)
        result = self.shell.run(
            self.run_cmd("services", "describe", name, "--format=json"),
            check=False,
            dry_stdout=_dry_service(name),
        )
        if not result.ok:
            if "Cannot find service" in result.stderr:
                return None
            raise StepFailed(f"cannot describe {name}: {last_line(result.stderr)}")
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise StepFailed(f"`gcloud run services describe {name}` did not answer JSON") from exc
        return data if isinstance(data, dict) else None

    @property
    def push_account(self) -> str:
        """The service account Pub/Sub signs push requests with."""
        return self.env.push_service_account or f"imageflow-pusher@{self.env.project}.iam.gserviceaccount.com"

    def delete_if_exists(self, service: str, argv: list[str]) -> None:
        """Delete a service this run created, if it exists at all."""
        if self.describe(service) is not None:
            self.shell.run(argv)

    def secret_name(self, key: str) -> str:
        """The Secret Manager name of a manifest secret key (SESSION_SECRET -> imageflow-session-secret)."""
        return self.env.service_prefix + key.lower().replace("_", "-")

    def create_subscription(
        self, name: str, topic: str, endpoint: str, agent: AgentSpec, *, lane: bool
    ) -> list[str]:
        """The push subscription create command (lane ones have no dead-letter policy: they are temporary)."""
        argv = [
            "gcloud",
            "pubsub",
            "subscriptions",
            "create",
            name,
            f"--topic={topic}",
            f"--push-endpoint={endpoint.rstrip('/')}/",
            f"--push-auth-service-account={self.push_account}",
            f"--ack-deadline={max(10, int(agent.deadline_seconds))}",
        ]
        if not lane:
            argv += [
                f"--dead-letter-topic={self.manifest.dead_letter_topic}",
                f"--max-delivery-attempts={self.manifest.max_delivery_attempts}",
            ]
        return [*argv, self.project]

    # -- steps ------------------------------------------------------------------------------
    def infrastructure(self) -> str:
        """Topics, dead-letter topic, push subscriptions, bucket and database: create what is missing."""
        created: list[str] = []
        topics = self.names("topics")
        for topic in self.manifest.topics:
            if topic not in topics:
                self.shell.run(self.gcloud("pubsub", "topics", "create", topic), when="only if missing")
                self.undoable(f"delete topic {topic}", self.gcloud("pubsub", "topics", "delete", topic))
                created.append(topic)
        created += self.ensure_subscriptions()
        bucket = f"gs://{self.env.bucket}"
        if not self.exists(self.gcloud("storage", "buckets", "describe", bucket, "--format=value(name)")):
            self.shell.run(
                self.gcloud(
                    "storage",
                    "buckets",
                    "create",
                    bucket,
                    f"--location={self.env.region}",
                    "--uniform-bucket-level-access",
                ),
                when="only if missing",
            )
            self.undoable(
                f"delete empty bucket {bucket}", self.gcloud("storage", "buckets", "delete", bucket)
            )
            created.append(bucket)
        database = self.gcloud(
            "firestore", "databases", "describe", "--database=(default)", "--format=value(name)"
        )
        if not self.exists(database):
            # A new database is left in place on rollback: deleting a database is never automatic.
            self.shell.run(
                self.gcloud("firestore", "databases", "create", f"--location={self.env.region}"),
                when="only if missing",
            )
            created.append("firestore (default)")
        if self.shell.dry_run:
            return "dry run"
        return f"created {', '.join(created)}" if created else "all present"

    def check_infrastructure(self) -> None:
        """Every manifest topic and every push subscription (but those waiting for their service) exists."""
        if self.shell.dry_run:
            return
        topics, subscriptions = self.names("topics"), self.names("subscriptions")
        deferred = {self.manifest.subscription_name(a.name, t) for a, t in self.deferred}
        wanted = {
            self.manifest.subscription_name(a.name, t) for a in self.manifest.agents for t in a.triggers
        }
        missing = sorted((set(self.manifest.topics) - topics) | (wanted - deferred - subscriptions))
        if missing:
            raise StepFailed(f"still missing after the infrastructure step: {', '.join(missing)}")

    def ensure_subscriptions(self) -> list[str]:
        """Create each agent's missing push subscriptions; defer those whose service does not exist yet."""
        existing = self.names("subscriptions")
        created: list[str] = []
        self.deferred = []
        for agent in self.manifest.agents:
            missing = [
                t for t in agent.triggers if self.manifest.subscription_name(agent.name, t) not in existing
            ]
            if not missing:
                continue
            service = self.describe(agent.name)
            if service is None:
                self.deferred += [(agent, t) for t in missing]
                continue
            for topic in missing:
                name = self.manifest.subscription_name(agent.name, topic)
                self.shell.run(
                    self.create_subscription(name, topic, service["status"]["url"], agent, lane=False),
                    when="only if missing",
                )
                self.undoable(
                    f"delete subscription {name}", self.gcloud("pubsub", "subscriptions", "delete", name)
                )
                created.append(name)
        return created

    def secrets(self) -> str:
        """Every manifest secret has an enabled latest version (names only, never values)."""
        names = dict.fromkeys(self.secret_name(k) for s in self.manifest.services for k in s.required_secrets)
        for name in names:
            state = self.shell.run(
                self.gcloud(
                    "secrets", "versions", "describe", "latest", f"--secret={name}", "--format=value(state)"
                ),
                check=False,
                dry_stdout="ENABLED",
            )
            if not state.ok or state.stdout.strip() != "ENABLED":
                raise StepFailed(
                    f"secret {name} has no enabled latest version "
                    f"(create it: gcloud secrets create {name} --data-file=- {self.project})"
                )
        return f"{len(names)} present"

    def backup(self) -> str:
        """Export the whole Firestore database to the backup bucket before anything changes."""
        uri = f"{self.env.backup_bucket.rstrip('/')}/backup-{self.ctx.run_id}"
        self.shell.run(self.gcloud("firestore", "export", uri, "--format=json"), stream=True)
        self.record.backup = uri
        return uri

    def candidates(self) -> str:
        """Deploy every service as a tagged candidate revision with no traffic."""
        for spec in self.manifest.services:
            name = self.env.service_name(spec.name)
            current = self.describe(spec.name)
            argv = self.run_cmd("deploy", name, f"--image={self.ctx.image_ref}", f"--args={spec.name}")
            env_vars = {
                "IMAGEFLOW_ENV": self.env.name,
                "GOOGLE_CLOUD_PROJECT": self.env.project,
                "IMAGEFLOW_BUCKET": self.env.bucket,
                "IMAGEFLOW_COMMIT": self.ctx.commit,
            }
            if self.env.allow_test_failures:
                env_vars[service_config.TEST_FAILURES_KEY] = service_config.TEST_FAILURES_ALLOWED
            argv.append("--set-env-vars=" + ",".join(f"{k}={v}" for k, v in env_vars.items()))
            if spec.required_secrets:
                argv.append(
                    "--set-secrets="
                    + ",".join(f"{k}={self.secret_name(k)}:latest" for k in spec.required_secrets)
                )
            # The dashboard is public; agents only accept Pub/Sub pushes signed for the push account.
            argv.append(
                "--allow-unauthenticated" if spec.name == "dashboard" else "--no-allow-unauthenticated"
            )
            argv.append(f"--tag={self.ctx.tag}")
            if current is None:
                # Cloud Run refuses --no-traffic when creating a service; nothing is live yet anyway.
                self.new_services.add(spec.name)
            else:
                argv.append("--no-traffic")
                self.before[spec.name] = traffic_split(current)
                self.record.revisions_before[spec.name] = live_revision(current)
            if current is None:
                # Registered first: a failed first deploy can still leave a broken service behind.
                delete = self.run_cmd("services", "delete", name, "--quiet")
                self.changes.append(
                    Change(
                        f"delete new service {name}",
                        partial(self.delete_if_exists, spec.name, delete),
                        shlex.join(delete),
                    )
                )
            # Minutes per service: its progress reaches the console as gcloud prints it.
            self.shell.run([*argv, "--quiet"], stream=True)
            if current is not None:
                self.undoable(
                    f"remove tag {self.ctx.tag} from {name}",
                    self.run_cmd("services", "update-traffic", name, f"--remove-tags={self.ctx.tag}"),
                )
            if spec.name in self.manifest.agent_names:
                # Pushes are signed for the push identity: it alone may invoke the (private) agent.
                self.shell.run(
                    self.run_cmd(
                        "services",
                        "add-iam-policy-binding",
                        name,
                        f"--member=serviceAccount:{self.push_account}",
                        "--role=roles/run.invoker",
                    )
                )
            deployed = self.describe(spec.name) or {}
            status = deployed.get("status", {})
            revision = status.get("latestCreatedRevisionName", "")
            if not revision or status.get("latestReadyRevisionName") != revision:
                raise StepFailed(f"candidate revision {revision or '?'} of {name} is not ready")
            url = tagged_url(deployed, self.ctx.tag) or (
                self.shell.dry_run and f"https://{self.ctx.tag}---<{name}>"
            )
            if not url:
                raise StepFailed(f"{name} has no URL for tag {self.ctx.tag}")
            self.candidate_revisions[spec.name] = revision
            self.candidate_urls[spec.name] = str(url)
        self.record.revisions_candidate = dict(self.candidate_revisions)
        return ", ".join(f"{s}={r}" for s, r in self.candidate_revisions.items())

    def rules_dir(self, label: str, content: str) -> Path:
        """A firebase project dir holding only firestore.rules, so `firebase deploy` ships just the rules."""
        target = self.workdir / f"rules-{label}"
        if not self.shell.dry_run:
            target.mkdir(parents=True, exist_ok=True)
            (target / "firestore.rules").write_text(content, encoding="utf-8")
            (target / "firebase.json").write_text(
                json.dumps({"firestore": {"rules": "firestore.rules"}}) + "\n", encoding="utf-8"
            )
        return target

    def firebase_deploy(self, directory: Path) -> list[str]:
        """The rules deploy command for a prepared directory."""
        return [
            "firebase",
            "deploy",
            "--only=firestore:rules",
            f"--project={self.env.project}",
            f"--config={directory / 'firebase.json'}",
            "--non-interactive",
        ]

    def rules_at(self, revision: str) -> str:
        """firestore.rules as it was at a git revision (git show REV:firestore.rules)."""
        repo = os.environ.get("IMAGEFLOW_RULES_REPO") or str(REPO_ROOT)
        return self.shell.run(
            ["git", "-C", repo, "show", f"{revision}:firestore.rules"], dry_stdout="<rules at that commit>"
        ).stdout

    def deployed_commit(self, service: str, revision: str) -> str:
        """The IMAGEFLOW_COMMIT a revision was deployed from, or ""."""
        if not revision:
            return ""
        out = self.shell.run(
            self.run_cmd("revisions", "describe", revision, "--format=json"),
            check=False,
            dry_stdout=json.dumps(
                {
                    "spec": {
                        "containers": [{"env": [{"name": "IMAGEFLOW_COMMIT", "value": "<previous commit>"}]}]
                    }
                }
            ),
        )
        try:
            return container_env(json.loads(out.stdout)).get("IMAGEFLOW_COMMIT", "") if out.ok else ""
        except json.JSONDecodeError:
            return ""

    def rules(self) -> str:
        """Deploy this commit's firestore.rules; the undo redeploys the rules of the previous commit."""
        content = rules_text()
        previous = self.ctx.rules_from or self.deployed_commit(
            "dashboard", self.record.revisions_before.get("dashboard", "")
        )
        self.shell.run(self.firebase_deploy(self.rules_dir("candidate", content)))
        if previous:
            self.changes.append(
                Change(
                    f"redeploy firestore.rules of {previous}",
                    lambda: self.deploy_rules_of(previous),
                    f"git show {previous}:firestore.rules > firestore.rules && "
                    "firebase deploy --only firestore:rules "
                    f"--project={self.env.project}",
                )
            )
            return f"previous rules: {previous}"
        self.record.warnings.append("no previous commit known: a rollback cannot restore the previous rules")
        return "no previous rules known"

    def deploy_rules_of(self, revision: str) -> None:
        """Redeploy firestore.rules from git history."""
        self.shell.run(self.firebase_deploy(self.rules_dir(revision, self.rules_at(revision))))

    def lane_topics(self) -> list[str]:
        """The topics a verification lane needs (all but the dead-letter topic)."""
        return [t for t in self.manifest.topics if t != self.manifest.dead_letter_topic]

    def verify(self) -> str:
        """Open a verification lane to the candidates, run the suite through it, close the lane."""
        lane = self.ctx.lane
        opened: list[list[str]] = []
        try:
            for topic in self.lane_topics():
                self.shell.run(self.gcloud("pubsub", "topics", "create", lane + topic))
                opened.append(self.gcloud("pubsub", "topics", "delete", lane + topic))
            for agent in self.manifest.agents:
                for topic in agent.triggers:
                    name = lane + self.manifest.subscription_name(agent.name, topic)
                    url = self.candidate_urls[agent.name]
                    self.shell.run(self.create_subscription(name, lane + topic, url, agent, lane=True))
                    opened.append(self.gcloud("pubsub", "subscriptions", "delete", name))
            return self.run_suite(lane)
        finally:
            self.close_lane(opened)

    def run_suite(self, lane: str) -> str:
        """Run the suite against the candidates; red raises VerificationFailed."""
        command = verify.suite_command(self.ctx)
        env = verify.suite_env(
            self.ctx,
            self.candidate_urls.get("dashboard", ""),
            self.candidate_revisions,
            self.candidate_urls,
            lane,
        )
        result = self.shell.run(command, check=False, env=env, stream=True, cwd=str(REPO_ROOT))
        self.record.verification = {
            "command": shlex.join(command),
            "exit_code": result.exit_code,
            "passed": result.ok,
            "lane": lane,
            "target": self.env.name,
        }
        if not result.ok:
            raise VerificationFailed(verify.red_reason(result.exit_code))
        return "suite green"

    def close_lane(self, opened: list[list[str]]) -> None:
        """Delete the lane's subscriptions then topics; leftovers become a warning with commands."""
        subscriptions = [a for a in opened if a[2] == "subscriptions"]
        topics = [a for a in opened if a[2] == "topics"]
        for argv in [*subscriptions, *topics]:
            if not self.shell.run(argv, check=False).ok:
                self.record.warnings.append(f"lane leftover, delete by hand: {shlex.join(argv)}")

    def promote(self) -> str:
        """Move all traffic to the verified candidates (by tag); the undo restores the previous split."""
        # Consumers before producers (finalizer first, dashboard last): new messages meet new agents.
        for spec in reversed(self.manifest.services):
            name = self.env.service_name(spec.name)
            self.shell.run(self.run_cmd("services", "update-traffic", name, f"--to-tags={self.ctx.tag}=100"))
            previous = self.before.get(spec.name)
            if previous:
                split = ",".join(f"{r}={p}" for r, p in previous.items())
                self.undoable(
                    f"route {name} back to {split}",
                    self.run_cmd("services", "update-traffic", name, f"--to-revisions={split}"),
                )
        if self.deferred:
            self.ensure_subscriptions()
        return "all traffic on the candidates"

    def check_promote(self) -> None:
        """Every service serves its candidate with all of its traffic."""
        for spec in self.manifest.services:
            live = live_revision(self.describe(spec.name) or {})
            self.record.revisions_after[spec.name] = live
            if not self.shell.dry_run and live != self.candidate_revisions[spec.name]:
                raise StepFailed(
                    f"{self.env.service_name(spec.name)} serves {live}, "
                    f"not {self.candidate_revisions[spec.name]}"
                )

    def monitoring(self) -> str:
        """Uptime check on the dashboard and the alert policies: present and enabled (created if missing)."""
        prefix = self.env.service_prefix
        checks = json.loads(
            self.shell.run(
                self.gcloud("monitoring", "uptime", "list-configs", "--format=json"), dry_stdout="[]"
            ).stdout
            or "[]"
        )
        uptime_name = f"{prefix}dashboard-healthz"
        if not any(c.get("displayName") == uptime_name for c in checks):
            dashboard = self.describe("dashboard") or {}
            host = str(dashboard.get("status", {}).get("url", "")).removeprefix("https://").rstrip("/")
            self.shell.run(
                self.gcloud(
                    "monitoring",
                    "uptime",
                    "create",
                    uptime_name,
                    "--resource-type=uptime-url",
                    f"--resource-labels=host={host},project_id={self.env.project}",
                    "--path=/healthz",
                    "--protocol=https",
                ),
                when="only if missing",
            )
        policies = json.loads(
            self.shell.run(
                self.gcloud("alpha", "monitoring", "policies", "list", "--format=json"), dry_stdout="[]"
            ).stdout
            or "[]"
        )
        by_name = {p.get("displayName"): p for p in policies}
        for suffix, spec in POLICIES.items():
            display = f"{prefix}{suffix}"
            policy = by_name.get(display)
            if policy is None:
                path = self.policy_file(display, spec)
                self.shell.run(
                    self.gcloud("alpha", "monitoring", "policies", "create", f"--policy-from-file={path}"),
                    when="only if missing",
                )
            elif not policy.get("enabled", False):
                self.shell.run(
                    self.gcloud(
                        "alpha", "monitoring", "policies", "update", str(policy.get("name")), "--enabled"
                    )
                )
        return f"uptime check {uptime_name}, {len(POLICIES)} alert policies enabled"

    def policy_file(self, display: str, spec: dict[str, Any]) -> Path:
        """Write an alert policy definition for `policies create --policy-from-file`."""
        path = self.workdir / f"policy-{display}.json"
        body = {
            "displayName": display,
            "combiner": "OR",
            "enabled": True,
            "notificationChannels": [self.env.notification_channel] if self.env.notification_channel else [],
            "conditions": [
                {
                    "displayName": spec["displayName"],
                    "conditionThreshold": {
                        "filter": spec["filter"],
                        "comparison": spec["comparison"],
                        "thresholdValue": spec["threshold"],
                        "duration": "300s",
                    },
                }
            ],
        }
        if not self.shell.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        return path

    def checklist(self) -> str:
        """Post-launch: services ready, agents not public, no emulator settings, rules as this commit's."""
        token = self.shell.run(
            ["gcloud", "auth", "print-identity-token"], dry_stdout="<token>"
        ).stdout.strip()
        self.shell.register_secret(token, "identity token")
        problems: list[str] = []
        for spec in self.manifest.services:
            name = self.env.service_name(spec.name)
            service = self.describe(spec.name) or {}
            env = container_env(service)
            emulators = sorted(k for k in env if k.endswith("_EMULATOR_HOST"))
            if emulators:
                problems.append(f"{name} has {', '.join(emulators)} set")
            if env.get("IMAGEFLOW_ENV", self.env.name) != self.env.name:
                problems.append(f"{name} runs with IMAGEFLOW_ENV={env.get('IMAGEFLOW_ENV')}")
            if env.get(service_config.TEST_FAILURES_KEY) and not self.env.allow_test_failures:
                problems.append(f"{name} runs with {service_config.TEST_FAILURES_KEY} set")
            if spec.name in self.manifest.agent_names:
                problems += self.public_invokers(name)
            problems += self.readiness(name, str(service.get("status", {}).get("url", "")), token)
        problems += self.rules_match()
        if problems:
            raise StepFailed("; ".join(problems))
        return "all services ready, agents not public, no emulator settings, rules match"

    def public_invokers(self, name: str) -> list[str]:
        """An agent takes pushes from the push identity only: its IAM policy grants nothing to everyone."""
        result = self.shell.run(
            self.run_cmd("services", "get-iam-policy", name, "--format=json"), check=False, dry_stdout="{}"
        )
        if self.shell.dry_run:
            return []
        if not result.ok:
            return [f"cannot read the IAM policy of {name}: {last_line(result.stderr)}"]
        try:
            policy = json.loads(result.stdout or "{}")
            bindings = policy.get("bindings") or [] if isinstance(policy, dict) else []
            public = sorted(
                f"{member} has {binding.get('role', '?')}"
                for binding in bindings
                for member in binding.get("members") or []
                if member in PUBLIC_MEMBERS
            )
        except (json.JSONDecodeError, AttributeError, TypeError):
            return [f"the IAM policy of {name} is not a JSON policy"]
        problems = [f"{name} is public ({', '.join(public)})"] if public else []
        invokers = {
            member
            for binding in bindings
            if binding.get("role") == INVOKER_ROLE
            for member in binding.get("members") or []
        }
        if f"serviceAccount:{self.push_account}" not in invokers:
            problems.append(f"{name} cannot be invoked by the push identity {self.push_account}")
        return problems

    def readiness(self, name: str, url: str, token: str) -> list[str]:
        """GET /readyz on one service: 200 and ready, on this environment, with no emulator hosts."""
        self.shell.note(f"GET {url}/readyz")
        if self.shell.dry_run:
            return []
        try:
            response = requests.get(
                f"{url}/readyz", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
            )
            report = response.json()
        except (requests.RequestException, ValueError) as exc:
            return [f"{name} /readyz unreachable or not JSON ({type(exc).__name__})"]
        if response.status_code != 200 or not report.get("ready"):
            return [f"{name} not ready: {report.get('message', response.status_code)}"]
        if report.get("emulators"):
            return [f"{name} sees emulator variables {report['emulators']}"]
        return []

    def rules_match(self) -> list[str]:
        """The rules live in Firestore equal this commit's firestore.rules (Firebase Rules API)."""
        base = os.environ.get("IMAGEFLOW_FIREBASERULES_API", RULES_API).rstrip("/")
        token = self.shell.run(["gcloud", "auth", "print-access-token"], dry_stdout="<token>").stdout.strip()
        self.shell.register_secret(token, "access token")
        release_url = f"{base}/projects/{self.env.project}/releases/cloud.firestore"
        self.shell.note(f"GET {release_url} and its ruleset")
        if self.shell.dry_run:
            return []
        headers = {"Authorization": f"Bearer {token}"}
        try:
            release = requests.get(release_url, headers=headers, timeout=HTTP_TIMEOUT).json()
            ruleset = requests.get(
                f"{base}/{release['rulesetName']}", headers=headers, timeout=HTTP_TIMEOUT
            ).json()
            files = ruleset["source"]["files"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            return [f"cannot read the deployed rules ({type(exc).__name__})"]
        deployed = "".join(f.get("content", "") for f in files)
        expected = rules_text()
        return (
            []
            if deployed.strip() == expected.strip()
            else ["deployed firestore.rules differ from this commit's"]
        )


def _ready(revision: dict[str, Any]) -> bool:
    """True when a revision's Ready condition is True."""
    conditions = revision.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class GcpRollback:
    """The rollback session on Google Cloud: previous revisions, previous rules, optionally a backup."""

    def __init__(self, executor: GcpExecutor) -> None:
        self.x = executor

    def previous_revision(self, service: str) -> tuple[str, str]:
        """(live, previous) revision of a service: previous = newest ready revision older than live."""
        x = self.x
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
        x = self.x
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
