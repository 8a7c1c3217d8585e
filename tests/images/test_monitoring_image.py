"""The drift-check image (images/monitoring/Dockerfile), checked without a Docker engine (main environment).

hadolint lints it; its contract is read from its instructions (exact base tag, the monitoring lock file,
the project installed non-editable, a non-root user, ``python3`` = the copied environment); the lock file
is checked to pin every package exactly and to hold TFDV with the protobuf it needs; the build context is
checked to carry the monitoring code. The Dockerfile readers come from the pipeline image's test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.images.test_pipeline_image import (
    BASE_IMAGE,
    DockerIgnore,
    _hadolint,
    env_values,
    parse_dockerfile,
    split_stages,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "monitoring" / "Dockerfile"
PIPELINE_DOCKERFILE = ROOT / "images" / "pipeline" / "Dockerfile"
LOCK = "monitoring/requirements.txt"


@pytest.fixture(scope="module")
def stages():
    return split_stages(parse_dockerfile(DOCKERFILE.read_text()))


def _pins(path: Path) -> dict[str, str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("-")]
    loose = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s]+", r)]
    assert not loose, f"{path.name}: not pinned exactly: {loose}"
    return {r.split("==")[0].lower().replace("_", "-"): r.split("==")[1] for r in reqs}


def test_hadolint_passes_on_the_monitoring_dockerfile():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_base_image_is_exact_and_the_same_as_the_pipeline_image(stages):
    pipeline_base = split_stages(parse_dockerfile(PIPELINE_DOCKERFILE.read_text()))[-1][0].args.split()[0]
    for stage in stages:
        image = stage[0].args.split()[0]
        assert BASE_IMAGE.fullmatch(image.split("@")[0]), f"line {stage[0].line}: {image} is not an exact tag"
        assert image == pipeline_base, "one Python patch release for both images"


def test_installs_the_monitoring_lock_then_the_project_non_editable(stages):
    instructions = [ins for stage in stages for ins in stage]
    runs = [ins.args for ins in instructions if ins.keyword == "RUN"]
    copies = [ins.args.split() for ins in instructions if ins.keyword == "COPY" and "--from" not in ins.args]
    assert any(LOCK in args[:-1] for args in copies), f"{LOCK} is never copied in"
    assert any(re.search(rf"pip install\b.*(?:-r|--requirement)[ =]{re.escape(LOCK)}\b", r) for r in runs)
    project = [r for r in runs if re.search(r"pip install\b[^&;|]*\s\.(\s|$)", r)]
    assert project and "--no-deps" in project[0], "the project is installed with --no-deps (the lock has the deps)"
    assert not any(re.search(r"(^|\s)(-e|--editable)(\s|=)", r) for r in project)
    assert not any(ins.keyword == "ADD" for ins in instructions), "use COPY, not ADD"


def test_runtime_stage_is_non_root_and_imports_the_check(stages):
    final = stages[-1]
    users = [ins.args for ins in final if ins.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    env = env_values(final)
    venvs = [ins.args.split()[-1] for ins in final if ins.keyword == "COPY" and "--from" in ins.args]
    assert env.get("PATH", "").split(":")[0] in {f"{v.rstrip('/')}/bin" for v in venvs}, env.get("PATH")
    assert env.get("PYTHONUNBUFFERED") == "1"
    smoke = " ".join(ins.args for ins in final if ins.keyword == "RUN")
    for module in ("tensorflow_data_validation", "scipy.stats", "sklearn.metrics", "monitoring.drift_check",
                   "monitoring.report", "churn.schema"):
        assert module in smoke, f"the build does not check that {module} imports"


def test_lock_pins_tfdv_with_what_it_needs():
    pins = _pins(ROOT / LOCK)
    assert pins["tensorflow-data-validation"] == "1.16.1", "1.17+ have no wheel for glibc 2.36"
    assert int(pins["protobuf"].split(".")[0]) < 6
    assert int(pins["pandas"].split(".")[0]) < 2 and int(pins["pyarrow"].split(".")[0]) < 11
    assert pins["tensorflow"].startswith("2.16.")
    for needed in ("dill", "google-cloud-storage", "pytest", "scipy", "scikit-learn"):
        assert needed in pins, f"{needed} missing from {LOCK}"
    direct = [ln.split("#")[0].strip() for ln in (ROOT / "monitoring" / "requirements.in").read_text().splitlines()]
    for requirement in filter(None, direct):
        name = re.split(r"[<>=!~\[ ]", requirement)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is in requirements.in but not in the lock: run the uv pip compile in its header"


def test_build_context_carries_the_monitoring_code():
    ignore = DockerIgnore.read(ROOT / ".dockerignore")
    for path in ("monitoring/requirements.txt", "monitoring/drift_check.py", "monitoring/drift.py",
                 "monitoring/report.py", "monitoring/trigger.py", "churn/schema.py", "pyproject.toml",
                 "images/monitoring/Dockerfile"):
        assert not ignore.ignored(path), f"{path} is excluded from the build context"
    for path in (".venv-monitoring/bin/python", "data/monitoring/drift_summary.csv", "tests/monitoring/synthetic.py"):
        assert ignore.ignored(path), f"{path} would be sent to the Docker build"
