"""The environments file (environments.toml): every target, its project, services and safety rules."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The candidate's dashboard URL the deploy tool hands the suite (over environments.toml's).
DASHBOARD_URL_ENV = "IMAGEFLOW_DASHBOARD_URL"

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "environments.toml"
KINDS = ("local", "gcp")


class TargetError(ValueError):
    """The environments file is missing, malformed, or names no such target (one-line message)."""


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
    strings = {k: v for k, v in table.items() if k not in flags}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise TargetError(f"{where}: environment {name!r}: {key} must be a string")
    return Environment(name=name, **strings, **flags)


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
