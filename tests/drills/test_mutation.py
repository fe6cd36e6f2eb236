"""The mutation tool's own logic: operators, rules mutants, equivalence, sampling, report, refusals."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import allure
import pytest

from drills import report as drill_report
from drills.mutation import __main__ as mutation_main
from drills.mutation import history, imports, report, runner, sample
from drills.mutation.model import Edit, Mutant
from drills.mutation.operators import (
    FAULT_CATALOGUES,
    FAULT_HOOKS,
    guarded_nodes,
    python_candidates,
    python_equivalence,
    python_mutants,
)
from drills.mutation.order import Plan, rank
from drills.mutation.report import MutantResult
from drills.mutation.rules import rules_equivalence, rules_mutants
from drills.suite import CaseOutcome, SuiteRun
from stack.state import REPO_ROOT

pytestmark = [
    allure.epic("Drills"),
    allure.feature("Mutation testing"),
    allure.severity(allure.severity_level.CRITICAL),
]

SOURCE = textwrap.dedent(
    '''\
    """A module docstring."""

    import logging

    log = logging.getLogger(__name__)
    LIMIT: int = 10


    def check(size: int, owner: str, user: str) -> bool:
        """A docstring."""
        log.info("checking %s", size)
        if size > LIMIT and owner == user:
            record(size, owner)
            return True
        return not size


    class Thing:
        def __repr__(self) -> str:
            return "Thing(" + "x" + ")"


    def record(size: int, owner: str) -> dict[str, int]:
        return {"size": size, "owner": 1}
    '''
)


def _mutated(operator: str) -> dict[str, str]:
    """{description: mutated source} of one operator's mutants of SOURCE."""
    return {
        m.description: m.mutated(SOURCE)
        for m in python_mutants("imageflow/x.py", SOURCE)
        if m.operator == operator
    }


def _changed_lines(mutated: str) -> list[str]:
    return [new for old, new in zip(SOURCE.splitlines(), mutated.splitlines(), strict=False) if old != new]


def test_comparison_flip_changes_only_the_operator() -> None:
    flips = _mutated("compare")
    assert _changed_lines(flips["Gt -> GtE"]) == ["    if (size >= LIMIT) and owner == user:"]
    assert _changed_lines(flips["Eq -> NotEq"]) == ["    if size > LIMIT and (owner != user):"]


def test_boolop_not_if_return_and_call_removal() -> None:
    assert _changed_lines(_mutated("boolop")["and -> or"]) == ["    if size > LIMIT or owner == user:"]
    assert _changed_lines(_mutated("not-removed")["not removed: not size"]) == ["    return size"]
    forced = _mutated("if-false")
    assert _changed_lines(next(iter(forced.values()))) == ["    if False:"]
    assert "        return None" in _changed_lines(_mutated("return-none")["returns None instead of True"])
    removed = _mutated("remove-call")
    assert list(removed) == ["call removed: record(size, owner)"]
    assert _changed_lines(removed["call removed: record(size, owner)"]) == ["        pass"]


def test_constants_arguments_and_dict_keys() -> None:
    constants = _mutated("constant")
    assert "LIMIT: int = 11" in constants["10 -> 11"]
    assert "LIMIT: int = 9" in constants["10 -> 9"]
    assert "return False" in constants["True -> False"]
    assert 'return {"": size, "owner": 1}' in constants["string emptied: 'size'"]
    swapped = _mutated("swap-args")
    assert "record(owner, size)" in swapped["arguments swapped: size <-> owner"]
    dropped = _mutated("dict-drop")
    assert 'return {"owner": 1}' in dropped['key dropped: "size"']


def test_docstrings_logging_type_hints_and_repr_are_never_mutated() -> None:
    mutants = python_mutants("imageflow/x.py", SOURCE)
    lines = {SOURCE.splitlines()[m.line - 1].strip() for m in mutants}
    assert not any(line.startswith(('"""', "log.info", 'return "Thing("')) for line in lines), lines
    # The annotation `int` of LIMIT and the parameters' hints: only the value 10 is mutated on that line.
    assert {m.description for m in mutants if m.line == 6} == {"10 -> 11", "10 -> 9"}


def test_every_python_mutant_compiles_and_differs() -> None:
    for mutant in python_mutants("imageflow/x.py", SOURCE):
        assert python_equivalence(SOURCE, mutant.mutated(SOURCE)) is None, mutant.description


