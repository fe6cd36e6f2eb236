"""`python -m drills.mutation`: mutation testing of a commit of the reference system in a private copy.

    python -m drills.mutation [--rev HEAD] [--report PATH] [--list] [--count N] [--seed S] [--tests gate|area]
        [--budget-minutes N] [--timeout S] [--history PATH]

Makes (or reuses) a git worktree of the commit under /tmp/imageflow-mutation/<commit>, never the
tree it is started from (others may be editing it), puts this tool's own drills/mutation in it
(so every commit is measured by the same mutator), and runs drills.mutation.runner there against
a stack of its own. The report (JSON and .md) goes to this tree's reports/mutation/, and is copied
to reports/mutation/latest.json, which the fault drill's report shows beside its switches. The kill
history (reports/mutation/kills.json, this tree's) orders each mutant's tests and is updated by the run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from drills.mutation import history, report
from drills.mutation.report import LATEST
from drills.mutation.runner import MARKER
from drills.mutation.sample import EQUIVALENT_FILE, SampleError, load_equivalent
from stack.state import REPO_ROOT

WORK_ROOT = Path("/tmp/imageflow-mutation")
REPORTS = REPO_ROOT / "reports" / "mutation"
PACKAGE = Path(__file__).resolve().parent
# Shared, read-only parts of a tree a work copy links to instead of copying.
LINKED = ("node_modules", ".venv")


class PrepareError(RuntimeError):
    """The work copy could not be made (the message says why)."""


def _git(*args: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PrepareError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def work_copy(rev: str, root: Path = WORK_ROOT) -> Path:
    """A private worktree of rev with this tool in it; an existing one is reused only at that commit."""
    commit = _git("rev-parse", "--short=7", f"{rev}^{{commit}}")
    path = root / commit
    if path.exists():
        head = _git("rev-parse", "--short=7", "HEAD", cwd=path)
        if head != commit:
            raise PrepareError(
                f"{path} is at {head}, not {commit}: remove it with `git worktree remove {path}`"
            )
    else:
        root.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", str(path), commit)
    for name in LINKED:
        link = path / name
        if not link.exists() and (REPO_ROOT / name).exists():
            link.symlink_to(REPO_ROOT / name)
    shutil.copytree(
        PACKAGE,
        path / "drills" / "mutation",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (path / MARKER).write_text(f"mutation work copy of {commit}, made from {REPO_ROOT}\n", encoding="utf-8")
    return path


def rescore(path: Path, equivalent: Path = EQUIVALENT_FILE) -> Path:
    """Apply the equivalent list to an earlier report (a survivor judged equivalent after the run)."""
    doc = report.read(path)
    if "mutants" not in doc:
        raise PrepareError(f"{path} is not a mutation report")
    judged = load_equivalent(equivalent)
    results = [report.MutantResult(**m) for m in doc.pop("mutants")]
    for result in results:
        # A killed mutant is proof it was not equivalent: its judgement is left for a person to fix.
        if result.id in judged and result.status in (report.SURVIVED, report.TIMEOUT, report.NOT_RUN):
            ran = "" if result.status == report.NOT_RUN else f" (ran: {result.status})"
            result.reason = judged[result.id] + ran
            result.status = report.EQUIVALENT
    doc.pop("score", None)
    return report.write(path, results, doc)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This command's options; everything else goes to the runner."""
    parser = argparse.ArgumentParser(prog="python -m drills.mutation", description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the commit to measure (default HEAD)")
    parser.add_argument(
        "--report", type=Path, default=None, help="default reports/mutation/mutation-<commit>.json"
    )
    parser.add_argument(
        "--rescore", type=Path, default=None, help="apply the equivalent list to this report; exit"
    )
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the work copy and run the mutants there; the runner's exit code."""
    args, rest = parse_args(argv)
    if args.rescore is not None:
        try:
            print(report.score_line(report.read(rescore(args.rescore))))
        except (PrepareError, SampleError) as exc:
            print(f"mutation: {exc}", file=sys.stderr)
            return 2
        return 0
    if Path.cwd().resolve() == WORK_ROOT or WORK_ROOT in Path.cwd().resolve().parents:
        print("mutation: start it from the project's tree, not from a work copy", file=sys.stderr)
        return 2
    try:
        path = work_copy(args.rev)
    except PrepareError as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    target = (args.report or REPORTS / f"mutation-{path.name}.json").resolve()
    command = "python -m drills.mutation " + " ".join(sys.argv[1:] if argv is None else argv)
    runner = [
        sys.executable,
        "-m",
        "drills.mutation.runner",
        "--report",
        str(target),
        "--command",
        command,
        "--history",
        str(history.HISTORY),
        *rest,
    ]
    print(f"mutation: work copy {path}", flush=True)
    code = subprocess.run(runner, cwd=path, check=False).returncode
    if target.exists() and "--list" not in rest:
        LATEST.parent.mkdir(parents=True, exist_ok=True)
        if target != LATEST:
            shutil.copyfile(target, LATEST)
            shutil.copyfile(target.with_suffix(".md"), LATEST.with_suffix(".md"))
    return code


if __name__ == "__main__":
    sys.exit(main())
