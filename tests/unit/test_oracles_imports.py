"""The oracles are independent of the system they judge: no module of oracles/ imports imageflow."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import allure

from fixtures.reporting import EPIC

pytestmark = [allure.epic(EPIC), allure.feature("Oracles: independence")]

ORACLES = Path(__file__).resolve().parents[2] / "oracles"
# Beside the standard library, the oracles may lean only on numpy (arithmetic) and Pillow (decoding).
ALLOWED = frozenset({"numpy", "PIL", "oracles"}) | sys.stdlib_module_names


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append("." * node.level + (node.module or ""))
    return found


def test_no_oracle_imports_the_reference_system_or_anything_unexpected() -> None:
    modules = sorted(ORACLES.glob("*.py"))
    assert len(modules) >= 6, f"the oracles package looks empty: {modules}"
    wrong = {
        path.name: name
        for path in modules
        for name in _imports(path)
        if name.startswith(".") or name.split(".")[0] not in ALLOWED
    }
    assert not wrong, f"oracles import what they must not (imageflow, fixtures, relative): {wrong}"


def test_the_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from imageflow.agents import thumbnailer\nimport numpy as np\n", encoding="utf-8")
    assert _imports(module) == ["imageflow.agents", "numpy"]
