"""Nox sessions: local e2e job, staging and production gates, rollback, plan, tests, lint, fuzz.

Every session runs with the project's .venv (no per-session virtualenv). Deploy sessions call
`python -m deploy VERB`, which takes its options before `--` and hands everything else to pytest:
`nox -s production_gate -- --confirm -- -k upload_jpeg`, `nox -s e2e -- -k upload_jpeg`.
Exit codes of the deploy sessions: 0 done, 1 failed and rolled back, 2 refused, 3 rollback failed.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

REPO = Path(__file__).resolve().parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_external_run = False


def _env() -> dict[str, str]:
    """PATH with the project's npm tools (firebase) after whatever is already on it."""
    return {"PATH": f"{os.environ.get('PATH', '')}{os.pathsep}{REPO / 'node_modules' / '.bin'}"}


def _deploy(session: nox.Session, verb: str) -> None:
    """Run one verb of the deploy tool with the session's arguments."""
    session.run(PYTHON, "-m", "deploy", verb, *session.posargs, env=_env(), external=True)


@nox.session(python=False)
def e2e(session: nox.Session) -> None:
    """Local stack up (unless running), the whole plan with candidates verified by the full suite, report.

    Options before `--` (none needed) and pytest arguments: `nox -s e2e -- -k upload_jpeg`.
    """
    _deploy(session, "e2e")


@nox.session(python=False, default=False)
def staging_e2e(session: nox.Session) -> None:
    """Deploy candidates to staging, run the suite against them, promote on green, roll back on red.

    `nox -s staging_e2e -- [--image IMAGE] [-- pytest args]`.
    """
    _deploy(session, "staging_e2e")


@nox.session(python=False, default=False)
def production_gate(session: nox.Session) -> None:
    """Production: backup, no-traffic candidates, smoke on tagged URLs, promote, checklist; rollback on red.

    Needs `nox -s production_gate -- --confirm [-- pytest args]` or IMAGEFLOW_CONFIRM=production.
    """
    _deploy(session, "production_gate")


@nox.session(python=False, default=False)
def rollback(session: nox.Session) -> None:
    """Previous revision of each service and previous firestore.rules; a backup only with --restore-backup.

    `nox -s rollback -- --env staging [--restore-backup NAME] [--rules-from REV] [--confirm]`.
    """
    _deploy(session, "rollback")


@nox.session(python=False, default=False)
def canary(session: nox.Session) -> None:
    """The progressive part alone on a running local stack: candidates, canary steps, 100 %, bake.

    `nox -s canary -- --env local`; a fault for the candidates: `-- --revision-env IMAGEFLOW_FAULTS=...`.
    """
    _deploy(session, "canary")


@nox.session(python=False)
def plan(session: nox.Session) -> None:
    """Dry run: every command the deploy would run, in order; nothing is run, no network.

    `nox -s plan -- --env production` (default --env local).
    """
    _deploy(session, "plan")


@nox.session(python=False, default=False)
def sweep(session: nox.Session) -> None:
    """Delete the suite's test users, documents, objects and taps older than a day on one target.

    `nox -s sweep -- --env NAME [--dry-run]`: only e2e- users and documents and tap- subscriptions.
    """
    session.run(PYTHON, "-m", "fixtures.sweep", *session.posargs, env=_env(), external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The README's test command: the whole pytest suite (pytest arguments after `--`)."""
    session.run(PYTHON, "-m", "pytest", *session.posargs, env=_env(), external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff and mypy on the whole project."""
    session.run(str(REPO / ".venv" / "bin" / "ruff"), "check", ".", external=True)
    session.run(str(REPO / ".venv" / "bin" / "mypy"), external=True)


# --- drills, load and benchmarks: the suite proved on a stack of its own --------------------------
# All of them run against a local stack: their own (.stack/drills/stack.json, started and stopped
# by the run) unless --state-file or IMAGEFLOW_STACK_FILE names a running one.


@nox.session(python=False, default=False)
def fault_drill(session: nox.Session) -> None:
    """Deploy each fault on the local stack, run the suite, roll back, prove green; reports/fault-drill.json.

    `nox -s fault_drill -- [--faults a,b] [--list] [--workers N]`.
    """
    session.run(PYTHON, "-m", "drills.fault_drill", *session.posargs, env=_env(), external=True)


@nox.session(python=False, default=False)
def flake_check(session: nox.Session) -> None:
    """The whole suite N times on the local stack; per-test pass rates and flaky tests.

    `nox -s flake_check -- --runs N [--workers 2] [--paths tests/e2e]`.
    """
    session.run(PYTHON, "-m", "drills.flake_check", *session.posargs, env=_env(), external=True)


@nox.session(python=False, default=False)
def load(session: nox.Session) -> None:
    """Locust headless on the local stack, every workflow checked; reports/benchmarks/load.json.

    `nox -s load -- [--users 10] [--seconds 60]`.
    """
    session.run(PYTHON, "-m", "benchmarks.load", *session.posargs, env=_env(), external=True)


@nox.session(python=False, default=False)
def benchmarks(session: nox.Session) -> None:
    """Stack start, pipeline, suite and scenario times, load, time to red, detection; reports/benchmarks/.

    `nox -s benchmarks -- [NAME ...]` (default: all; an unknown name lists them).
    """
    session.run(PYTHON, "-m", "benchmarks", *session.posargs, env=_env(), external=True)


@nox.session(python=False, default=False)
def mutation(session: nox.Session) -> None:
    """Mutants of the reference system against the release suite on a private copy; reports/mutation/.

    `nox -s mutation -- [--rev HEAD] [--count 60] [--seed 9] [--budget-minutes N] [--timeout S]
    [--tests gate|area] [--list]`. Only the mutated service restarts; the suite runs with -x, its
    file's earlier killers (reports/mutation/kills.json) and its part's tests first; a survivor ran
    the whole suite. Fault-switch only code is counted, never sampled.
    """
    session.run(PYTHON, "-m", "drills.mutation", *session.posargs, env=_env(), external=True)


@nox.session(python=False, default=False)
def fuzz(session: nox.Session) -> None:
    """The property-based contract scenarios with a large random budget (hypothesis profile "fuzz").

    `nox -s fuzz -- [pytest arguments, e.g. -k pushes --hypothesis-seed 7]`.
    """
    env = {**_env(), "IMAGEFLOW_HYPOTHESIS_PROFILE": "fuzz"}
    scenarios = "tests/e2e/test_contract_properties.py"
    session.run(PYTHON, "-m", "pytest", scenarios, *session.posargs, env=env, external=True)
