"""The post-launch part of a Google Cloud deploy: monitoring kept present and enabled, and the
checklist (services ready, agents not public, no emulator or test settings, the live rules this
commit's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from deploy.cloud_run import CloudRunCommands, container_env
from deploy.shell import last_line
from deploy.steps import StepFailed
from imageflow import config as service_config

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


class PostLaunch:
    """Monitoring and the post-launch checklist of one deploy, through its executor's commands."""

    def __init__(self, executor: CloudRunCommands) -> None:
        self.executor = executor
        self.shell, self.env, self.manifest = executor.shell, executor.env, executor.manifest

    def monitoring(self) -> str:
        """Uptime check on the dashboard and the alert policies: present and enabled (created if missing)."""
        prefix = self.env.service_prefix
        checks = json.loads(
            self.shell.run(
                self.executor.gcloud("monitoring", "uptime", "list-configs", "--format=json"), dry_stdout="[]"
            ).stdout
            or "[]"
        )
        uptime_name = f"{prefix}dashboard-healthz"
        if not any(c.get("displayName") == uptime_name for c in checks):
            dashboard = self.executor.describe("dashboard") or {}
            host = str(dashboard.get("status", {}).get("url", "")).removeprefix("https://").rstrip("/")
            self.shell.run(
                self.executor.gcloud(
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
                self.executor.gcloud("alpha", "monitoring", "policies", "list", "--format=json"),
                dry_stdout="[]",
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
                    self.executor.gcloud(
                        "alpha", "monitoring", "policies", "create", f"--policy-from-file={path}"
                    ),
                    when="only if missing",
                )
            elif not policy.get("enabled", False):
                self.shell.run(
                    self.executor.gcloud(
                        "alpha", "monitoring", "policies", "update", str(policy.get("name")), "--enabled"
                    )
                )
        return f"uptime check {uptime_name}, {len(POLICIES)} alert policies enabled"

    def policy_file(self, display: str, spec: dict[str, Any]) -> Path:
        """Write an alert policy definition for `policies create --policy-from-file`."""
        path = self.executor.workdir / f"policy-{display}.json"
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
            service = self.executor.describe(spec.name) or {}
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
            self.executor.run_cmd("services", "get-iam-policy", name, "--format=json"),
            check=False,
            dry_stdout="{}",
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
        if f"serviceAccount:{self.executor.push_account}" not in invokers:
            problems.append(f"{name} cannot be invoked by the push identity {self.executor.push_account}")
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
        base = self.executor.ctx.sources.rules_api
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
        expected = self.executor.ctx.sources.rules_text()
        return (
            []
            if deployed.strip() == expected.strip()
            else ["deployed firestore.rules differ from this commit's"]
        )
