"""Fixtures of the firestore.rules tests: the stack's Firestore emulator with this tree's rules, documents."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from rules_rest import ADMIN, FirestoreRest

from fixtures.target import unique_name
from stack.control import StackControl
from stack.state import StackState

RULES_FILE = Path(__file__).resolve().parents[2] / "firestore.rules"


@pytest.fixture(scope="session")
def firestore_rest(local_stack: StackState, stack_control: StackControl) -> FirestoreRest:
    """The stack's Firestore emulator, running the rules of this working tree."""
    # The stack may have been started before the rules file changed: test the file as it is now.
    stack_control.load_rules(RULES_FILE.read_text(encoding="utf-8"))
    return FirestoreRest(host=local_stack.env["FIRESTORE_EMULATOR_HOST"], project=local_stack.project)


@pytest.fixture
def uid_factory() -> Callable[[], str]:
    """Unique, greppable user ids for mock tokens."""
    return lambda: unique_name("rules")


@pytest.fixture
def cleanup_paths(firestore_rest: FirestoreRest) -> Iterator[list[str]]:
    """Document paths deleted as admin at teardown; append before writing."""
    paths: list[str] = []
    yield paths
    for path in paths:
        firestore_rest.call("DELETE", path, ADMIN)


@pytest.fixture
def admin_document(
    firestore_rest: FirestoreRest, cleanup_paths: list[str]
) -> Callable[[str, str, Mapping[str, Any]], str]:
    """Write documents as admin (bypassing the rules); every one is deleted at teardown."""

    def write(collection: str, doc_id: str, fields: Mapping[str, Any]) -> str:
        path = f"/{collection}/{doc_id}"
        cleanup_paths.append(path)  # registered before the write: a half-failed write is still cleaned
        response = firestore_rest.call("PATCH", path, ADMIN, {"fields": fields})
        assert response.status_code == 200, f"admin write of {path} failed: {response.status_code}"
        return path

    return write
