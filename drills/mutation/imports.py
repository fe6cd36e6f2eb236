"""Which services load a module: the import closure of each service's entry module, read from the source."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

PACKAGE = "imageflow"


def module_name(path: str) -> str:
    """`imageflow/agents/base.py` -> `imageflow.agents.base`."""
    dotted = path.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def _imports(root: Path, module: str) -> set[str]:
    """The imageflow modules one module imports, anywhere in it (function-level imports count)."""
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = root / module.replace(".", "/") / "__init__.py"
    if not path.exists():
        return set()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            # `from imageflow import workflow` imports the module imageflow.workflow.
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if _exists(root, m)}


def _exists(root: Path, module: str) -> bool:
    base = root / module.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def closure(root: Path, entry: str) -> set[str]:
    """Every imageflow module the entry module loads, itself included."""
    seen: set[str] = set()
    todo = [entry, f"{PACKAGE}.serve"]  # every service starts through imageflow.serve
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += sorted(_imports(root, module) - seen)
    return seen


def services_loading(root: Path, service_modules: Mapping[str, str], path: str) -> list[str]:
    """The services (by name, sorted) whose process loads the module at path."""
    wanted = module_name(path)
    return sorted(name for name, entry in service_modules.items() if wanted in closure(root, entry))