def test_equivalence_detection() -> None:
    assert python_equivalence("x = (1)\n", "x = 1\n") == "equivalent: the AST is unchanged"
    assert python_equivalence("x = 1 + 1\n", "x = 2\n") == "equivalent: the bytecode is identical"
    assert python_equivalence("x = 1\n", "x = (\n").startswith("invalid")  # type: ignore[union-attr]
    assert python_equivalence("x = 1\n", "x = 2\n") is None
    assert rules_equivalence("allow get: if a; // one\n", "allow get:   if a; // two\n") is not None
    assert rules_equivalence("allow get: if a;\n", "allow get: if b;\n") is None


RULES = textwrap.dedent(
    """\
    rules_version = '2';
    // A comment with == and && in it.
    service cloud.firestore {
      match /workflows/{id} {
        allow get: if request.auth != null && resource.data.owner == request.auth.uid;
        allow write: if false;
      }
    }
    """
)


def test_rules_operators() -> None:
    mutated = {m.description: m.mutated(RULES) for m in rules_mutants(RULES)}
    assert "allow get: if request.auth == null && resource" in mutated["!= -> =="]
    assert "null || resource" in mutated["&& -> ||"]
    assert (
        "allow get: if resource.data.owner == request.auth.uid;"
        in mutated["condition dropped: request.auth != null"]
    )
    assert "allow read: if request" in mutated["allow get -> allow read"]
    assert "allow write: if true;" in mutated["false -> true"]
    assert all(m.line not in (1, 2) for m in rules_mutants(RULES)), "comments and rules_version are mutated"


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "imageflow" / "agents").mkdir(parents=True)
    (tmp_path / "imageflow" / "dashboard").mkdir()
    (tmp_path / "imageflow" / "agents" / "a.py").write_text(SOURCE, encoding="utf-8")
    (tmp_path / "imageflow" / "dashboard" / "d.py").write_text(SOURCE, encoding="utf-8")
    (tmp_path / "imageflow" / "workflow.py").write_text(SOURCE, encoding="utf-8")
    (tmp_path / "firestore.rules").write_text(RULES, encoding="utf-8")
    return tmp_path


def test_sampling_is_deterministic_and_stratified(tmp_path: Path) -> None:
    candidates = sample.collect(_tree(tmp_path))
    first = [m.id for m in sample.choose(candidates, 20, seed=3)]
    again = [m.id for m in sample.choose(sample.collect(tmp_path), 20, seed=3)]
    other = [m.id for m in sample.choose(candidates, 20, seed=4)]
    assert first == again
    assert first != other
    areas = [m.area for m in sample.choose(candidates, 20, seed=3)]
    assert {a: areas.count(a) for a in set(areas)} == {"agents": 5, "workflow": 5, "dashboard": 5, "rules": 5}
    ordered = [m.area for m in sample.run_order(sample.choose(candidates, 20, seed=3))]
    assert ordered[:4] == ["agents", "workflow", "dashboard", "rules"], "a budget cut would skip whole areas"


def test_quota_gives_a_small_area_s_share_to_the_others() -> None:
    assert sample.quotas({"agents": 100, "workflow": 100, "dashboard": 100, "rules": 3}, 60) == {
        "agents": 19,
        "workflow": 19,
        "dashboard": 19,
        "rules": 3,
    }
    with pytest.raises(sample.SampleError):
        sample.choose(sample.Candidates(), 5, seed=1, areas=["nowhere"])


def test_equivalent_list_needs_a_reason_for_each(tmp_path: Path) -> None:
    good = tmp_path / "eq.toml"
    good.write_text(
        '[[equivalent]]\nid = "a.py:1:constant:abc"\nreason = "cache size only"\n', encoding="utf-8"
    )
    assert sample.load_equivalent(good) == {"a.py:1:constant:abc": "cache size only"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[equivalent]]\nid = "a.py:1:constant:abc"\n', encoding="utf-8")
    with pytest.raises(sample.SampleError, match="reason"):
        sample.load_equivalent(bad)
    assert sample.load_equivalent(sample.EQUIVALENT_FILE) is not None  # the project's list parses


