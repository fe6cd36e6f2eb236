"""The drill's catalogue: every fault, how to deploy it on the local stack, and what should catch it.

The switches themselves live in the reference system (imageflow/faults.py for the agents,
imageflow/dashboard/faults.py for the dashboard); a rules fault is a broken rules file under
drills/broken_rules/. This map only says how to deploy each one and which scenarios the suite
runs against it. Whether a fault is caught is decided by the real run, never by `expected`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imageflow import faults as agent_faults
from imageflow.dashboard import faults as dashboard_faults
from imageflow.manifest import Manifest

BROKEN_RULES_DIR = Path(__file__).resolve().parent / "broken_rules"
FAULTS_ENV = "IMAGEFLOW_FAULTS"
# Where the suite's scenarios live; a folder that does not exist yet is skipped at run time.
SUITE_PATHS = ("tests/e2e", "tests/rules")
# The scenario every agent fault must break: one real photo through the whole pipeline.
PIPELINE_SCENARIO = "test_upload_jpeg_completes_with_every_agent_exactly_once"
# Scenarios about one user seeing another's data (UI list, API, client path under the rules).
ISOLATION_KEYWORDS = ("isolation", "other_user", "another_user", "others_upload", "user_b")

# Faults that leave the step looking done: the agent's own scenarios run against them. The others
# (never fires, errors, slow, twice) break the pipeline itself, which one photo through it shows.
OUTPUT_FAULTS = ("wrong_output", "fake_done")

# Parts of the system a fault can break (the report groups by them).
PARTS = ("agents", "dashboard", "rules", "config", "finalizer", "storage")


@dataclass(frozen=True)
class Selection:
    """Which scenarios run against a fault: paths, then keep tests matching any keep rule.

    keep: substrings of a test's node id; keep_agents: tests marked agent(NAME). With neither,
    every collected test of the paths runs.
    """

    paths: tuple[str, ...] = SUITE_PATHS
    keep: tuple[str, ...] = ()
    keep_agents: tuple[str, ...] = ()

    def union(self, other: Selection) -> Selection:
        """The selection running the tests of both (used for the clean baseline)."""
        if not (self.keep or self.keep_agents) or not (other.keep or other.keep_agents):
            everything = tuple(dict.fromkeys(self.paths + other.paths))
            return Selection(paths=everything)
        return Selection(
            paths=tuple(dict.fromkeys(self.paths + other.paths)),
            keep=tuple(dict.fromkeys(self.keep + other.keep)),
            keep_agents=tuple(dict.fromkeys(self.keep_agents + other.keep_agents)),
        )

    def describe(self) -> str:
        """One line: the paths and the keep rules."""
        rules = [*(f"name~{k}" for k in self.keep), *(f"agent({a})" for a in self.keep_agents)]
        return " ".join(self.paths) + (f" [{' | '.join(rules)}]" if rules else "")


@dataclass(frozen=True)
class DrillFault:
    """One fault of the drill: what it breaks, how it is deployed, and which scenarios face it."""

    name: str
    part: str
    description: str
    selection: Selection
    expected: tuple[str, ...]
    service: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    rules_file: Path | None = None

    @property
    def deploy_summary(self) -> str:
        """How the fault is deployed, for --list (names and keys only, never a secret value)."""
        if self.rules_file is not None:
            return f"rules {self.rules_file.name}"
        removed = sorted(k for k, v in self.env.items() if v == "")
        keys = f"{FAULTS_ENV}={self.env.get(FAULTS_ENV, '')}"
        return f"{self.service} revision {keys}" + (f" without {', '.join(removed)}" if removed else "")


def _agent_fault(manifest: Manifest, switch: str, description: str) -> DrillFault:
    agent, fault = switch.split(".", 1)
    part = {"finalizer.early": "finalizer", "thumbnailer.not_written": "storage"}.get(switch, "agents")
    keep: tuple[str, ...] = (PIPELINE_SCENARIO,)
    keep_agents: tuple[str, ...] = ()
    expected: tuple[str, ...] = (PIPELINE_SCENARIO,)
    if fault in OUTPUT_FAULTS or switch in agent_faults.SPECIFIC_FAULTS:
        # The work is (said to be) done: only the agent's own output checks can see through it.
        keep_agents = (agent,)
        expected = (f"agent({agent}) scenarios",)
    if switch == "validator.accepts_bad":
        keep += ("reject", "bad_content", "bad_input", "corrupt")
        expected = ("test_bad_content_rejected_with_reason_and_other_steps_skipped",)
    return DrillFault(
        name=switch,
        part=part,
        description=description,
        selection=Selection(keep=keep, keep_agents=keep_agents),
        expected=expected,
        service=agent,
        env={FAULTS_ENV: switch},
    )


# The dashboard's switches: which scenarios face each and which should fail.
_DASHBOARD: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    dashboard_faults.REGISTRATION_BROKEN: (("registration",), ("test_registration_logs_the_new_user_in",)),
    dashboard_faults.LOGIN_ACCEPTS_WRONG_PASSWORD: (("login",), ("test_login_refuses_a_wrong_password",)),
    dashboard_faults.UPLOAD_NOT_STORED: (
        (PIPELINE_SCENARIO, "stored_original"),
        (PIPELINE_SCENARIO, "test_validator_sha256_and_size_match_stored_original"),
    ),
    dashboard_faults.UPLOAD_NOT_PUBLISHED: ((PIPELINE_SCENARIO,), (PIPELINE_SCENARIO,)),
    dashboard_faults.SHOWS_OTHER_USERS_UPLOADS: (
        ISOLATION_KEYWORDS,
        ("test_other_user_sees_no_upload_and_is_refused_the_workflow_everywhere",),
    ),
}

RULES_FAULT = "rules.other_users_readable"
CONFIG_FAULT = "config.secret_missing_but_ready"


def build(manifest: Manifest) -> dict[str, DrillFault]:
    """Every fault of the drill for the agents of this manifest, by name, in a stable order."""
    faults: dict[str, DrillFault] = {}
    for switch, description in agent_faults.catalogue(manifest.agent_names).items():
        if switch.split(".", 1)[0] in manifest.agent_names:
            faults[switch] = _agent_fault(manifest, switch, description)
    for switch, (keep, expected) in _DASHBOARD.items():
        faults[switch] = DrillFault(
            name=switch,
            part="dashboard",
            description=dashboard_faults.FAULTS[switch],
            selection=Selection(keep=keep),
            expected=expected,
            service=manifest.dashboard.name,
            env={FAULTS_ENV: switch},
        )
    faults[CONFIG_FAULT] = DrillFault(
        name=CONFIG_FAULT,
        part="config",
        description="SESSION_SECRET removed from the revision while readiness still says ready "
        f"({dashboard_faults.READY_WITHOUT_SECRET})",
        selection=Selection(keep=("readiness", "ready_with_every_required_setting")),
        expected=("test_service_is_ready_with_every_required_setting[dashboard]",),
        service=manifest.dashboard.name,
        # An empty value is a missing value to config.load: the revision runs without the secret.
        env={FAULTS_ENV: dashboard_faults.READY_WITHOUT_SECRET, "SESSION_SECRET": ""},
    )
    faults[RULES_FAULT] = DrillFault(
        name=RULES_FAULT,
        part="rules",
        description="firestore.rules let any signed-in user read another user's workflow",
        # Not tests/rules/: their fixture loads the repository's good rules into the emulator,
        # which would undo the fault under the scenarios still to run.
        selection=Selection(keep=ISOLATION_KEYWORDS),
        expected=("test_other_user_sees_no_upload_and_is_refused_the_workflow_everywhere",),
        rules_file=BROKEN_RULES_DIR / "other_users_readable.rules",
    )
    return faults


def covered_switches(faults: Mapping[str, DrillFault]) -> set[str]:
    """The reference system's fault switches the drill deploys (directly or as part of a fault)."""
    switches: set[str] = set()
    for fault in faults.values():
        switches.update(s for s in fault.env.get(FAULTS_ENV, "").split(",") if s)
    return switches
