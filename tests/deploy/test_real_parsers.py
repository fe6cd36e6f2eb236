"""Every gcloud and firebase command of the plans through the real CLIs, with no credentials.

The fakes answer like gcloud and firebase but only the real tools know their flags. With an empty
configuration folder and no account, a command the parser accepts stops at authentication; one with an
unknown flag or a bad value stops at parsing. Nothing reaches the network: the metadata-server probes,
update checks and usage reports of both tools are switched off in their environment.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import cli, plan, runner
from deploy.context import RunContext
from deploy.gcp import GcpExecutor
from deploy.gcp_launch import POLICIES, PostLaunch
from deploy.gcp_rollback import GcpRollback
from deploy.record import RunRecord
from deploy.shell import Shell
from fixtures.deployment import FAKES
from stack.processes import stop_group
from stack.state import REPO_ROOT

pytestmark = [
    pytest.mark.one_worker(
        "`plans` dry-runs every plan and asks the real gcloud and firebase once per module"
    ),
]

# The plans a release can run, as the deploy tool's arguments: the gates' plans, a rollback, and a
# rollback that also restores a backup.
PLANS = {
    "staging": ["plan", "--env", "staging"],
    "production": ["plan", "--env", "production"],
    "rollback": ["rollback", "--env", "staging"],
    "restore": ["rollback", "--env", "production", "--restore-backup", "backup-parse"],
}
TOOLS = ("gcloud", "firebase")
CALL_TIMEOUT = 60.0  # one CLI start-up takes 1-5 s here; a call that waits on anything is a failure
WORKERS = 2  # the machine has two cores

# What each tool prints when the parser accepted the command and it needs credentials to go on.
AUTH_STOP = {
    "gcloud": "You do not currently have an active account selected",
    "firebase": "Failed to authenticate, have you run firebase login?",
}


@dataclass(frozen=True)
class Outcome:
    """How a real CLI answered one command: parsed (stopped at authentication), rejected or unclear."""

    verdict: str
    exit_code: int | None
    line: str


def classify(tool: str, exit_code: int | None, output: str) -> Outcome:
    """Tell a parser's refusal from an authentication stop by each tool's own exit code and wording."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = lines[0] if lines else "(no output)"
    if tool == "gcloud":
        # argparse's refusals: exit 2, `ERROR: (gcloud.GROUP.VERB) unrecognized arguments: ...` and the like
        refusal = next((line for line in lines if line.startswith("ERROR: (gcloud")), "")
        if exit_code == 2 and refusal:
            return Outcome("rejected", exit_code, refusal)
    else:
        # commander's refusals (`error: unknown option '--x'`, `error: option '--x' argument missing`)
        # and an unknown verb; firebase exits 1 for these and for the authentication stop alike.
        refusal = next(
            (line for line in lines if line.startswith("error: ") or "is not a Firebase command" in line), ""
        )
        if refusal:
            return Outcome("rejected", exit_code, refusal)
    auth = next((line for line in lines if AUTH_STOP[tool] in line), "")
    if exit_code == 1 and auth:
        return Outcome("parsed", exit_code, auth)
    return Outcome("unclear", exit_code, first)


def real_tool(tool: str) -> Path | None:
    """The installed CLI (node_modules/.bin for firebase), never the fakes of tests/fakes/bin."""
    local = REPO_ROOT / "node_modules" / ".bin" / tool
    found = str(local) if tool == "firebase" and local.exists() else shutil.which(tool)
    if found is None or Path(found).resolve().parent == FAKES.resolve():
        return None
    return Path(found)


def tool_env(home: Path) -> dict[str, str]:
    """An environment with no credentials, empty configuration folders, and no reason to go online."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != FAKES)
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "CLOUDSDK_CORE_PROJECT": "imageflow-parse-check",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        # Without it gcloud asks the metadata server (a DNS lookup, then 169.254.169.254) if it runs on GCE.
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "XDG_CONFIG_HOME": str(home / "config"),
        "CI": "true",  # firebase fetches its message of the day unless CI is set
        "NO_UPDATE_NOTIFIER": "1",
        # google-auth-library (inside firebase) would probe the metadata server for default credentials.
        "METADATA_SERVER_DETECTION": "none",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }


def run_bounded(argv: list[str], env: dict[str, str]) -> tuple[int | None, str]:
    """Run a CLI in its own process group with no stdin; (exit code or None on timeout, its output)."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=CALL_TIMEOUT)
        return process.returncode, out.decode("utf-8", errors="replace")
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {CALL_TIMEOUT:.0f}s (waiting on a prompt or the network?)"
    finally:
        if process.poll() is None:
            stop_group(process.pid, grace=2.0, popen=process)
        if process.stdout is not None:
            process.stdout.close()