def test_services_loading_follows_imports(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "imageflow" / "serve.py").write_text("import os\n", encoding="utf-8")
    (root / "imageflow" / "agents" / "b.py").write_text("from imageflow import workflow\n", encoding="utf-8")
    (root / "imageflow" / "agents" / "c.py").write_text(
        "from imageflow.agents.b import x\n", encoding="utf-8"
    )
    modules = {"b": "imageflow.agents.b", "c": "imageflow.agents.c", "d": "imageflow.dashboard.d"}
    assert imports.services_loading(root, modules, "imageflow/workflow.py") == ["b", "c"]
    assert imports.services_loading(root, modules, "imageflow/agents/c.py") == ["c"]


def _result(status: str, area: str = "agents") -> MutantResult:
    return MutantResult(
        id=f"{status}-{area}",
        area=area,
        path="p",
        line=1,
        operator="o",
        description="d",
        status=status,
        diff="-a\n+b\n",
    )


def test_report_scores_per_area_and_lists_survivors(tmp_path: Path) -> None:
    results = [
        _result("killed"),
        _result("killed"),
        _result("survived"),
        _result("equivalent"),
        _result("timeout"),
        _result("killed", "rules"),
    ]
    path = report.write(tmp_path / "m.json", results, {"label": "t", "seed": 1, "commit": "abc"})
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["score"]["agents"]["non_equivalent"] == 4
    assert doc["score"]["agents"]["score"] == 0.5
    assert doc["score"]["rules"]["score"] == 1.0
    assert doc["score"]["total"]["killed"] == 3
    summary = path.with_suffix(".md").read_text(encoding="utf-8")
    assert "## agents: surviving mutants (1)\n\n### survived-agents: d" in summary
    assert "## agents: timeouts (1)\n\n### timeout-agents: d" in summary
    assert "### killed-agents" not in summary
    assert report.score_line(doc) == "mutants killed (commit abc, seed 1): agents 2/4, rules 1/1, total 3/5"


def test_judge_of_a_suite_run() -> None:
    mutant = Mutant("imageflow/workflow.py", 1, "constant", "d", Edit(0, 0, ""))
    red = SuiteRun(1, 0.0, 1.0, {"t": CaseOutcome("t", "failed", 0.5, "assert 1 == 2")})
    green = SuiteRun(0, 0.0, 1.0, {"t": CaseOutcome("t", "passed")})
    assert runner.judge(mutant, red) == ("killed", ["t"], "assert 1 == 2")
    interrupted = SuiteRun(2, 0.0, 1.0, {"t": CaseOutcome("t", "failed", 0.5, "x")})
    assert runner.judge(mutant, interrupted)[0] == "killed", "xdist's -x stop exits 2"
    assert runner.judge(mutant, green) == ("survived", [], "")
    assert runner.judge(mutant, SuiteRun(-1, 0.0, 1.0, timed_out=True))[0] == "timeout"
    red_then_slow = SuiteRun(-1, 0.0, 1.0, {"t": CaseOutcome("t", "failed", 0.5, "x")}, timed_out=True)
    assert runner.judge(mutant, red_then_slow)[0] == "killed", "a test failed before the bound: red-flagged"
    aborted = SuiteRun(-9, 0.0, 1.0, {"t": CaseOutcome("t", "failed", 0.5, "x")})
    assert runner.judge(mutant, aborted)[0] == "killed", (
        "--drill-abort-on-failure kills the run at its first failure"
    )
    assert runner.judge(mutant, SuiteRun(-9, 0.0, 1.0))[0] == "broken", (
        "killed before any failure: no verdict"
    )
    assert runner.judge(mutant, SuiteRun(4, 0.0, 1.0))[0] == "broken"


def test_refuses_the_shared_tree_and_a_dirty_copy(tmp_path: Path) -> None:
    with pytest.raises(runner.MutationError, match="not a mutation work copy"):
        runner.check_tree(REPO_ROOT, ["firestore.rules"])
    repo = tmp_path / "repo"
    repo.mkdir()
    for command in (
        ["init", "-q"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *command], cwd=repo, check=True)
    (repo / runner.MARKER).write_text("x", encoding="utf-8")
    with pytest.raises(runner.MutationError, match="main working tree"):
        runner.check_tree(repo, ["firestore.rules"])
    (repo / "firestore.rules").write_text(RULES, encoding="utf-8")
    subprocess.run(["git", "add", "firestore.rules"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "r"], cwd=repo, check=True
    )
    copy = tmp_path / "copy"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(copy)], cwd=repo, check=True)
    (copy / runner.MARKER).write_text("x", encoding="utf-8")
    assert runner.check_tree(copy, ["firestore.rules"])
    (copy / "firestore.rules").write_text(RULES.replace("!=", "=="), encoding="utf-8")
    with pytest.raises(runner.MutationError, match="have changes"):
        runner.check_tree(copy, ["firestore.rules"])


