"""`headrank serve --ray` on a local Ray instance on loopback: two replicas answer exactly like one process under
a bounded concurrent load, a replica killed mid-load yields only correct answers or clear errors and is
replaced, SIGTERM drains and stops everything. Plus the options, the config file and the missing extra."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_serve import DOCS, HEADS, _free_port, tiny_dir  # noqa: F401 (tiny_dir: the fixture)

httpx = pytest.importorskip("httpx")
pytest.importorskip("ray.serve")

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["query about solar power", "pasta and italy", "music by the river", "chess for beginners",
           "wind at sea", "roofs"]


class RayServer:
    def __init__(self, model: str, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "headrank.cli", "serve", "--ray", "--model", model, "--port", str(self.port),
               "--device", "cpu", *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HEADRANK_API_KEY": "", "RAY_USAGE_STATS_ENABLED": "0"}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"ray-serve-{self.port}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 240
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray serve exited: {self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ray serve not ready in 240 s: {self.output()[-3000:]}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def local(tiny_dir):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(str(tiny_dir), heads=HEADS, device="cpu")


def _pids(url: str, want: int = 2, rounds: int = 10) -> set[int]:
    """The replicas' process ids seen from /info, polling with concurrent rounds until ``want`` have answered
    (Ray Serve's router may send one quick round to one replica)."""
    async def run():
        seen: set[int] = set()
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(rounds):
                answers = await asyncio.gather(*(client.get(f"{url}/info") for _ in range(16)))
                seen |= {a.json()["process"]["pid"] for a in answers if a.status_code == 200}
                if len(seen) >= want:
                    break
                await asyncio.sleep(0.2)
        return seen

    return asyncio.run(run())


def _load(url: str, expected: dict, total: int, concurrency: int, during=None) -> dict:
    """``total`` rerank requests, ``concurrency`` at a time; counts correct answers, wrong ones (a 200 whose
    scores differ from one process's) and errors by status; ``during`` runs once a third have gone out."""
    tally = {"ok": 0, "wrong": 0, "errors": {}}

    async def one(client, k: int) -> None:
        query = QUERIES[k % len(QUERIES)]
        try:
            r = await client.post(f"{url}/v1/rerank", json={"query": query, "documents": DOCS, "raw_scores": True})
        except httpx.HTTPError as err:
            tally["errors"][type(err).__name__] = tally["errors"].get(type(err).__name__, 0) + 1
            return
        if r.status_code != 200:
            tally["errors"][r.status_code] = tally["errors"].get(r.status_code, 0) + 1
            return
        got = {row["index"]: row["relevance_score"] for row in r.json()["results"]}
        same = all(abs(got[i] - s) <= 1e-5 for i, s in expected[query].items()) and len(got) == len(DOCS)
        tally["ok" if same else "wrong"] += 1

    async def run() -> None:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=60) as client:
            async def bounded(k):
                async with sem:
                    if during is not None and k == total // 3:
                        await asyncio.to_thread(during)
                    await one(client, k)
            await asyncio.gather(*(bounded(k) for k in range(total)))

    asyncio.run(run())
    return tally


def test_two_replicas_answer_like_one_process_survive_a_killed_replica_and_drain(tiny_dir, local):
    expected = {q: {r.corpus_id: r.score for r in local.rank(q, DOCS)} for q in QUERIES}
    server = RayServer(str(tiny_dir), "--heads", HEADS, "--replicas", "2", "--replica-cpus", "0.5",
                       "--timeout", "30")
    try:
        pids = _pids(server.url)
        assert len(pids) == 2, pids  # both replicas answer
        tally = _load(server.url, expected, total=60, concurrency=8)
        assert tally == {"ok": 60, "wrong": 0, "errors": {}}, tally
        victim = min(pids)
        tally = _load(server.url, expected, total=60, concurrency=8, during=lambda: os.kill(victim, signal.SIGKILL))
        print("after a replica was killed:", tally)
        assert tally["wrong"] == 0, tally  # a request is answered correctly or fails with a status, never wrongly
        assert tally["ok"] + sum(tally["errors"].values()) == 60
        assert all(isinstance(k, int) and k >= 500 for k in tally["errors"]), tally  # clear server errors
        deadline = time.time() + 120  # Ray Serve replaces the dead replica
        while time.time() < deadline:
            now = _pids(server.url, rounds=3)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(2)
        assert len(now) == 2 and victim not in now, now
        assert _load(server.url, expected, total=24, concurrency=6) == {"ok": 24, "wrong": 0, "errors": {}}
        replicas = now
    finally:
        code = server.stop()
    assert code == 0, server.output()[-3000:]
    assert "draining" in server.output()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/health", timeout=2)
    for pid in replicas:  # no replica outlives the service
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ray_options_and_deployment_settings():
    from headrank.serve.config import ServeConfig
    from headrank.serve.ray_serve import RayOptions

    config = ServeConfig(max_queue=10, max_batch_lists=2, request_timeout_s=30)
    fixed = RayOptions(replicas=3, replica_gpus=0.5).deployment_options(config)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert fixed["max_ongoing_requests"] == 12 and fixed["graceful_shutdown_timeout_s"] == 30
    auto = RayOptions(replicas=1, min_replicas=2, max_replicas=4, target_ongoing_requests=3).deployment_options(config)
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 4, "initial_replicas": 2,
                                          "target_ongoing_requests": 3}
    for bad in ({"replicas": 0}, {"min_replicas": 1}, {"min_replicas": 3, "max_replicas": 2},
                {"min_replicas": 0, "max_replicas": 0}, {"target_ongoing_requests": 0}, {"replica_gpus": -1}):
        with pytest.raises(ValueError):
            RayOptions(**bad)


def test_bad_ray_options_fail_before_ray_starts(tiny_dir):
    from typer.testing import CliRunner

    from headrank.cli import app

    started = time.time()
    result = CliRunner().invoke(app, ["serve", "--ray", "--model", str(tiny_dir), "--heads", HEADS,
                                      "--min-replicas", "3", "--max-replicas", "2"])
    assert result.exit_code == 2 and "min_replicas <= max_replicas" in result.output
    assert "Traceback" not in result.output and time.time() - started < 60


def test_missing_ray_serve_names_the_extra():
    code = ("import sys; sys.modules['ray.serve'] = None\n"
            "from typer.testing import CliRunner\nfrom headrank.cli import app\n"
            "r = CliRunner().invoke(app, ['serve', '--ray'])\nprint(r.exit_code, r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("2 ") and "pip install 'headrank[ray-serve]'" in " ".join(out.split()), out


def test_the_ray_serve_config_file_builds_the_app():
    """deploy/ray-serve.yaml (for `serve run` / `serve deploy`): its import path and args build the application
    with the same options as the command line."""
    import importlib

    import yaml

    spec = yaml.safe_load((ROOT / "deploy" / "ray-serve.yaml").read_text())
    app_spec = spec["applications"][0]
    module, name = app_spec["import_path"].split(":")
    builder = getattr(importlib.import_module(module), name)
    application = builder(app_spec["args"])
    assert type(application).__name__ == "Application"
    assert spec["http_options"]["port"] == 8000
    with pytest.raises(ValueError, match="unknown headrank args: nope"):
        builder({"nope": 1})
