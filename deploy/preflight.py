"""Checks made before any step runs: tools present, credentials and project usable, confirmation."""

from __future__ import annotations

import os
import shutil

from deploy.context import RunContext
from deploy.shell import Shell
from deploy.steps import PreflightError, StepFailed


def confirmation(ctx: RunContext, confirmed: bool) -> None:
    """A confirm=true target (production) changes only with --confirm or IMAGEFLOW_CONFIRM=<name>."""
    if ctx.env.confirm and not (confirmed or os.environ.get("IMAGEFLOW_CONFIRM") == ctx.env.name):
        raise PreflightError(
            f"refusing to change {ctx.env.name} without confirmation: pass --confirm "
            f"or set IMAGEFLOW_CONFIRM={ctx.env.name}"
        )


def gcp(ctx: RunContext, shell: Shell) -> None:
    """gcloud and firebase on PATH, an active gcloud account, and the target project reachable."""
    if ctx.env.api_key_env and not os.environ.get(ctx.env.api_key_env):
        # The suite signs test users in through the target's Auth API; without the key it cannot verify.
        raise PreflightError(
            f"${ctx.env.api_key_env} is not set: the suite needs {ctx.env.name}'s Firebase API key"
        )
    for tool, install in (
        ("gcloud", "install the Google Cloud CLI"),
        ("firebase", "npm install (firebase-tools), then add node_modules/.bin to PATH"),
    ):
        if shutil.which(tool) is None:
            raise PreflightError(f"{tool} not found on PATH: {install}")
    try:
        account = shell.run(
            ["gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"], check=False
        )
        if not account.ok or not account.stdout.strip():
            raise PreflightError(
                "no active gcloud credentials: run `gcloud auth login` "
                "(CI: google-github-actions/auth) and retry"
            )
        project = shell.run(
            ["gcloud", "projects", "describe", ctx.env.project, "--format=value(projectId)"], check=False
        )
    except StepFailed as exc:
        raise PreflightError(str(exc)) from exc
    if not project.ok or project.stdout.strip() != ctx.env.project:
        raise PreflightError(
            f"project {ctx.env.project} not found or not accessible with the active credentials"
        )