def test_refuses_a_non_local_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEFLOW_TARGET", "staging")
    with pytest.raises(runner.MutationError, match="only against the local stack"):
        runner.check_target()
    monkeypatch.setenv("IMAGEFLOW_TARGET", "local")
    runner.check_target()


def test_fault_switch_branches_are_left_to_the_fault_drill() -> None:
    source = textwrap.dedent(
        """\
        def run(self, job):
            if self.faults.on("slow"):
                wait(1)
            else:
                go(2)
            if not job.fault("not_written"):
                write(3)
            return () if self.faults.on("early") else compute(4)
        """
    )
    release, fault_switch = python_candidates("imageflow/agents/a.py", source)
    assert {m.line for m in release} == {5, 7, 8}, "only the release side of each fault switch is sampled"
    assert {m.line for m in fault_switch} == {3}, "the guarded branch is counted apart, not dropped"
    assert all("slow" not in m.description for m in release + fault_switch), "the switch check itself"


def test_rescore_applies_the_equivalent_list_to_a_report(tmp_path: Path) -> None:
    path = report.write(tmp_path / "m.json", [_result("survived"), _result("killed")], {"seed": 1})
    judged = tmp_path / "eq.toml"
    entries = [
        f'[[equivalent]]\nid = "{i}"\nreason = "unreachable in a release"\n'
        for i in ("survived-agents", "killed-agents")
    ]
    judged.write_text("\n".join(entries), encoding="utf-8")
    doc = json.loads(mutation_main.rescore(path, judged).read_text(encoding="utf-8"))
    assert doc["score"]["agents"]["score"] == 1.0
    assert doc["mutants"][0]["reason"] == "unreachable in a release (ran: survived)"
    assert doc["mutants"][1]["status"] == "killed", "a killed mutant is never re-judged equivalent"


def test_the_command_line_parses_its_own_options_and_passes_the_rest() -> None:
    args, rest = mutation_main.parse_args(["--rev", "abc", "--rescore", "r.json", "--count", "5"])
    assert (args.rev, args.rescore, rest) == ("abc", Path("r.json"), ["--count", "5"])
    assert runner.parse_args(["--report", "r.json", *rest, "--list"]).count == 5


def test_functions_only_fault_switches_call_are_not_mutated() -> None:
    source = textwrap.dedent(
        """\
        def _helper(x):
            return x + 1


        def leaked(x):
            return _helper(x) * 2


        def used(x):
            return x - 3


        def run(job, x):
            if job.fault("leaks"):
                return leaked(x)
            return used(x)
        """
    )
    release, fault_switch = python_candidates("imageflow/agents/a.py", source)
    assert {m.line for m in release} == {10, 16}, "the fault-only helpers (lines 2 and 6) must not be sampled"
    assert {m.line for m in fault_switch} == {2, 6, 15}


def test_the_fault_drill_report_carries_the_latest_mutation_score(tmp_path: Path) -> None:
    latest = report.write(
        tmp_path / "latest.json", [_result("killed"), _result("survived")], {"commit": "abc"}
    )
    summary = report.latest_summary(latest)
    assert summary is not None
    assert summary["score"]["agents"]["score"] == 0.5
    assert summary["line"] == "mutants killed (commit abc, seed None): agents 1/2, total 1/2"
    assert report.latest_summary(tmp_path / "none.json") is None
    drill = drill_report.write(tmp_path / "fault-drill.json", [], None, True, [], {})
    assert "mutation" in json.loads(drill.read_text(encoding="utf-8"))


