"""Load the pipeline manifest (pipeline.toml): agents, topics, dependencies, deadlines."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "pipeline.toml"


class ManifestError(ValueError):
    """The manifest is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class ServiceSpec:
    """A deployable service: the dashboard or an agent."""

    name: str
    module: str
    required_config: tuple[str, ...]
    required_secrets: tuple[str, ...]

    @property
    def required_keys(self) -> tuple[str, ...]:
        """Every environment key the service needs before it may report ready."""
        return self.required_config + self.required_secrets


@dataclass(frozen=True)
class AgentSpec(ServiceSpec):
    """One agent: what triggers it, what it publishes, what it waits for, what it must write."""

    triggers: tuple[str, ...]
    output_topic: str
    depends_on: tuple[str, ...]
    deadline_seconds: float
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """The whole pipeline."""

    name: str
    upload_topic: str
    dead_letter_topic: str
    max_delivery_attempts: int
    workflow_deadline_seconds: float
    dashboard: ServiceSpec
    agents: tuple[AgentSpec, ...]

    @property
    def agent_names(self) -> tuple[str, ...]:
        """Agent names in manifest order."""
        return tuple(a.name for a in self.agents)

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        """Every deployable service: the dashboard first, then the agents."""
        return (self.dashboard, *self.agents)

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the pipeline uses, dead-letter topic included, without repeats."""
        names = [self.upload_topic]
        for agent in self.agents:
            names.extend(agent.triggers)
            names.append(agent.output_topic)
        names.append(self.dead_letter_topic)
        return tuple(dict.fromkeys(names))

    def agent(self, name: str) -> AgentSpec:
        """The agent called name."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise ManifestError(f"no agent named {name!r} in the manifest")

    def subscription_name(self, agent: str, topic: str) -> str:
        """The push subscription that delivers topic to agent."""
        return f"{topic}--{agent}"


def _strings(table: dict[str, object], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _text(table: dict[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: {key} must be a non-empty string")
    return value


def _agent(table: dict[str, object]) -> AgentSpec:
    name = _text(table, "name", "agent")
    where = f"agent {name!r}"
    deadline = table.get("deadline_seconds")
    if not isinstance(deadline, int | float) or deadline <= 0:
        raise ManifestError(f"{where}: deadline_seconds must be a positive number")
    triggers = _strings(table, "triggers", where)
    if not triggers:
        raise ManifestError(f"{where}: needs at least one trigger topic")
    return AgentSpec(
        name=name,
        module=_text(table, "module", where),
        required_config=_strings(table, "required_config", where),
        required_secrets=_strings(table, "required_secrets", where),
        triggers=triggers,
        output_topic=_text(table, "output_topic", where),
        depends_on=_strings(table, "depends_on", where),
        deadline_seconds=float(deadline),
        outputs=_strings(table, "outputs", where),
    )


def parse(data: dict[str, object]) -> Manifest:
    """Build a Manifest from the parsed TOML, checking that it is consistent."""
    pipeline = data.get("pipeline")
    services = data.get("services")
    agents = data.get("agents")
    if not isinstance(pipeline, dict) or not isinstance(services, dict) or not isinstance(agents, list):
        raise ManifestError("manifest needs [pipeline], [services.dashboard] and [[agents]]")
    dashboard = services.get("dashboard")
    if not isinstance(dashboard, dict):
        raise ManifestError("manifest needs [services.dashboard]")
    specs = tuple(_agent(a) for a in agents if isinstance(a, dict))
    names = [a.name for a in specs]
    if len(set(names)) != len(names) or len(specs) != len(agents):
        raise ManifestError("agent names must be unique tables")
    for agent in specs:
        unknown = set(agent.depends_on) - set(names)
        if unknown:
            raise ManifestError(f"agent {agent.name!r} depends on unknown {sorted(unknown)}")
    attempts = pipeline.get("max_delivery_attempts", 5)
    deadline = pipeline.get("workflow_deadline_seconds", 60)
    if not isinstance(attempts, int) or not isinstance(deadline, int | float):
        raise ManifestError("[pipeline] max_delivery_attempts and workflow_deadline_seconds must be numbers")
    return Manifest(
        name=_text(pipeline, "name", "[pipeline]"),
        upload_topic=_text(pipeline, "upload_topic", "[pipeline]"),
        dead_letter_topic=_text(pipeline, "dead_letter_topic", "[pipeline]"),
        max_delivery_attempts=attempts,
        workflow_deadline_seconds=float(deadline),
        dashboard=ServiceSpec(
            name="dashboard",
            module=_text(dashboard, "module", "[services.dashboard]"),
            required_config=_strings(dashboard, "required_config", "[services.dashboard]"),
            required_secrets=_strings(dashboard, "required_secrets", "[services.dashboard]"),
        ),
        agents=specs,
    )


def load(path: Path | str | None = None) -> Manifest:
    """Read the manifest at path, $IMAGEFLOW_MANIFEST, or the repository's pipeline.toml."""
    chosen = Path(path or os.environ.get("IMAGEFLOW_MANIFEST") or DEFAULT_MANIFEST)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest not found: {chosen}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"manifest {chosen} is not valid TOML: {exc}") from exc
    return parse(data)


@cache
def default() -> Manifest:
    """The manifest this process runs with, read once."""
    return load()
