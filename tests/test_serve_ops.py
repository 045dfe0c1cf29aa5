"""What an operator relies on (issue 44): a drain window on SIGTERM, JSON logs on every stderr line, /metrics
opened to a scraper by an explicit option, Retry-After from the queue, docs with nothing from a CDN, and the
whole service behind a reverse proxy with a path prefix (``--root-path``). Loopback only."""

import asyncio
import http.server
import json
import re
import signal
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from test_serve import DOCS, HEADS, Server  # noqa: E402

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, llama_tokenizer):
    from conftest import tiny_llama

    path = tmp_path_factory.mktemp("ops") / "tiny"
    tiny_llama().save_pretrained(path)
    llama_tokenizer.save_pretrained(path)
    return path


def test_drain_window_json_logs_and_open_metrics(tiny_dir):
    s = Server(str(tiny_dir), "--heads", HEADS, "--api-key", "s3cret", "--metrics-open", "--json-logs",
               "--drain-seconds", "3")
    key = {"Authorization": "Bearer s3cret"}
    try:
        assert httpx.get(f"{s.url}/metrics").status_code == 200  # opened by --metrics-open
        assert httpx.get(f"{s.url}/info").status_code == 401  # the rest still needs the key
        assert httpx.post(f"{s.url}/v2/rerank", json={"query": "q", "documents": DOCS}, headers=key).status_code == 200
        s.proc.send_signal(signal.SIGTERM)
        statuses, served = [], []
        deadline = time.time() + 20
        while time.time() < deadline and s.proc.poll() is None:
            try:
                health = httpx.get(f"{s.url}/health", timeout=2)
                statuses.append((health.status_code, health.json().get("message", "")))
                if health.status_code == 503:
                    served.append(httpx.post(f"{s.url}/v2/rerank", json={"query": "q", "documents": DOCS},
                                             headers=key, timeout=10).status_code)
            except httpx.HTTPError:
                break  # the listener closed after the drain
            time.sleep(0.2)
        assert (503, "draining: the server is shutting down") in statuses
        assert served and set(served) == {200}  # requests are still answered while the health check fails
        assert s.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        s.stop()
    lines = s.proc.stdout.read().decode().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line, banner and model loading included
    assert all(ISO_MS.match(r["time"]) for r in records), records[:3]
    assert any("headrank serve:" in r["message"] for r in records)
    assert any("draining for 3 s" in r["message"] for r in records)


def test_retry_after_follows_the_queue():
    from headrank.serve.metrics import Metrics
    from headrank.serve.queue import BatchQueue
    from headrank.serve.schemas import ServiceError

    async def run():
        queue = BatchQueue(lambda key, payloads: list(payloads), max_queue=4, max_batch=2, wait_ms=0,
                           metrics=Metrics())
        for i in range(4):
            queue.submit("k", i)
        with pytest.raises(ServiceError) as untimed:
            queue.submit("k", 4)
        queue.seconds_per_batch = 2.5
        with pytest.raises(ServiceError) as timed:
            queue.submit("k", 5)
        return untimed.value, timed.value

    untimed, timed = asyncio.run(run())
    assert untimed.status == 429 and untimed.headers["Retry-After"] == "1"  # nothing timed yet
    assert timed.headers["Retry-After"] == "5" and "about 5 s" in timed.message  # 2 batches ahead x 2.5 s


class _Proxy(http.server.ThreadingHTTPServer):
    """A reverse proxy on loopback that serves the backend under /hr and strips the prefix, like nginx's
    ``location /hr/ { proxy_pass http://backend/; }``."""

    def __init__(self, backend: str) -> None:
        backend_url = backend

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if not self.path.startswith("/hr/"):
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.request(self.command, backend_url + self.path[3:], content=body, headers=headers)
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def test_docs_playground_and_api_behind_a_path_prefix_load_nothing_from_a_cdn(tiny_dir):
    s = Server(str(tiny_dir), "--heads", HEADS, "--root-path", "/hr")
    proxy = _Proxy(s.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    base = f"{proxy.url}/hr"
    try:
        for page in ("/docs", "/redoc"):
            answer = httpx.get(base + page)
            assert answer.status_code == 200 and "default-src 'self'" in answer.headers["content-security-policy"]
            refs = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", answer.text)
            assert refs and all(r.startswith("/hr/") for r in refs), refs
            for ref in refs:
                asset = httpx.get(proxy.url + ref)
                assert asset.status_code == 200, ref
                assert "cdn.redoc.ly" not in asset.text and "cdn.jsdelivr" not in asset.text, ref
        schema = httpx.get(f"{base}/openapi.json").json()
        assert schema["servers"] == [{"url": "/hr"}]
        ranked = httpx.post(f"{base}/v2/rerank", json={"query": "q", "documents": DOCS})
        assert ranked.status_code == 200 and len(ranked.json()["results"]) == len(DOCS)
        bad = httpx.post(f"{base}/rerank", json={"query": "q", "texts": []})  # TEI's envelope under the prefix
        assert bad.status_code == 400 and bad.json()["error_type"] == "Validation"
        page = httpx.get(f"{base}/")
        assert page.status_code == 200
        calls = re.findall(r"""fetch\(\s*["']([^"']+)["']""", page.text)
        assert calls and not [c for c in calls if c.startswith(("/", "http"))]  # relative: they follow the prefix
        for call in calls:
            assert httpx.request("POST" if "explain" in call else "GET", f"{base}/{call}",
                                 json={"query": "q", "documents": DOCS[:2]}).status_code == 200, call
        metrics = httpx.get(f"{s.url}/metrics").text
        assert 'route="/v2/rerank"' in metrics  # route labels without the prefix
    finally:
        proxy.shutdown()
        s.stop()


def test_bad_ops_options_are_clear_errors(tiny_dir):
    import subprocess
    import sys

    for args, message in ((["--root-path", "hr/"], "root_path must look like /prefix"),
                          (["--drain-seconds", "-1"], "drain-seconds")):
        done = subprocess.run([sys.executable, "-m", "headrank.cli", "serve", "--model", str(tiny_dir), "--heads",
                               HEADS, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_the_batched_vs_solo_benchmark_runs(tiny_dir):
    """benchmarks/batched_vs_solo.py (README's measured sentence), on the tiny model: lists of different lengths
    in one padded batch keep their order, and the difference it reports is the real one (small, not forced 0)."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("batched_vs_solo", REPO / "benchmarks" / "batched_vs_solo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lists = [DOCS[: 2 + i] for i in range(4)]
    row = module.measure(str(tiny_dir), [f"query {i} about solar" for i in range(4)], lists, heads=HEADS)
    assert row["same_order"] is True and 0.0 <= row["max_abs_difference"] < 1e-4
