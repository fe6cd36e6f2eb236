"""firestore.rules exhaustively: every (collection, operation, actor) of one table, and rules coverage.

The table (rules_table.py) runs cell by cell against the stack's Firestore emulator; once more,
whole, against a project of its own whose rules coverage report is then collected under
reports/rules-coverage/ and must show every condition of firestore.rules evaluated both true and
false (a condition seen one way only is either untested or dead).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from rules_rest import ADMIN, EmulatorAdmin, FirestoreRest
from rules_table import (
    CASES,
    REFUSED,
    RULE_COLLECTIONS,
    RULES_FILE,
    UNNAMED_COLLECTIONS,
    Case,
    attempt,
    collections_named_by,
    document_fields,
)

from fixtures.reporting import labels, reports_dir
from fixtures.target import unique_name
from stack.state import StackState

pytestmark = pytest.mark.security

Writer = Callable[[str, str, Mapping[str, Any]], str]


def test_the_table_names_every_collection_the_rules_name() -> None:
    named = collections_named_by(RULES_FILE.read_text(encoding="utf-8"))
    assert named == set(RULE_COLLECTIONS), (
        f"firestore.rules name {sorted(named)}; the table has {RULE_COLLECTIONS}"
    )
    assert not named & set(UNNAMED_COLLECTIONS)


def check(case: Case, status: int, changed: bool, detail: str, doc_id: str) -> None:
    """The verdict of one cell: the promised outcome, and nothing stored changed either way."""
    assert not changed, f"{case.id}: the stored data changed (answer {status}: {detail})"
    if not case.allowed:
        assert status == REFUSED, f"{case.id}: answered {status}, expected a refusal: {detail}"
        return
    assert status == 200, f"{case.id}: answered {status}: {detail}"
    if case.operation == "query_by_owner":
        assert detail == f"returned {[doc_id]}", f"{case.id}: {detail}"


@labels("firestore.rules", "table")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rules_table(
    firestore_rest: FirestoreRest,
    admin_document: Writer,
    cleanup_paths: list[str],
    uid_factory: Callable[[], str],
    case: Case,
) -> None:
    owner, other, doc_id, new_id = uid_factory(), uid_factory(), uid_factory(), uid_factory()
    cleanup_paths.append(f"/{case.collection}/{new_id}")  # before any write: a wrongly allowed create
    admin_document(case.collection, doc_id, document_fields(owner))
    result = attempt(firestore_rest, case, owner, other, doc_id, new_id)
    check(case, result.status, result.changed, result.detail, doc_id)


# --- rules coverage --------------------------------------------------------------------------------


def condition_spans(rules: str) -> dict[int, str]:
    """{offset: text} of every `allow ...: if <condition>;` condition in the rules."""
    return {
        found.start(1): found.group(1).strip()
        for found in re.finditer(r"allow\s+[\w\s,]+:\s*if\s+([^;]+);", rules)
    }


def nodes(report: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every expression node of the coverage report, depth first."""
    for node in report:
        yield node
        yield from nodes(node.get("children") or [])


def booleans_seen(node: Mapping[str, Any]) -> set[bool]:
    """The boolean values an expression evaluated to (other values, e.g. maps, are ignored)."""
    return {
        bool(entry["value"]["boolValue"])
        for entry in node.get("values") or []
        if "boolValue" in entry.get("value", {})
    }


def span_text(rules: str, node: Mapping[str, Any]) -> str:
    """The source text of a node (the emulator's endOffset is the span's last character)."""
    position = node.get("sourcePosition") or {}
    return rules[int(position.get("currentOffset", 0)) : int(position.get("endOffset", -1)) + 1]


@pytest.fixture
def coverage_project(local_stack: StackState) -> Iterator[tuple[FirestoreRest, EmulatorAdmin]]:
    """A project of its own on the stack's emulator, with this tree's rules: coverage of this run only."""
    project = unique_name("rules-coverage").lower()
    host = local_stack.env["FIRESTORE_EMULATOR_HOST"]
    admin = EmulatorAdmin(host=host, project=project)
    admin.load_rules(RULES_FILE.read_text(encoding="utf-8"))
    try:
        yield FirestoreRest(host=host, project=project), admin
    finally:
        admin.clear()


@labels("firestore.rules", "coverage")
def test_every_condition_of_the_rules_is_seen_true_and_false(
    coverage_project: tuple[FirestoreRest, EmulatorAdmin], pytestconfig: pytest.Config
) -> None:
    rest, admin = coverage_project
    for index, case in enumerate(CASES):
        owner, other = f"owner-{index}", f"other-{index}"
        doc_id, new_id = f"doc-{index}", f"new-{index}"
        written = rest.call(
            "PATCH", f"/{case.collection}/{doc_id}", ADMIN, {"fields": document_fields(owner)}
        )
        assert written.status_code == 200, f"admin write failed: {written.status_code}"
        result = attempt(rest, case, owner, other, doc_id, new_id)
        check(case, result.status, result.changed, result.detail, doc_id)

    rules = RULES_FILE.read_text(encoding="utf-8")
    report = admin.coverage()
    reports = reports_dir(pytestconfig) / "rules-coverage"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "coverage.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (reports / "coverage.html").write_text(admin.coverage_html(), encoding="utf-8")

    # The emulator reports, per expression (source span), every value it evaluated to with a count;
    # a condition is an expression that evaluated to a boolean. A constant (`if false`) is never
    # reported, so it shows as never evaluated: a dead condition either way.
    every = list(nodes(report.get("report") or []))
    conditions = [n for n in every if booleans_seen(n)]
    summary = [
        {
            "condition": span_text(rules, n),
            "line": n["sourcePosition"].get("line"),
            "seen": sorted(booleans_seen(n)),
        }
        for n in conditions
    ]
    (reports / "conditions.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    starts = {int(n["sourcePosition"].get("currentOffset", -1)) for n in conditions}
    never = {text for offset, text in condition_spans(rules).items() if offset not in starts}
    assert not never, f"conditions of firestore.rules never evaluated to a boolean: {sorted(never)}"
    one_way = [f"line {s['line']}: {s['condition']} only {s['seen']}" for s in summary if len(s["seen"]) < 2]
    assert not one_way, "conditions seen only one way (untested, or dead): " + "; ".join(one_way)
    assert conditions, "the coverage report holds no condition at all"


def test_condition_spans_reads_every_allow() -> None:
    rules = "allow get: if a && b;\n  allow list, update: if c;\nallow write: if false;"
    assert sorted(condition_spans(rules).values()) == ["a && b", "c", "false"]
