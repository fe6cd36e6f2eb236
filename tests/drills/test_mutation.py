"""The mutation tool's own logic: operators, rules mutants, equivalence, sampling, report, refusals."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import allure
import pytest

from drills import report as drill_report
from drills.mutation import __main__ as mutation_main
from drills.mutation import imports, report, runner, sample
from drills.mutation.model import Edit, Mutant
from drills.mutation.operators import python_equivalence, python_mutants
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
    assert "survived-agents (survived)" in summary
    assert "timeout-agents (timeout)" in summary
    assert "killed-agents (" not in summary
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
    lines = {m.line for m in python_mutants("imageflow/agents/a.py", source)}
    assert lines == {5, 7, 8}, "only the release side of each fault switch is mutated"
    assert all("slow" not in m.description for m in python_mutants("imageflow/agents/a.py", source))


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
    lines = {m.line for m in python_mutants("imageflow/agents/a.py", source)}
    assert lines == {10, 16}, "the fault-only helpers (lines 2 and 6) must not be mutated"


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
    assert set(runner.SELF_TESTS) <= set(gate.paths)
    assert gate.paths[-len(runner.SELF_TESTS) :] == runner.SELF_TESTS, "the suite's own tests run last"
    assert not gate.keep
    assert not gate.keep_agents
    assert runner.mutant_selection(REPO_ROOT, rules_mutant, "gate").paths[0] == "tests/rules"
    area = runner.mutant_selection(REPO_ROOT, exif_mutant, "area")
    assert area.keep_agents == ("exif",)
    assert not set(runner.SELF_TESTS) & set(area.paths)