def test_selections_gate_by_default_and_area_on_request() -> None:
    rules_mutant = Mutant("firestore.rules", 9, "rules-operator", "d", Edit(0, 0, ""))
    exif_mutant = Mutant("imageflow/agents/exif.py", 9, "constant", "d", Edit(0, 0, ""))
    gate = runner.mutant_selection(REPO_ROOT, exif_mutant, "gate")
    assert "tests/rules" in gate.paths
    assert all(p.startswith(("tests/e2e/", "tests/rules")) for p in gate.paths), "the release suite alone"
    assert len(gate.paths) == len(list((REPO_ROOT / "tests" / "e2e").glob("test_*.py"))) + 1
    assert not gate.keep
    assert not gate.keep_agents
    assert runner.mutant_selection(REPO_ROOT, rules_mutant, "gate").paths[0] == "tests/rules"
    area = runner.mutant_selection(REPO_ROOT, exif_mutant, "area")
    assert area.keep_agents == ("exif",)
    assert all(p.startswith("tests/e2e/") for p in area.paths)


def test_functions_handed_only_to_a_fault_hook_are_fault_switch_only() -> None:
    source = textwrap.dedent(
        """\
        def placeholder(job):
            return {"a": 1}


        def make(name, handler, fake=placeholder):
            return (name, handler, fake)


        def fake_output(job):
            return {"b": 2}


        def handle(job):
            return {"c": 3}


        def create_app():
            return make("x", handle, fake=fake_output)
        """
    )
    release, fault_switch = python_candidates("imageflow/agents/a.py", source)
    assert {m.line for m in fault_switch} == {2, 10}, "the hook's default and the hooked function"
    assert {2, 10}.isdisjoint(m.line for m in release)
    assert 14 in {m.line for m in release}, "the handler, passed positionally, is release code"


def test_a_fault_catalogue_is_fault_switch_only() -> None:
    catalogue = next(iter(FAULT_CATALOGUES))
    release, fault_switch = python_candidates(catalogue, 'BROKEN = "dashboard.broken"\n')
    assert (release, len(fault_switch)) == ([], 1)
    assert python_candidates("imageflow/dashboard/x.py", 'BROKEN = "dashboard.broken"\n')[1] == []


def test_the_fault_hooks_are_called_only_under_a_fault_switch() -> None:
    """FAULT_HOOKS is a proof, not a judgement: base.py calls each hook only where a switch guards it."""
    tree = ast.parse((REPO_ROOT / "imageflow" / "agents" / "base.py").read_text(encoding="utf-8"))
    nodes = guarded_nodes(tree)
    calls = {id(n.func) for n, _, _ in nodes if isinstance(n, ast.Call)}
    assigned = {
        id(n.value)
        for n, _, _ in nodes
        if isinstance(n, ast.Assign)
        and all(isinstance(t, ast.Attribute) and t.attr in FAULT_HOOKS for t in n.targets)
    }
    passed = {id(a) for n, _, _ in nodes if isinstance(n, ast.Call) for a in n.args}
    for hook in FAULT_HOOKS:
        reads = [(n, fault) for n, _, fault in nodes if isinstance(n, ast.Attribute) and n.attr == hook]
        loads = [(n, fault) for n, fault in reads if isinstance(n.ctx, ast.Load)]
        assert loads, f"base.py never calls .{hook}: FAULT_HOOKS is out of date"
        for node, fault in loads:
            assert fault, f"base.py line {node.lineno} uses .{hook} outside a fault switch"
            assert id(node) in calls, f"base.py line {node.lineno} hands .{hook} on instead of calling it"
        names = [
            n for n, _, _ in nodes if isinstance(n, ast.Name) and n.id == hook and isinstance(n.ctx, ast.Load)
        ]
        for name in names:
            assert id(name) in assigned | passed, f"base.py line {name.lineno} hands {hook} elsewhere"


def test_every_judged_equivalent_is_a_mutant_of_the_current_code() -> None:
    candidates = sample.collect(REPO_ROOT)
    stale = sample.stale_equivalents(candidates, sample.load_equivalent())
    assert not stale, f"equivalent.toml ids the current code no longer makes (re-judge them): {stale}"
    fault_switch = {m.id for m in candidates.fault_switch}
    judged = set(sample.load_equivalent())
    assert not judged & fault_switch, "fault-switch only mutants need no hand entry"