def dry_run(argv: list[str]) -> tuple[RunContext, list[list[str]]]:
    """Every gcloud/firebase command one plan runs, in order, undo commands included (nothing is run)."""
    options, rest = cli.parse(argv)
    ctx = cli.context(options, rest)
    record, shell = cli.new_record(options, ctx, True, io.StringIO())
    executor = GcpExecutor(ctx, shell, record)
    if options.verb == "rollback":
        code = runner.run_rollback(GcpRollback(executor).plan, record, shell)
    else:
        code = runner.run_steps(plan.build(ctx, executor), executor.changes, record, shell)
        # What a failed step would undo: every change the run registered, newest first.
        runner.rollback(executor.changes, record, shell)
    assert code == runner.EXIT_OK, f"the dry run of {shlex.join(argv)} failed: {record.reason}"
    commands = [shlex.split(c.command) for e in [*record.steps, *record.rollback] for c in e.commands]
    return ctx, [c for c in commands if c and c[0] in TOOLS]


def write_stand_ins(ctx: RunContext, commands: list[list[str]]) -> None:
    """Write what a real run writes before it uses it (rules folders, alert policies): a dry run does not."""
    record = RunRecord(session="stand-ins", environment=ctx.env.name, kind=ctx.env.kind, commit="", run_id="")
    writer = GcpExecutor(ctx, Shell(record, out=io.StringIO()), record)
    specs = {f"{ctx.env.service_prefix}{suffix}": spec for suffix, spec in POLICIES.items()}
    for argv in commands:
        for arg in argv:
            flag, _, value = arg.partition("=")
            if flag == "--config" and not Path(value).exists():
                writer.rules_dir(Path(value).parent.name.removeprefix("rules-"), ctx.sources.rules_text())
            elif flag == "--policy-from-file" and not Path(value).exists():
                display = Path(value).stem.removeprefix("policy-")
                PostLaunch(writer).policy_file(display, specs[display])


def form(argv: list[str], names: list[str]) -> tuple[str, ...]:
    """The command with the manifest's service and topic names masked: one form per flag shape and value.

    The six services and the seven topics get the same commands but for their names, which the parsers
    take as they come; every other difference (a flag, a value, a project) makes a form of its own.
    """
    masked = []
    for arg in argv:
        for name in names:
            arg = arg.replace(name, "{name}")
        masked.append(arg)
    return tuple(masked)


@dataclass(frozen=True)
class Plans:
    """The commands of every plan and what the real CLIs answered to the first command of each form."""

    commands: dict[str, list[list[str]]]
    outcomes: dict[tuple[str, ...], Outcome]
    names: list[str]

    def outcome(self, argv: list[str]) -> Outcome:
        """What the real CLI answered to this command's form."""
        return self.outcomes[form(argv, self.names)]


def answer_all(commands: list[list[str]], names: list[str], home: Path) -> dict[tuple[str, ...], Outcome]:
    """The first command of each form through its real CLI, two at a time."""
    env = tool_env(home)
    firsts: dict[tuple[str, ...], list[str]] = {}
    for argv in commands:
        firsts.setdefault(form(argv, names), argv)

    def answer(argv: list[str]) -> Outcome:
        tool = argv[0]
        path = real_tool(tool)
        assert path is not None
        code, output = run_bounded([str(path), *argv[1:]], env)
        return classify(tool, code, output)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(zip(firsts, pool.map(answer, firsts.values()), strict=True))


@pytest.fixture(scope="module")
def real_tools() -> None:
    """Skip where the real gcloud or the npm firebase is not installed."""
    for tool in TOOLS:
        if real_tool(tool) is None:
            pytest.skip(f"the real {tool} is not installed (gcloud: Google Cloud CLI; firebase: npm ci)")


