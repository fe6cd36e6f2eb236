"""The Google Cloud executor: every step of the plan as real gcloud and firebase commands."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from deploy import canary_report, verify
from deploy.canary import CanaryAborted, CanaryRun, Revisions
from deploy.cloud_run import container_env, dry_service, live_revision, tagged_url, traffic_split
from deploy.context import RunContext
from deploy.gcp_launch import PostLaunch
from deploy.gcp_traffic import GcpTraffic
from deploy.record import RunRecord
from deploy.shell import Shell, last_line
from deploy.steps import Change, StepFailed, VerificationFailed
from imageflow import config as service_config
from imageflow.manifest import AgentSpec
from stack.state import REPO_ROOT


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
        self.canary_run: CanaryRun | None = None
        self.workdir = ctx.sources.runs_dir / f"{ctx.run_id}-work"

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
            dry_stdout=dry_service(name),
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
        repo = str(self.ctx.sources.rules_repo)
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
        content = self.ctx.sources.rules_text()
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

    def canary(self) -> str:
        """Move each configured share to the candidates' tag, judged per window from Cloud Monitoring."""
        config = self.env.canary
        assert config is not None  # the plan has this step only when the target configures it
        if self.new_services:
            new = ", ".join(sorted(self.new_services))
            self.record.warnings.append(f"canary skipped: no previous revision of {new} to compare with")
            return "not applicable: no previous revision to compare with"
        traffic = GcpTraffic(self, self.candidate_revisions, self.before)
        if self.shell.dry_run:
            self.shell.say(
                f"    read the previous release's last {config.window_seconds:g}s (the bake's baseline)"
            )
            for percent in config.steps:
                traffic.shift(percent)
            return f"steps {', '.join(f'{p}%' for p in config.steps)}"
        revisions = Revisions(
            candidate=dict(self.candidate_revisions),
            previous={s: max(split, key=lambda r: split[r]) for s, split in self.before.items()},
            deadlines={a.name: a.deadline_seconds for a in self.manifest.agents},
        )
        self.canary_run = CanaryRun(config, traffic, revisions, say=self.shell.say)
        if config.traffic_users:
            # Locust against a deployed dashboard needs its users deleted there too: not built yet.
            self.record.warnings.append(
                f"traffic_users = {config.traffic_users} applies locally only: the canary judges the traffic "
                f"{self.env.name} has (a window without enough of it holds, and aborts unjudged)"
            )
        self.changes.append(
            Change(
                "all traffic back on the previous revisions",
                traffic.restore,
                "; ".join(
                    shlex.join(
                        self.run_cmd(
                            "services",
                            "update-traffic",
                            self.env.service_name(s),
                            "--to-revisions=" + ",".join(f"{r}={p}" for r, p in split.items()),
                        )
                    )
                    for s, split in self.before.items()
                ),
            )
        )
        return self._judged(self.canary_run, self.canary_run.steps)

    def bake(self) -> str:
        """Watch the release at 100 % against the previous release's figures; a regression rolls back."""
        if self.canary_run is None:
            return "not applicable: no canary ran"
        return self._judged(self.canary_run, self.canary_run.bake)

    def _judged(self, run: CanaryRun, phase: Callable[[], str]) -> str:
        """Run the steps or the bake: on an abort the tags stay; either way the record keeps the canary."""
        try:
            return phase()
        except CanaryAborted:
            self.keep_tags()
            raise
        finally:
            self.record.canary = canary_report.keep(run, self.ctx, verified=bool(self.record.verification))

    def keep_tags(self) -> None:
        """After an abort the candidates keep their tag (no traffic): their URL stays open for inspection."""
        removals = [c for c in self.changes if c.what.startswith(f"remove tag {self.ctx.tag} ")]
        self.changes[:] = [c for c in self.changes if c not in removals]
        if removals:
            urls = ", ".join(f"{s}: {u}" for s, u in self.candidate_urls.items())
            self.record.warnings.append(f"candidates kept with tag {self.ctx.tag} for inspection ({urls})")

    def promote(self) -> str:
        """Move all traffic to the verified candidates (by tag); the undo restores the previous split."""
        # Consumers before producers (finalizer first, dashboard last): new messages meet new agents.
        for spec in reversed(self.manifest.services):
            name = self.env.service_name(spec.name)
            self.shell.run(self.run_cmd("services", "update-traffic", name, f"--to-tags={self.ctx.tag}=100"))
            previous = self.before.get(spec.name)
            # After a canary its "all traffic back" change is this undo already, for every service.
            if previous and self.canary_run is None:
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
        return PostLaunch(self).monitoring()

    def checklist(self) -> str:
        """Post-launch: services ready, agents not public, no emulator settings, rules as this commit's."""
        return PostLaunch(self).checklist()