def test_a_stale_equivalent_is_named(tmp_path: Path) -> None:
    candidates = sample.collect(_tree(tmp_path))
    live = candidates.mutants[0].id
    assert sample.stale_equivalents(candidates, {live: "r", "a.py:1:constant:000000": "r"}) == [
        "a.py:1:constant:000000"
    ]


def test_kill_history_orders_a_file_s_killers_first(tmp_path: Path) -> None:
    path = tmp_path / "kills.json"
    assert history.load(path) == {}
    path.write_text("not json", encoding="utf-8")
    assert history.load(path) == {}, "a broken history is a missing hint, not an error"
    kills: history.History = {}
    history.record(
        kills, "imageflow/workflow.py", ["tests/e2e/test_a.py::test_x", "tests/e2e/test_b.py::test_y"]
    )
    history.record(kills, "imageflow/workflow.py", ["tests/e2e/test_b.py::test_y"])
    history.record(kills, "imageflow/workflow.py", ["deploy: the revision never got ready"])
    history.save(kills, path)
    again = history.load(path)
    assert history.killers(again, "imageflow/workflow.py") == (
        "tests/e2e/test_b.py::test_y",
        "tests/e2e/test_a.py::test_x",
    )
    assert history.killers(again, "imageflow/agents/exif.py") == ()


def test_the_order_plan_puts_killers_then_the_part_first() -> None:
    kills = {"imageflow/agents/exif.py": {"tests/e2e/test_agents.py::test_k": 2}}
    exif = Mutant("imageflow/agents/exif.py", 9, "constant", "d", Edit(0, 0, ""))
    plan = runner.part_plan(exif, kills, {"tests/e2e/test_login.py::test_x": 4.5})
    assert plan == Plan(("tests/e2e/test_agents.py::test_k",), (runner.PIPELINE_SCENARIO,), ("exif",))
    assert rank("tests/e2e/test_agents.py::test_k", [], plan) == (0, 0)
    assert rank("tests/e2e/test_agents.py::test_other", ["exif"], plan) == (1, 0.0)
    assert rank("tests/e2e/test_login.py::test_x", [], plan) == (2, 4.5), (
        "the rest by the clean run's seconds"
    )
    rules = runner.part_plan(Mutant("firestore.rules", 9, "rules-operator", "d", Edit(0, 0, "")), {})
    assert "tests/rules/" in rules.area
    for area in ("workflow", "dashboard", "agents", "rules"):
        assert runner.PART_TESTS[area], area