@pytest.fixture(scope="module")
def plans(real_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plans]:
    """Dry-run every plan into a temporary runs folder, write the stand-in files, ask the real CLIs."""
    root = tmp_path_factory.mktemp("real-parsers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMAGEFLOW_RUNS_DIR", str(root / "runs"))
        patch.setenv("IMAGEFLOW_DEPLOY_RUN_ID", "parse1")
        commands: dict[str, list[list[str]]] = {}
        for name, argv in PLANS.items():
            ctx, commands[name] = dry_run(argv)
            write_stand_ins(ctx, commands[name])
        manifest = ctx.manifest
        # Longest first, so a topic named after an agent (analysis-done) is masked whole.
        names = sorted({*(s.name for s in manifest.services), *manifest.topics}, key=len, reverse=True)
        outcomes = answer_all([c for cs in commands.values() for c in cs], names, root / "home")
        yield Plans(commands, outcomes, names)


def test_every_plan_command_is_accepted_by_the_real_parsers(plans: Plans) -> None:
    """Each command of the staging, production, rollback and restore plans stops at authentication."""
    problems = [
        f"{name}: {shlex.join(argv)}\n    -> {outcome.verdict} (exit {outcome.exit_code}): {outcome.line}"
        for name, commands in plans.commands.items()
        for argv in commands
        if (outcome := plans.outcome(argv)).verdict != "parsed"
    ]
    summary = ", ".join(
        f"{name} {sum(plans.outcome(c).verdict == 'parsed' for c in cs)}/{len(cs)}"
        for name, cs in plans.commands.items()
    )
    assert not problems, f"commands the real CLIs refuse ({summary}):\n" + "\n".join(problems)


def test_every_plan_reaches_the_verbs_it_exists_for(plans: Plans) -> None:
    """The check looks at real work: deploys, traffic moves, rules, backups and restores are all in it."""
    verbs = {name: {" ".join(c[:4]) for c in cs} for name, cs in plans.commands.items()}
    for name in ("staging", "production"):
        assert "gcloud run deploy imageflow-dashboard" in verbs[name], name
        assert "gcloud run services update-traffic" in verbs[name], name
        assert "firebase deploy --only=firestore:rules" in {" ".join(c[:3]) for c in plans.commands[name]}
    assert "gcloud firestore export gs://imageflow-production-backups/backup-parse1" in verbs["production"]
    assert any(c[:3] == ["gcloud", "firestore", "import"] for c in plans.commands["restore"])
    assert any(c[:2] == ["firebase", "deploy"] for c in plans.commands["rollback"])


@pytest.mark.parametrize(
    ("tool", "argv", "refused"),
    [
        ("gcloud", ["run", "deploy", "s", "--image=i", "--no-trafic", "--region=r"], "--no-trafic"),
        (
            "gcloud",
            ["pubsub", "subscriptions", "create", "s", "--topic=t", "--ack-deadline=ten"],
            "int value",
        ),
        ("gcloud", ["run", "services", "update-traffic", "s", "--to-revisions=r", "--region=x"], "dict arg"),
        ("firebase", ["deploy", "--onlyy=firestore:rules", "--project=p", "--non-interactive"], "--onlyy"),
    ],
    ids=["gcloud-misspelt-flag", "gcloud-bad-int", "gcloud-bad-dict", "firebase-misspelt-option"],
)
def test_a_misspelt_flag_or_bad_value_is_red(
    real_tools: None, tmp_path: Path, tool: str, argv: list[str], refused: str
) -> None:
    """The classifier goes red on a typo: the real parser refuses it before any authentication."""
    path = real_tool(tool)
    assert path is not None
    code, output = run_bounded([str(path), *argv], tool_env(tmp_path))
    outcome = classify(tool, code, output)
    assert outcome.verdict == "rejected", outcome
    assert refused in outcome.line


def test_the_same_command_spelt_right_is_accepted(real_tools: None, tmp_path: Path) -> None:
    """The classifier's green side: a well-formed command stops at authentication."""
    path = real_tool("gcloud")
    assert path is not None
    argv = ["run", "deploy", "s", "--image=i", "--no-traffic", "--region=r", "--project=p", "--quiet"]
    outcome = classify("gcloud", *run_bounded([str(path), *argv], tool_env(tmp_path)))
    assert outcome == Outcome("parsed", 1, f"ERROR: (gcloud.run.deploy) {AUTH_STOP['gcloud']}.")
