"""A pytest plugin (`-p drills.mutation.order`): likely killers of a mutant run first, so -x stops early.

    --mutation-order FILE   JSON {"first": [node ids], "area": [node id substrings], "agents": [names],
                                  "seconds": {node id: seconds of the clean run}}

Order: the node ids of "first" (tests that killed mutants of the same file before, most kills
first), then the tests of the mutated part ("area" substrings, or marked agent(NAME) for a name in
"agents"), then every other test; within the last two, the quickest of the clean run first (so -x
reaches a failure sooner), collection order otherwise. Only the order changes: every collected test
still runs, so a mutant that survives has met the whole selection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drills.pytest_plugin import _agents, keeps


@dataclass(frozen=True)
class Plan:
    """Which tests go first: known killers (in order), then the mutated part's tests."""

    first: tuple[str, ...] = ()
    area: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict, compare=False)

    def write(self, path: Path) -> Path:
        """Write the plan as the plugin's JSON file."""
        document = {
            "first": list(self.first),
            "area": list(self.area),
            "agents": list(self.agents),
            "seconds": self.seconds,
        }
        path.write_text(json.dumps(document, indent=1), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> Plan:
        """The plan in a JSON file written by write()."""
        document = json.loads(path.read_text(encoding="utf-8"))
        first, area, agents = document["first"], document["area"], document["agents"]
        return cls(tuple(first), tuple(area), tuple(agents), dict(document.get("seconds", {})))


def rank(nodeid: str, agents: Sequence[str], plan: Plan) -> tuple[int, float]:
    """(group, place): 0 a known killer (place in "first"), 1 the part's test, 2 the rest (by seconds)."""
    if nodeid in plan.first:
        return 0, plan.first.index(nodeid)
    seconds = plan.seconds.get(nodeid, 0.0)
    if keeps(nodeid, list(agents), list(plan.area), list(plan.agents)):
        return 1, seconds
    return 2, seconds


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --mutation-order."""
    group = parser.getgroup("mutation", "mutation testing")
    group.addoption("--mutation-order", default=None, help="JSON plan of which tests run first")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Sort the items by rank (stable: the same order in every xdist worker, as xdist requires)."""
    path = config.getoption("--mutation-order")
    if not path:
        return
    plan = Plan.read(Path(path))
    items.sort(key=lambda item: rank(item.nodeid, _agents(item), plan))