def test_the_order_plugin_reorders_and_keeps_every_test(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    agent(name): x\n", encoding="utf-8")
    (tmp_path / "test_x.py").write_text(
        textwrap.dedent(
            """\
            import pytest

            def test_a(): pass

            @pytest.mark.agent("exif")
            def test_b(): pass

            def test_c(): pass

            def test_d(): pass

            def test_e(): pass
            """
        ),
        encoding="utf-8",
    )
    seconds = {"test_x.py::test_a": 9.0, "test_x.py::test_c": 2.0, "test_x.py::test_e": 2.0}
    plan = Plan(("test_x.py::test_d",), (), ("exif",), seconds).write(tmp_path / "plan.json")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *("-p", "drills.mutation.order", "--mutation-order", str(plan), "-p", "no:cacheprovider"),
            *("--collect-only", "-q", "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini")),
            str(tmp_path / "test_x.py"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    order = [line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line]
    assert order == ["test_d", "test_b", "test_c", "test_e", "test_a"], done.stdout + done.stderr


def test_seconds_per_test_of_a_run(tmp_path: Path) -> None:
    lines = [
        {"nodeid": "t1", "when": "setup", "outcome": "passed", "at": 1.0, "duration": 1.0},
        {"nodeid": "t1", "when": "call", "outcome": "passed", "at": 3.0, "duration": 2.0},
        {"nodeid": "t2", "when": "setup", "outcome": "passed", "at": 3.5, "duration": 0.5},
    ]
    (tmp_path / "reports.jsonl").write_text(
        "\n".join(json.dumps(x) for x in lines) + "\n{cut", encoding="utf-8"
    )
    run = SuiteRun(0, 0.0, 4.0, output_dir=str(tmp_path))
    assert runner.seconds_per_test(run) == {"t1": 3.0, "t2": 0.5}


def test_suite_phases_split_a_run(tmp_path: Path) -> None:
    lines = [
        {"nodeid": "t1", "when": "setup", "outcome": "passed", "at": 104.0, "duration": 1.0},
        {"nodeid": "t1", "when": "call", "outcome": "failed", "at": 110.0, "duration": 6.0},
    ]
    (tmp_path / "reports.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    run = SuiteRun(2, 100.0, 115.0, {"t1": CaseOutcome("t1", "failed", 110.0)}, output_dir=str(tmp_path))
    assert runner.suite_phases(run) == {"suite_startup": 3.0, "tests_to_verdict": 7.0, "suite_stop": 5.0}
    empty = SuiteRun(4, 100.0, 102.0, output_dir=str(tmp_path / "none"))
    assert runner.suite_phases(empty) == {"suite_startup": 2.0}


def test_report_shows_seconds_budget_and_fault_switch_counts(tmp_path: Path) -> None:
    results = [_result("killed"), _result("survived"), _result("equivalent"), _result("not-run")]
    results[3].reason = "the time budget was spent"
    results[0].seconds, results[0].phases = 20.0, {"deploy": 5.0}
    results[1].seconds, results[1].phases = 100.0, {"deploy": 7.0}
    fault_switch = {
        "count": 2,
        "per_area": {"agents": 2},
        "by_file": {"imageflow/agents/a.py": ["a.py:3:x:1", "a.py:4:x:2"]},
    }
    meta = {
        "seconds": 600,
        "budget_minutes": 15,
        "fault_switch_only": fault_switch,
        "stale_equivalents": ["s:1"],
    }
    path = report.write(tmp_path / "m.json", results, meta)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["score"]["agents"]["seconds"] == {"median": 60.0, "max": 100.0}
    assert doc["phases"] == {"killed": {"deploy": 5.0}, "survived": {"deploy": 7.0}}
    summary = path.with_suffix(".md").read_text(encoding="utf-8")
    assert "wall time 10.0 min of a 15-min budget" in summary
    assert "Median seconds per phase, survived mutants: deploy 7 s." in summary
    assert "| agents | 1 / 2 | 50 % | 1 | 0 | 1 | 2 | 0 / 0 / 1 | 60, 100 |" in summary
    assert "## Fault-switch only, not sampled (2)" in summary
    assert "Not run: 1 (the time budget was spent)." in summary
    assert "re-judge them): s:1" in summary


def test_the_suite_bound_follows_the_clean_run_unless_asked() -> None:
    assert runner.suite_bound(None, None) == runner.MUTANT_SUITE_TIMEOUT
    assert runner.suite_bound(None, 100.0) == 260.0
    assert runner.suite_bound(None, 400.0) == runner.MUTANT_SUITE_TIMEOUT
    assert runner.suite_bound(90.0, 100.0) == 90.0


def test_a_mutant_starts_only_while_a_whole_suite_run_fits_the_budget() -> None:
    assert runner.out_of_budget(None, 10_000.0, 100.0) is None
    assert runner.out_of_budget(15, 700.0, 190.0) is None
    assert "less than one whole suite run (190 s)" in (runner.out_of_budget(15, 750.0, 190.0) or "")
    assert runner.out_of_budget(15, 901.0, None) == "the time budget was spent"
    assert runner.out_of_budget(15, 800.0, None) is None


def test_the_suite_keeps_bytecode_only_while_it_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    with runner.suite_bytecode(tmp_path / "cache"):
        probe = [sys.executable, "-c", "import sys; print(sys.dont_write_bytecode, sys.pycache_prefix)"]
        seen = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()
        assert seen == ["False", str(tmp_path / "cache")], "a child of the suite writes to the private cache"
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1", "a service deployed after the suite keeps its env"
    assert "PYTHONPYCACHEPREFIX" not in os.environ


def test_a_survivor_is_one_only_against_the_whole_clean_run() -> None:
    whole, short, killed = _result("survived"), _result("survived"), _result("killed")
    whole.tests, short.tests, killed.tests = 193, 150, 2
    for result in (whole, short, killed):
        runner.whole_suite(result, 193)
    assert (whole.status, short.status, killed.status) == ("survived", "broken", "killed")
    assert short.reason == "green, but only 150 of the clean run's 193 tests reported"
    unknown = _result("survived")
    runner.whole_suite(unknown, None)
    assert unknown.status == "survived", "without a baseline there is nothing to hold it to"
