"""A mutant: one small edit of one file of the reference system, and how to show it."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

# Areas of the reference system, in report order; each file belongs to exactly one.
AREAS = ("agents", "workflow", "dashboard", "rules")


def area_of(path: str) -> str | None:
    """The area a repository-relative path belongs to, or None when it is not mutated."""
    if path == "firestore.rules":
        return "rules"
    if path == "imageflow/workflow.py":
        return "workflow"
    if path.startswith("imageflow/agents/") and path.endswith(".py"):
        return "agents"
    if path.startswith("imageflow/dashboard/") and path.endswith(".py"):
        return "dashboard"
    return None


@dataclass(frozen=True)
class Edit:
    """Replace bytes [start, end) of a file's UTF-8 text by replacement."""

    start: int
    end: int
    replacement: str

    def apply(self, source: str) -> str:
        """The source with this edit made."""
        raw = source.encode("utf-8")
        return (raw[: self.start] + self.replacement.encode("utf-8") + raw[self.end :]).decode("utf-8")


@dataclass(frozen=True)
class Mutant:
    """One candidate mutation; id is stable for the same file content, operator and place."""

    path: str
    line: int
    operator: str
    description: str
    edit: Edit

    @property
    def area(self) -> str:
        """The area of the mutated file."""
        area = area_of(self.path)
        assert area is not None  # mutants are only made of files with an area
        return area

    @property
    def id(self) -> str:
        """`<file stem>:<line>:<operator>:<hash of the edit>`, short and greppable."""
        digest = hashlib.sha1(
            f"{self.path}|{self.edit.start}|{self.edit.end}|{self.edit.replacement}".encode()
        ).hexdigest()[:6]
        stem = self.path.rsplit("/", 1)[-1]
        return f"{stem}:{self.line}:{self.operator}:{digest}"

    def mutated(self, source: str) -> str:
        """The file's text with the mutation applied."""
        return self.edit.apply(source)

    def diff(self, source: str) -> str:
        """A unified diff of the mutation, with one line of context."""
        lines = difflib.unified_diff(
            source.splitlines(keepends=True),
            self.mutated(source).splitlines(keepends=True),
            fromfile=f"a/{self.path}",
            tofile=f"b/{self.path}",
            n=1,
        )
        return "".join(lines)
