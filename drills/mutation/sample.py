"""Candidates of a tree, trivially equivalent and fault-switch only ones set apart, and a seeded sample
stratified by area."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drills.mutation.model import AREAS, Mutant, area_of
from drills.mutation.operators import python_candidates, python_equivalence
from drills.mutation.rules import RULES_PATH, rules_equivalence, rules_mutants

DEFAULT_SEED = 9
DEFAULT_COUNT = 60
EQUIVALENT_FILE = Path(__file__).resolve().parent / "equivalent.toml"
# The mutated files, as globs under the tree's root.
TARGET_GLOBS = ("imageflow/agents/*.py", "imageflow/workflow.py", "imageflow/dashboard/*.py", RULES_PATH)


class SampleError(ValueError):
    """Bad sampling input (the message says which)."""


@dataclass
class Candidates:
    """Every candidate of a tree, and those set apart: trivially equivalent or invalid (found while
    sampling), and fault-switch only (code no release runs: never sampled)."""

    mutants: list[Mutant] = field(default_factory=list)
    fault_switch: list[Mutant] = field(default_factory=list)
    trivially_equivalent: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def by_area(self) -> dict[str, list[Mutant]]:
        """The runnable candidates grouped by area."""
        grouped: dict[str, list[Mutant]] = {area: [] for area in AREAS}
        for mutant in self.mutants:
            grouped[mutant.area].append(mutant)
        return grouped


def target_files(root: Path) -> list[str]:
    """Repository-relative paths of the files that are mutated, sorted."""
    found = {str(p.relative_to(root)) for pattern in TARGET_GLOBS for p in root.glob(pattern)}
    return sorted(p for p in found if area_of(p) is not None and not p.endswith("__init__.py"))


def collect(root: Path, paths: Sequence[str] | None = None) -> Candidates:
    """Every candidate of the tree at root (checked for equivalence only once sampled: compiling is slow)."""
    candidates = Candidates()
    for path in paths if paths is not None else target_files(root):
        source = (root / path).read_text(encoding="utf-8")
        candidates.sources[path] = source
        if path.endswith(".rules"):
            candidates.mutants += rules_mutants(source, path)
            continue
        release, fault_switch = python_candidates(path, source)
        candidates.mutants += release
        candidates.fault_switch += fault_switch
    return candidates


def fault_switch_summary(candidates: Candidates) -> dict[str, object]:
    """The fault-switch only mutants, not sampled: their count, per area, and their ids per file."""
    by_file: dict[str, list[str]] = {}
    for mutant in sorted(candidates.fault_switch, key=lambda m: (m.path, m.line, m.id)):
        by_file.setdefault(mutant.path, []).append(mutant.id)
    per_area = {area: sum(1 for m in candidates.fault_switch if m.area == area) for area in AREAS}
    return {"count": len(candidates.fault_switch), "per_area": per_area, "by_file": by_file}


def set_apart(candidates: Candidates, mutant: Mutant) -> bool:
    """True (and recorded) when the mutant is trivially equivalent or does not compile."""
    source = candidates.sources[mutant.path]
    mutated = mutant.mutated(source)
    is_rules = mutant.path.endswith(".rules")
    why = rules_equivalence(source, mutated) if is_rules else python_equivalence(source, mutated)
    if why is None:
        return False
    (candidates.invalid if why.startswith("invalid") else candidates.trivially_equivalent)[mutant.id] = why
    return True


def quotas(available: Mapping[str, int], count: int) -> dict[str, int]:
    """count split evenly over the areas; what a small area cannot use goes to the others."""
    if count < 0:
        raise SampleError(f"the sample size must be positive, not {count}")
    quota = {area: 0 for area in available}
    remaining = count
    while remaining > 0:
        open_areas = [a for a in available if quota[a] < available[a]]
        if not open_areas:
            break
        share, extra = divmod(remaining, len(open_areas))
        for index, area in enumerate(open_areas):
            want = share + (1 if index < extra else 0)
            take = min(want, available[area] - quota[area])
            quota[area] += take
            remaining -= take
    return quota


def choose(candidates: Candidates, count: int, seed: int, areas: Sequence[str] = AREAS) -> list[Mutant]:
    """A deterministic sample: the same tree, count and seed give the same mutants, in area order."""
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        raise SampleError(f"unknown area(s): {', '.join(unknown)} (known: {', '.join(AREAS)})")
    grouped = candidates.by_area()
    pool = {area: sorted(grouped[area], key=lambda m: m.id) for area in areas}
    quota = quotas({area: len(pool[area]) for area in areas}, count)
    chosen: list[Mutant] = []
    for area in areas:
        order = list(pool[area])
        random.Random(f"{seed}:{area}").shuffle(order)
        # In shuffled order, skipping (and recording) the trivially equivalent and the invalid.
        picked = _take(candidates, order, quota[area])
        chosen += sorted(picked, key=lambda m: (m.path, m.line, m.id))
    return chosen


def _take(candidates: Candidates, order: Sequence[Mutant], wanted: int) -> list[Mutant]:
    picked: list[Mutant] = []
    for mutant in order:
        if len(picked) == wanted:
            break
        if not set_apart(candidates, mutant):
            picked.append(mutant)
    return picked


def load_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """{mutant id: reason} of the mutants judged equivalent by a person; SampleError on a bad file."""
    if not path.exists():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SampleError(f"{path}: not valid TOML: {exc}") from exc
    judged: dict[str, str] = {}
    for entry in document.get("equivalent", []):
        mutant_id, reason = entry.get("id"), entry.get("reason")
        if not isinstance(mutant_id, str) or not isinstance(reason, str) or not reason.strip():
            raise SampleError(f"{path}: every [[equivalent]] needs an id and a one-line reason: {entry}")
        judged[mutant_id] = reason.strip()
    return judged


def stale_equivalents(candidates: Candidates, judged: Mapping[str, str]) -> list[str]:
    """The judged ids that no current candidate has (the code changed under them: re-judge)."""
    current = {m.id for m in candidates.mutants}
    return sorted(mutant_id for mutant_id in judged if mutant_id not in current)


def run_order(mutants: Sequence[Mutant]) -> list[Mutant]:
    """Areas taken in turn, so a run stopped by its time budget has judged a stratified part of the sample."""
    queues = {area: [m for m in mutants if m.area == area] for area in AREAS}
    ordered: list[Mutant] = []
    while any(queues.values()):
        for area in AREAS:
            if queues[area]:
                ordered.append(queues[area].pop(0))
    return ordered
