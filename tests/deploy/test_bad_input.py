"""Bad input to the deploy tool: one clear line on stderr, exit 2, before any step runs, nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fixtures.deployment import FAKES, FakeCloud
from stack.state import REPO_ROOT


def deploy_tool(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m deploy ...` as CI would."""
    return subprocess.run(
        [sys.executable, "-m", "deploy", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=120,
        check=False,
    )


def assert_refused(result: subprocess.CompletedProcess[str], phrase: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback, no step started."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "[1/" not in result.stdout


def test_unknown_environment(fake_cloud: FakeCloud) -> None:
    """An environment not in environments.toml names the known ones."""
    result = deploy_tool("deploy", "--env", "prodution")
    assert_refused(result, "unknown environment 'prodution'; known: local, production, staging")
    assert fake_cloud.calls() == []


def test_malformed_environments_file(fake_cloud: FakeCloud, tmp_path: Path) -> None:
    """A broken environments file is reported with its path."""
    broken = tmp_path / "environments.toml"
    broken.write_text("[environments.staging\nkind = 'gcp'\n", encoding="utf-8")
    result = deploy_tool("staging_e2e", env={**os.environ, "IMAGEFLOW_ENVIRONMENTS": str(broken)})
    assert_refused(result, "is not valid TOML")
    assert fake_cloud.calls() == []


def test_half_configured_environment(fake_cloud: FakeCloud, tmp_path: Path) -> None:
    """A gcp environment without its required keys is refused by name."""
    broken = tmp_path / "environments.toml"
    broken.write_text(
        "[environments.staging]\nkind='gcp'\nproject='p'\nregion='r'\nbucket='b'\n", encoding="utf-8"
    )
    result = deploy_tool("staging_e2e", env={**os.environ, "IMAGEFLOW_ENVIRONMENTS": str(broken)})
    assert_refused(result, "half-configured")


def _system_path_without(tmp_path: Path, *tools: str, missing: str) -> str:
    """PATH with the fakes named in tools and system dirs mirrored without the missing tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).symlink_to(FAKES / tool)
    for needed in ("env", "python3", "git"):
        for base in ("/usr/bin", "/bin"):
            if (Path(base) / needed).exists() and not (bin_dir / needed).exists():
                (bin_dir / needed).symlink_to(Path(base) / needed)
    assert not (bin_dir / missing).exists()
    return str(bin_dir)


def test_missing_gcloud(fake_cloud: FakeCloud, tmp_path: Path) -> None:
    """No gcloud on PATH: refused with what to install."""
    path = _system_path_without(tmp_path, "firebase", missing="gcloud")
    result = deploy_tool("staging_e2e", env={**os.environ, "PATH": path})
    assert_refused(result, "gcloud not found on PATH")


def test_missing_firebase(fake_cloud: FakeCloud, tmp_path: Path) -> None:
    """No firebase on PATH: refused with what to install."""
    path = _system_path_without(tmp_path, "gcloud", missing="firebase")
    result = deploy_tool("staging_e2e", env={**os.environ, "PATH": path})
    assert_refused(result, "firebase not found on PATH")


def test_missing_credentials(fake_cloud: FakeCloud) -> None:
    """No active gcloud account: refused before any step."""
    fake_cloud.write({**fake_cloud.state, "account": ""})
    result = deploy_tool("staging_e2e")
    assert_refused(result, "no active gcloud credentials")
    assert fake_cloud.calls() == ["gcloud auth list --filter=status:ACTIVE --format=value(account)"]


def test_missing_project(fake_cloud: FakeCloud) -> None:
    """The target project does not exist or is not accessible: refused before any step."""
    fake_cloud.write({**fake_cloud.state, "projects": ["someone-else"]})
    result = deploy_tool("staging_e2e")
    assert_refused(result, "project imageflow-staging not found or not accessible")
    assert len(fake_cloud.calls()) == 2


def test_missing_api_key_for_the_suite(fake_cloud: FakeCloud) -> None:
    """The target's Firebase API key variable is unset: refused by name, value never shown."""
    env = {k: v for k, v in os.environ.items() if k != "IMAGEFLOW_STAGING_API_KEY"}
    result = deploy_tool("staging_e2e", env=env)
    assert_refused(result, "$IMAGEFLOW_STAGING_API_KEY is not set")
    assert fake_cloud.calls() == []


def test_production_without_confirmation(fake_cloud: FakeCloud) -> None:
    """The gate on production needs --confirm or IMAGEFLOW_CONFIRM=production; other values do not count."""
    result = deploy_tool("production_gate", env={**os.environ, "IMAGEFLOW_CONFIRM": "staging"})
    assert_refused(result, "refusing to change production without confirmation")
    assert fake_cloud.calls() == []
    record = fake_cloud.record()
    assert record["decision"] == "refused"
    assert record["exit_code"] == 2


def test_restore_backup_only_for_rollback(fake_cloud: FakeCloud) -> None:
    """--restore-backup on a deploy session is refused, not ignored."""
    assert_refused(
        deploy_tool("staging_e2e", "--restore-backup", "x"), "only accepted by the rollback session"
    )


def test_local_rollback_without_a_stack(fake_cloud: FakeCloud, tmp_path: Path) -> None:
    """A local session other than e2e never starts a stack: no stack, one line, exit 2."""
    env = {**os.environ, "IMAGEFLOW_STACK_FILE": str(tmp_path / "none" / "stack.json")}
    assert_refused(deploy_tool("rollback", "--env", "local", env=env), "no local stack is running")


def test_unknown_verb() -> None:
    """A verb that does not exist: one line, exit 2."""
    result = deploy_tool("deploi")
    assert result.returncode == 2
    assert "invalid choice: 'deploi'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
