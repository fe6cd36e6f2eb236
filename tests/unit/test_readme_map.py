"""The README's map is held to the code: folders, plugins, nox sessions, the pipeline picture, paths."""

from __future__ import annotations

import ast
import re
import subprocess

import nox.registry
import pytest
from readme_sections import README, section

import noxfile  # noqa: F401  (importing it registers its sessions)
from imageflow.manifest import default
from stack.state import REPO_ROOT

MAP = section("Where things live")
WHERE = section("Where does X live")
ARCHITECTURE = section("Architecture")
NAMED = re.compile(r"`([^`]+)`")


def _row(first_cell: str) -> str:
    found = re.search(rf"^\| {re.escape(first_cell)} \| (.*) \|$", MAP, re.MULTILINE)
    assert found, f"the README's folder table has no row for {first_cell}"
    return found.group(1)


def _tracked_folders() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    return {path.split("/", 1)[0] for path in listed if "/" in path}


def test_every_tracked_folder_has_its_place_in_the_folder_table() -> None:
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked folders are unknown")
    first_cells = " ".join(re.findall(r"^\| ([^|]+) \|", MAP, re.MULTILINE))
    missing = sorted(f for f in _tracked_folders() if f"`{f}/" not in first_cells)
    assert not missing, f"folders the README's table does not name: {missing}"


def _root_plugins() -> list[str]:
    """The root conftest's pytest_plugins, read from its source: "conftest" is another module under xdist."""
    tree = ast.parse((REPO_ROOT / "conftest.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "pytest_plugins" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("the root conftest.py sets no pytest_plugins")


def test_every_fixture_plugin_is_named_in_the_fixtures_row() -> None:
    row = set(NAMED.findall(_row("`fixtures/`")))
    modules = {p.stem for p in (REPO_ROOT / "fixtures").glob("*.py") if p.stem != "__init__"}
    assert not modules - row, f"fixtures modules the README does not name: {sorted(modules - row)}"
    plugins = {p.removeprefix("fixtures.") for p in _root_plugins() if p.startswith("fixtures.")}
    assert plugins <= modules, "conftest names a plugin that is not a module of fixtures/"


def test_the_noxfile_row_names_every_session_and_no_other() -> None:
    row = set(NAMED.findall(_row("`noxfile.py`").removeprefix("sessions: ")))
    sessions = set(nox.registry.get())
    assert row == sessions, (
        f"not in the README: {sorted(sessions - row)}; not a session: {sorted(row - sessions)}"
    )


def test_the_architecture_picture_shows_every_agent_and_topic_of_the_manifest() -> None:
    picture = re.search(r"```mermaid\n(.*?)```", ARCHITECTURE, re.DOTALL)
    assert picture, "the Architecture section has no mermaid picture"
    manifest = default()
    missing = [
        name
        for name in [*manifest.agent_names, *manifest.topics]
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", picture.group(1))
    ]
    assert not missing, f"agents or topics of pipeline.toml missing from the picture: {missing}"


def test_every_path_the_map_names_exists() -> None:
    first_cells = " ".join(re.findall(r"^\| ([^|]+) \|", MAP, re.MULTILINE))
    paths = [
        name
        for name in NAMED.findall(WHERE + first_cells)
        if " " not in name
        and ("/" in name or re.fullmatch(r"[\w.-]+\.(py|toml|md|yaml|yml|json|rules)", name))
    ]
    assert len(paths) > 20, f"the map names too few paths to be a map: {paths}"
    # What runs write (reports/..., .stack/...) exists only after a run.
    missing = [p for p in paths if not p.startswith(("reports/", ".stack/")) and not (REPO_ROOT / p).exists()]
    assert not missing, f"paths the README's map names that do not exist: {missing}"


def test_readme_names_the_map_check() -> None:
    assert "tests/unit/test_readme_map.py" in README
