"""The environments file (environments.toml): every target, its project, services and safety rules."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from deploy.analysis import Thresholds

# The candidate's dashboard URL the deploy tool hands the suite (over environments.toml's).
DASHBOARD_URL_ENV = "IMAGEFLOW_DASHBOARD_URL"

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "environments.toml"
KINDS = ("local", "gcp")


class TargetError(ValueError):
    """The environments file is missing, malformed, or names no such target (one-line message)."""


@dataclass(frozen=True)
class Canary:
    """Progressive promotion of a target: traffic steps, their windows, the bake, and the thresholds."""

    # The candidate's share of every service's traffic, step by step, before 100 %.
    steps: tuple[int, ...] = (5, 25, 50)
    window_seconds: float = 300.0
    # How often a window is analysed on the way: a clear regression aborts before the window ends.
    check_seconds: float = 10.0
    # Windows a step may be held for lack of traffic before the canary gives up (abort: unjudged).
    max_holds: int = 3
    # After 100 %: how long the release is watched against the previous release's figures.
    bake_seconds: float = 900.0
    # Locust users generating traffic where the target has no users of its own (local, staging).
    traffic_users: int = 0
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def longest_seconds(self) -> float:
        """The most a canary with its bake can last (every step held to the limit): the traffic's bound."""
        windows = (len(self.steps) + 1) * (self.max_holds + 1)
        return windows * self.window_seconds + self.bake_seconds


def _canary(name: str, table: object, where: Path) -> Canary:
    """The [environments.NAME.canary] table, every key checked."""
    if not isinstance(table, dict):
        raise TargetError(f"{where}: [environments.{name}.canary] must be a table")
    limits = table.get("thresholds", {})
    known = {f.name for f in fields(Canary)}
    unknown = set(table) - known | set(limits if isinstance(limits, dict) else {}) - {
        f.name for f in fields(Thresholds)
    }
    if unknown or not isinstance(limits, dict):
        raise TargetError(f"{where}: [environments.{name}.canary] has unknown keys {sorted(unknown)}")
    steps = table.get("steps", list(Canary.steps))
    if (
        not isinstance(steps, list)
        or not all(isinstance(s, int) and 0 < s < 100 for s in steps)
        or steps != sorted(set(steps))
    ):
        raise TargetError(f"{where}: {name} canary steps must be rising percents between 1 and 99")
    try:
        thresholds = Thresholds(**limits)
        canary = Canary(
            steps=tuple(steps),
            thresholds=thresholds,
            **{k: v for k, v in table.items() if k not in ("steps", "thresholds")},
        )
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{where}: {name} canary: {exc}") from exc
    numbers = (canary.window_seconds, canary.check_seconds, canary.bake_seconds)
    if (
        not all(isinstance(v, int | float) and v > 0 for v in numbers)
        or canary.check_seconds > canary.window_seconds
    ):
        raise TargetError(
            f"{where}: {name} canary: windows must be positive, check_seconds <= window_seconds"
        )
    return canary


@dataclass(frozen=True)
class Environment:
    """One target: where it runs and what is allowed there."""

    name: str
    kind: str
    project: str
    region: str
    bucket: str
    sensitive: bool
    allow_destructive: bool
    confirm: bool
    service_prefix: str = ""
    backup_bucket: str = ""
    dashboard_url: str = ""
    api_key_env: str = ""
    notification_channel: str = ""
    push_service_account: str = ""
    # The release's failure-path scenarios may plan failures for their own test users' uploads
    # (IMAGEFLOW_TEST_FAILURES on every deployed service); never on production.
    allow_test_failures: bool = False
    # Canary steps and the bake after lane verification; None: promoted in one switch.
    canary: Canary | None = None

    @property
    def is_local(self) -> bool:
        """True for the embedded local stack."""
        return self.kind == "local"

    def service_name(self, service: str) -> str:
        """The deployed name of a manifest service (Cloud Run service name on gcp)."""
        return f"{self.service_prefix}{service}"

    def missing_for_the_suite(self, environ: Mapping[str, str]) -> list[str]:
        """What the release suite lacks in environ to verify this deployed target (nothing, locally)."""
        if self.is_local:
            return []
        missing = []
        if not (environ.get(DASHBOARD_URL_ENV, "").strip() or self.dashboard_url):
            missing.append(f"a dashboard URL (dashboard_url in environments.toml or {DASHBOARD_URL_ENV})")
        if not environ.get(self.api_key_env):
            missing.append(f"the Firebase API key in ${self.api_key_env}")
        return missing


_REQUIRED = {"kind": str, "project": str, "region": str, "bucket": str}
_GCP_REQUIRED = ("service_prefix", "backup_bucket", "api_key_env")


def _environment(name: str, table: object, where: Path) -> Environment:
    if not isinstance(table, dict):
        raise TargetError(f"{where}: [environments.{name}] must be a table")
    for key, kind in _REQUIRED.items():
        if not isinstance(table.get(key), kind) or not table[key]:
            raise TargetError(f"{where}: environment {name!r} is missing {key}")
    if table["kind"] not in KINDS:
        raise TargetError(f"{where}: environment {name!r} has unknown kind {table['kind']!r}")
    if table["kind"] == "gcp":
        absent = [key for key in _GCP_REQUIRED if not table.get(key)]
        if absent:
            raise TargetError(
                f"{where}: environment {name!r} is half-configured: missing {', '.join(absent)}"
            )
    sensitive = table.get("sensitive", table["kind"] != "local")
    canary = _canary(name, table["canary"], where) if "canary" in table else None
    known = set(Environment.__dataclass_fields__) - {"name"}
    unknown = set(table) - known
    if unknown:
        raise TargetError(f"{where}: environment {name!r} has unknown keys {sorted(unknown)}")
    flags = {
        "sensitive": sensitive,
        "allow_destructive": table.get("allow_destructive", not sensitive),
        "confirm": table.get("confirm", sensitive),
        "allow_test_failures": table.get("allow_test_failures", False),
    }
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise TargetError(f"{where}: environment {name!r}: {key} must be true or false")
    if flags["allow_test_failures"] and name == "production":
        raise TargetError(f"{where}: environment 'production' must not allow test failures")
    strings = {k: v for k, v in table.items() if k not in flags and k != "canary"}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise TargetError(f"{where}: environment {name!r}: {key} must be a string")
    return Environment(name=name, **strings, **flags, canary=canary)


def load(path: Path | str | None = None) -> dict[str, Environment]:
    """Read every environment from path, $IMAGEFLOW_ENVIRONMENTS, or the repository's file."""
    chosen = Path(path or os.environ.get("IMAGEFLOW_ENVIRONMENTS") or DEFAULT_FILE)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TargetError(f"environments file not found: {chosen}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"environments file {chosen} is not valid TOML: {exc}") from exc
    tables = data.get("environments")
    if not isinstance(tables, dict) or not tables:
        raise TargetError(f"{chosen}: needs at least one [environments.NAME] table")
    return {name: _environment(name, table, chosen) for name, table in tables.items()}


def get(name: str, path: Path | str | None = None) -> Environment:
    """The environment called name, or a one-line error listing the known ones."""
    environments = load(path)
    if name not in environments:
        raise TargetError(f"unknown environment {name!r}; known: {', '.join(sorted(environments))}")
    return environments[name]
