"""Local secret values (.secrets.local.env, git-ignored, mode 0600): created once, never printed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from stack.state import REPO_ROOT

SECRETS_ENV = "IMAGEFLOW_SECRETS_FILE"
REDACTED = "<secret>"
# The verification token the local push subscriptions carry and the agents require (see infra.py).
PUSH_TOKEN_KEY = "PUSH_TOKEN"


def secrets_path() -> Path:
    """$IMAGEFLOW_SECRETS_FILE or .secrets.local.env at the repository root."""
    return Path(os.environ.get(SECRETS_ENV) or REPO_ROOT / ".secrets.local.env")


def _defaults() -> dict[str, str]:
    return {
        "SESSION_SECRET": secrets.token_hex(32),
        "FIREBASE_API_KEY": "local-emulator-key",
        PUSH_TOKEN_KEY: secrets.token_urlsafe(32),
    }


def parse(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, value = stripped.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def ensure(path: Path | None = None) -> dict[str, str]:
    """The local secrets, writing missing keys with fresh random values (file mode 0600)."""
    chosen = path or secrets_path()
    existing = parse(chosen.read_text(encoding="utf-8")) if chosen.exists() else {}
    missing = {k: v for k, v in _defaults().items() if not existing.get(k)}
    if missing or not chosen.exists():
        merged = {**existing, **missing}
        body = "# Local secret values for the local stack. Git-ignored; never print or commit.\n"
        body += "".join(f"{k}={v}\n" for k, v in merged.items())
        fd = os.open(chosen, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        existing = merged
    os.chmod(chosen, 0o600)
    return existing


def redact(env: dict[str, str], secret_keys: set[str]) -> dict[str, str]:
    """A copy of env with every secret key's value replaced (an empty value stays visible as empty)."""
    return {k: (REDACTED if k in secret_keys and v else v) for k, v in env.items()}
