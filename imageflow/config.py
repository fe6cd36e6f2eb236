"""Service settings from the environment: required keys, readiness, revision and fault switches."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from imageflow.manifest import ServiceSpec

# Environments where fault switches are refused: a fault must never reach real users.
PROTECTED_ENVIRONMENTS = frozenset({"staging", "production"})
# The test-only failure plans (imageflow/test_failures.py): allowed on staging, where the release
# verifies its failure paths, and refused on production, whose users must never meet one.
TEST_FAILURES_KEY = "IMAGEFLOW_TEST_FAILURES"
TEST_FAILURES_ALLOWED = "allowed"
TEST_FAILURES_REFUSED_ENVIRONMENTS = frozenset({"production"})


# The environment variable holding an agent's push verification token (local stacks set it).
PUSH_TOKEN_ENV = "IMAGEFLOW_PUSH_TOKEN"
# The push endpoint's query parameter carrying it (the documented alternative to OIDC where the
# pusher cannot sign: the Pub/Sub emulator sends no identity token and no custom header).
PUSH_TOKEN_PARAM = "token"


class ConfigError(ValueError):
    """The service's configuration is unusable (the message names keys, never values)."""


@dataclass(frozen=True)
class Settings:
    """What one service process runs with, read from its environment once at start."""

    service: str
    revision: str
    project: str
    bucket: str
    environment: str
    missing: tuple[str, ...]
    topic_prefix: str = ""
    faults: frozenset[str] = field(default_factory=frozenset)
    test_failures: bool = False
    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The push verification token (IMAGEFLOW_PUSH_TOKEN): when set, an agent accepts a push only
    # with ?token=<it>; unset on Cloud Run, where the platform's IAM check admits only the push identity.
    push_token: str = field(default="", repr=False)

    @property
    def ready(self) -> bool:
        """True when every required key is present."""
        return not self.missing

    def secret(self, key: str) -> str:
        """A required value by name; raises when absent (the error names the key only)."""
        value = self.values.get(key, "")
        if not value:
            raise ConfigError(f"required setting {key} is not set")
        return value

    def topic(self, name: str, lane: str = "") -> str:
        """The topic really used for a manifest topic: a verification lane's prefix comes first."""
        return lane + self.topic_prefix + name

    def fault(self, name: str) -> bool:
        """True when the named fault switch is on for this revision."""
        return name in self.faults

    def readiness(self) -> dict[str, object]:
        """The readiness report: key names and presence only, never values."""
        present = sorted(k for k in self.values if self.values[k])
        report: dict[str, object] = {
            "service": self.service,
            "revision": self.revision,
            "environment": self.environment,
            "ready": self.ready,
            "present": present,
            "missing": list(self.missing),
            "emulators": sorted(k for k in os.environ if k.endswith("_EMULATOR_HOST")),
            # Whether this revision honours test failure plans (the suite checks before relying on it).
            "test_failures": self.test_failures,
        }
        if not self.ready:
            report["message"] = "missing required settings: " + ", ".join(self.missing)
        return report


# A verification lane (temporary topics for candidate revisions) is named by the deploy tool;
# only this shape is honoured, so a header or attribute cannot point a publish anywhere else.
LANE_PATTERN = re.compile(r"^lane-[a-z0-9-]{1,40}--$")


def lane_or_empty(value: str | None) -> str:
    """The lane prefix if value is a well-formed lane name, else "" (the live topics)."""
    return value if value and LANE_PATTERN.fullmatch(value) else ""


def parse_faults(raw: str, environment: str) -> frozenset[str]:
    """Parse IMAGEFLOW_FAULTS (comma separated), refusing any fault on a protected environment."""
    faults = frozenset(f.strip() for f in raw.split(",") if f.strip())
    if faults and environment in PROTECTED_ENVIRONMENTS:
        raise ConfigError(f"fault switches are refused on {environment}: {', '.join(sorted(faults))}")
    return faults


def parse_test_failures(raw: str, environment: str) -> bool:
    """Parse IMAGEFLOW_TEST_FAILURES: "allowed" or unset; refused on production, a typo refused anywhere."""
    value = raw.strip()
    if not value:
        return False
    if value != TEST_FAILURES_ALLOWED:
        raise ConfigError(f"{TEST_FAILURES_KEY} must be {TEST_FAILURES_ALLOWED!r} or unset")
    if environment in TEST_FAILURES_REFUSED_ENVIRONMENTS:
        raise ConfigError(f"{TEST_FAILURES_KEY} is refused on {environment}")
    return True


def load(spec: ServiceSpec, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings of the service described by spec from environ (default: os.environ)."""
    env = os.environ if environ is None else environ
    environment = env.get("IMAGEFLOW_ENV", "local")
    values = {key: env.get(key, "") for key in spec.required_keys}
    missing = tuple(key for key, value in values.items() if not value)
    return Settings(
        service=spec.name,
        revision=env.get("K_REVISION", f"{spec.name}-unversioned"),
        project=env.get("GOOGLE_CLOUD_PROJECT", ""),
        bucket=env.get("IMAGEFLOW_BUCKET", ""),
        environment=environment,
        missing=missing,
        topic_prefix=env.get("IMAGEFLOW_TOPIC_PREFIX", ""),
        faults=parse_faults(env.get("IMAGEFLOW_FAULTS", ""), environment),
        test_failures=parse_test_failures(env.get(TEST_FAILURES_KEY, ""), environment),
        values=values,
        push_token=env.get(PUSH_TOKEN_ENV, ""),
    )
