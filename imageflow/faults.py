"""Fault switches (IMAGEFLOW_FAULTS) that break an agent on purpose, for the rollback drill.

A switch is named `<agent>.<fault>`. Generic faults apply to every agent of the manifest and are
implemented once in imageflow/agents/base.py; the few agent-specific ones live in that agent's
module. All are off by default, and config.load refuses any of them on staging and production.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from imageflow import manifest as manifest_module
from imageflow import traffic_faults
from imageflow.config import Settings

# Faults every agent of the manifest understands (switch name: f"{agent}.{fault}").
GENERIC_FAULTS: dict[str, str] = {
    "never_fires": "acknowledge every push and do nothing: the step stays pending",
    "errors": "raise inside the processing: the step and the workflow end failed",
    "wrong_output": "do the work but record an empty output summary",
    "slow": "block past the manifest deadline (deadline + 5 s) before doing the work",
    "twice": "do the work (and publish) twice for one delivery: attempts ends at 2",
    "fake_done": "mark the step done with a plausible output without doing the work",
}

# Faults that only make sense for one agent.
SPECIFIC_FAULTS: dict[str, str] = {
    "finalizer.early": "complete the workflow before every dependency is done",
    "thumbnailer.not_written": "report a plausible thumbnail but never write it to storage",
    "exif.leaks_gps": "store the GPS coordinates of the image in the step output",
    "validator.accepts_bad": "accept undecodable input as a valid image instead of rejecting it",
}

# Extra time a "slow" agent blocks beyond its deadline.
SLOW_EXTRA_SECONDS = 5.0


def catalogue(agent_names: Iterable[str]) -> dict[str, str]:
    """Every fault switch for these agents, with a one-line description."""
    generic = {f"{agent}.{fault}": text for agent in agent_names for fault, text in GENERIC_FAULTS.items()}
    return {**generic, **SPECIFIC_FAULTS}


def _default_catalogue() -> dict[str, str]:
    try:
        return catalogue(manifest_module.default().agent_names)
    except manifest_module.ManifestError:
        return dict(SPECIFIC_FAULTS)


# {name: one-line description} of every fault switch for the agents of the default manifest.
FAULTS: dict[str, str] = _default_catalogue()


def unknown(faults: Iterable[str], agent_names: Iterable[str]) -> list[str]:
    """The switches in faults that no agent implements (a typo would silently test nothing)."""
    names = list(agent_names)
    known = {**catalogue(names), **traffic_faults.catalogue(names)}
    return sorted(f for f in faults if f not in known)


class AgentFaults:
    """The fault switches of one agent, read from its settings."""

    def __init__(self, settings: Settings, agent: str) -> None:
        self._settings = settings
        self._agent = agent
        # Set only at shutdown, so a "slow" agent blocks on an event rather than a blind sleep.
        self._stop = threading.Event()

    def on(self, fault: str) -> bool:
        """True when `<agent>.<fault>` is switched on."""
        return self._settings.fault(f"{self._agent}.{fault}")

    @property
    def active(self) -> list[str]:
        """The switched-on faults of this agent."""
        prefix = f"{self._agent}."
        return sorted(f for f in self._settings.faults if f.startswith(prefix))

    def block_past(self, deadline_seconds: float) -> None:
        """Block until past the deadline (the slow fault); returns early only at shutdown."""
        self._stop.wait(deadline_seconds + SLOW_EXTRA_SECONDS)

    def shutdown(self) -> None:
        """Release any delivery blocked by the slow fault."""
        self._stop.set()
