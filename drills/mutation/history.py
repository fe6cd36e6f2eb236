"""The kill history: the tests that killed mutants of each file in earlier runs (a hint, never required).

reports/mutation/kills.json is {file: {test node id: kills}}; the runner puts a file's killers first
in the suite's order for its next mutants, so -x meets a likely killer early.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from stack.state import REPO_ROOT

HISTORY = REPO_ROOT / "reports" / "mutation" / "kills.json"

History = dict[str, dict[str, int]]


def load(path: Path = HISTORY) -> History:
    """The history at path; {} when there is none or it is not a history (it is a hint, not an input)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        str(file): {str(test): int(kills) for test, kills in tests.items() if isinstance(kills, int)}
        for file, tests in document.items()
        if isinstance(tests, dict)
    }


def killers(history: Mapping[str, Mapping[str, int]], path: str) -> tuple[str, ...]:
    """The tests that killed mutants of path, most kills first (ties by node id)."""
    tests = history.get(path, {})
    return tuple(sorted(tests, key=lambda test: (-tests[test], test)))


def record(history: History, path: str, killed_by: Sequence[str]) -> None:
    """Count one kill of a mutant of path for each test that failed against it (not a refused deploy)."""
    for test in killed_by:
        if "::" in test:
            history.setdefault(path, {})[test] = history.get(path, {}).get(test, 0) + 1


def save(history: Mapping[str, Mapping[str, int]], path: Path = HISTORY) -> None:
    """Write the history (sorted, so its changes read well)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = {file: dict(sorted(history[file].items())) for file in sorted(history)}
    path.write_text(json.dumps(ordered, indent=1) + "\n", encoding="utf-8")
