"""What a platform team takes: the Dockerfile's steps run for real (the same install script into a fresh virtual
environment, the same model fetch, the same serve command, on loopback), and the Kubernetes manifest's ports,
probes and arguments agree with the service's own options and routes."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
SMALL = "headrank-smollm2-135m"


def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> arguments, continuation lines joined, comments dropped."""
    out: dict[str, list[str]] = {}
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word, []).append(rest.strip())
    return out


def _serve_options() -> set[str]:
    """Every --option of `headrank serve`, from the command itself."""
    import typer.main

    from headrank.cli import app

    command = typer.main.get_command(app).commands["serve"]
    return {opt for p in command.params for opt in p.opts + p.secondary_opts}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@pytest.mark.slow  # a fresh venv and a full install: over a minute on 2 cores (make test-slow runs it)
def test_the_images_steps_install_fetch_and_serve(tmp_path):
    docker = _dockerfile()
    assert docker["RUN"] == ['TORCH_SPEC="${TORCH_SPEC}" sh deploy/install.sh', 'headrank presets --fetch "${PRESET}"']
    assert docker["COPY"] == ["pyproject.toml README.md ./", "src ./src", "deploy/install.sh ./deploy/install.sh"]
    context = tmp_path / "image"  # what the COPY lines put in the image
    (context / "deploy").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "deploy/install.sh"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {**os.environ, "PYTHON": str(bin_dir / "python"), "TORCH_SPEC": "torch==2.13.0", "PYTHONPATH": ""}
    install = subprocess.run(["sh", "deploy/install.sh"], cwd=context, env=env, capture_output=True, text=True,
                             timeout=1500)
    assert install.returncode == 0, install.stderr[-3000:]
    fetch = subprocess.run([str(bin_dir / "headrank"), "presets", "--fetch", SMALL], capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
    assert fetch.returncode == 0 and "base model cached at" in fetch.stderr, fetch.stderr[-2000:]
    cmd = docker["CMD"][0]
    assert 'exec headrank serve --model \\"${PRESET}\\" --host 0.0.0.0 --port 8000' in cmd
    port = _free_port()  # the image's command, on loopback here
    server = subprocess.Popen([str(bin_dir / "headrank"), "serve", "--model", SMALL, "--host", "127.0.0.1",
                               "--port", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "HEADRANK_OFFLINE": "1", "HEADRANK_API_KEY": "", "PYTHONPATH": ""})
    try:
        deadline, status = time.time() + 180, None
        while time.time() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.5)
        assert status == 200
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", timeout=120,
                            json={"query": "solar power", "documents": ["solar panels", "pasta"]})
        assert answer.status_code == 200 and len(answer.json()["results"]) == 2
    finally:
        server.send_signal(signal.SIGTERM)  # uvicorn drains, then re-raises the signal: exit status -SIGTERM
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)


def test_the_kubernetes_manifest_matches_the_service():
    from headrank.serve import ServeConfig, create_app

    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["headrank", "serve"]
    options = _serve_options()
    flags = [a for a in args[2:] if a.startswith("--")]
    assert flags and all(f in options for f in flags), set(flags) - options
    port = int(args[args.index("--port") + 1])
    assert args[args.index("--host") + 1] == "0.0.0.0"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": port}
    routes = set(create_app(ServeConfig()).openapi()["paths"])
    assert "/health" in routes and "/v1/rerank" in routes
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes and get["path"] == "/health"
        assert named.get(get["port"], get["port"]) == port
    timeout = float(args[args.index("--timeout") + 1])
    drain = float(args[args.index("--drain-seconds") + 1]) if "--drain-seconds" in args else 0.0
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain + timeout
    assert service["spec"]["ports"][0]["targetPort"] in ("http", port)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    env = {e["name"] for e in container["env"]}
    assert "HEADRANK_API_KEY" in env  # the key from a Secret, never in the manifest


def test_health_is_503_until_loaded_and_while_shutting_down():
    """What the probes rely on, on the app itself: 503 while the model loads, 200 when ready, 503 when stopping."""
    from fastapi.testclient import TestClient

    from headrank.serve import ServeConfig, create_app

    app = create_app(ServeConfig(model="/nonexistent/model"))
    service = app.state.service
    client = TestClient(app)
    assert client.get("/health").status_code == 503  # no model yet
    service.ranker = object()
    assert client.get("/health").status_code == 200
    service.shutting_down = True
    assert client.get("/health").status_code == 503
