"""firestore.rules mutation operators, at text level (no parser for the rules language is at hand).

Operators: `==` / `!=` flip, `&&` / `||` swap, one conjunct of an `if` dropped, `true` / `false`
flip, and an `allow` widened to the next wider operation (get or list -> read, create, update or
delete -> write, read -> read, write). Comment lines and `rules_version` are never mutated.
"""

from __future__ import annotations

import re

from drills.mutation.model import Edit, Mutant

RULES_PATH = "firestore.rules"
WIDER = {
    "get": "read",
    "list": "read",
    "create": "write",
    "update": "write",
    "delete": "write",
    "read": "read, write",
}
_TOKENS = {"==": "!=", "!=": "==", "&&": "||", "||": "&&"}
_TOKEN_RE = re.compile(r"==|!=|&&|\|\|")
_BOOL_RE = re.compile(r"\b(true|false)\b")
_ALLOW_RE = re.compile(r"\ballow\s+([a-z]+(?:\s*,\s*[a-z]+)*)\s*:")
_CONDITION_RE = re.compile(r"\bif\s+(.+?);")


def _code_part(line: str) -> str:
    """The line without a trailing // comment (rules strings hold no //)."""
    return line.split("//", 1)[0]


def _line_mutants(code: str) -> list[tuple[int, int, str, str, str]]:
    """(start, end, replacement, operator, description) of every mutation of one line's code."""
    found: list[tuple[int, int, str, str, str]] = []
    for match in _TOKEN_RE.finditer(code):
        token = match.group(0)
        found.append(
            (match.start(), match.end(), _TOKENS[token], "rules-operator", f"{token} -> {_TOKENS[token]}")
        )
    for match in _BOOL_RE.finditer(code):
        flipped = "false" if match.group(1) == "true" else "true"
        found.append(
            (match.start(), match.end(), flipped, "rules-constant", f"{match.group(1)} -> {flipped}")
        )
    for match in _ALLOW_RE.finditer(code):
        ops = [o.strip() for o in match.group(1).split(",")]
        if len(ops) == 1 and ops[0] in WIDER:
            wider = WIDER[ops[0]]
            found.append(
                (match.start(1), match.end(1), wider, "rules-wider", f"allow {ops[0]} -> allow {wider}")
            )
    for match in _CONDITION_RE.finditer(code):
        conjuncts = [c.strip() for c in match.group(1).split("&&")]
        for index, dropped in enumerate(conjuncts if len(conjuncts) > 1 else []):
            kept = " && ".join(c for i, c in enumerate(conjuncts) if i != index)
            found.append((match.start(1), match.end(1), kept, "rules-drop", f"condition dropped: {dropped}"))
    return found


def rules_mutants(source: str, path: str = RULES_PATH) -> list[Mutant]:
    """Every candidate mutant of a rules file."""
    mutants: list[Mutant] = []
    offset = 0
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        code = _code_part(line)
        if code.strip() and not code.strip().startswith("rules_version"):
            for start, end, replacement, operator, description in _line_mutants(code):
                edit = Edit(
                    offset + len(line[:start].encode("utf-8")),
                    offset + len(line[:end].encode("utf-8")),
                    replacement,
                )
                mutants.append(Mutant(path, number, operator, description, edit))
        offset += len(line.encode("utf-8"))
    return mutants


def _normalised(text: str) -> str:
    return "".join("".join(_code_part(line).split()) for line in text.splitlines())


def rules_equivalence(source: str, mutated: str) -> str | None:
    """Why a rules mutant is trivially equivalent (same text without comments and spaces), else None."""
    if _normalised(source) == _normalised(mutated):
        return "equivalent: the rules text is unchanged but for comments and spaces"
    return None
