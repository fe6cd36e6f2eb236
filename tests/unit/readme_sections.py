"""The README's text and its `## ` sections, for the tests that hold the README to the code."""

from __future__ import annotations

import re

from stack.state import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The body of the README's `## title` section; fails the test when there is none."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert found, f"README has no '## {title}' section"
    return found.group(1)
