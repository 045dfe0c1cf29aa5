"""`headrank serve`: the real server in a subprocess on a free loopback port, called with a real HTTP client.

The servers run a tiny random Llama with a two-head set (fast); what is checked is the service: shapes of
every route, validation and error envelopes, limits, API key, batching invariance, a bounded load test and
the official Cohere client.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from conftest import tiny_llama  # noqa: E402

HEADS = "1:0,2:3"
DOCS = ["solar panels on roofs make power", "pasta recipes from italy", "wind farms at sea", "river music",
        "chess openings for beginners"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: str, *extra: str, ready: bool = True) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "headrank.cli", "serve", "--model", model, "--port", str(self.port),
               "--device", "cpu", *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HEADRANK_API_KEY": ""}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()[-2000:]}")
            try:
                status = httpx.get(f"{self.url}/health", timeout=2).status_code
                if status == 200 or (not ready and status == 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not become ready in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, llama_tokenizer):
    path = tmp_path_factory.mktemp("serve") / "tiny"
    tiny_llama().save_pretrained(path)
    llama_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(tiny_dir):
    s = Server(str(tiny_dir), "--heads", HEADS, "--max-documents", "40", "--max-document-chars", "2000",
               "--max-body-bytes", "60000", "--max-batch", "8", "--batch-wait-ms", "20")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def local(tiny_dir):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(str(tiny_dir), heads=HEADS, device="cpu")


def _expected(local, query, docs):
    return {r.corpus_id: r.score for r in local.rank(query, docs)}


def test_health_info_models_metrics(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server.url}/info").json()
    assert info["ready"] and info["method"] == "heads" and info["heads"] == [[1, 0], [2, 3]]
    assert info["limits"]["max_documents"] == 40 and "min-max" in info["scores"]
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert httpx.get(f"{server.url}/openapi.json").json()["paths"].keys() >= {"/v1/rerank", "/v2/rerank", "/rerank"}


@pytest.mark.parametrize("route", ["/v1/rerank", "/v2/rerank"])
def test_cohere_jina_shape_and_scores(server, local, route):
    body = {"model": "rerank-v3.5", "query": "query about solar", "documents": DOCS}
    out = httpx.post(f"{server.url}{route}", json=body).json()
    assert out["id"] and out["model"] and out["usage"]["prompt_tokens"] > 0
    assert sorted(r["index"] for r in out["results"]) == list(range(len(DOCS)))
    scores = [r["relevance_score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and scores[-1] == 0.0
    assert all("document" not in r for r in out["results"])  # absent, not null, unless asked for
    raw = httpx.post(f"{server.url}{route}", json={**body, "raw_scores": True, "top_n": 3,
                                                    "return_documents": True}).json()["results"]
    expected = _expected(local, body["query"], DOCS)
    assert len(raw) == 3
    for r in raw:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-6)
        assert r["document"] == {"text": DOCS[r["index"]]}
    assert [r["index"] for r in raw] == [r["index"] for r in out["results"][:3]]  # same order as in-process
    objects = [{"text": d, "title": f"t{i}"} for i, d in enumerate(DOCS[:2])]
    with_docs = httpx.post(f"{server.url}{route}", json={"query": "q", "documents": objects,
                                                          "return_documents": True}).json()
    assert {r["document"]["title"] for r in with_docs["results"]} == {"t0", "t1"}


def test_tei_shape(server, local):
    out = httpx.post(f"{server.url}/rerank", json={"query": "query about solar", "texts": DOCS[:3],
                                                    "return_text": True, "raw_scores": True}).json()
    assert isinstance(out, list) and sorted(r["index"] for r in out) == [0, 1, 2]
    expected = _expected(local, "query about solar", DOCS[:3])
    for r in out:
        assert r["text"] == DOCS[r["index"]] and r["score"] == pytest.approx(expected[r["index"]], abs=1e-6)
    plain = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": DOCS[:3]}).json()
    assert all("text" not in r and 0.0 <= r["score"] <= 1.0 for r in plain)


BAD = [
    ("/v2/rerank", {"query": "  ", "documents": DOCS}, 400, "query is empty"),
    ("/v2/rerank", {"query": "q", "documents": []}, 400, "documents is empty"),
    ("/v2/rerank", {"documents": DOCS}, 422, "query"),
    ("/v2/rerank", {"query": "q", "documents": "one string"}, 422, "documents"),
    ("/v2/rerank", {"query": "q", "documents": [{"title": "no text"}]}, 422, "text"),
    ("/v2/rerank", {"query": "q", "documents": DOCS, "top_n": 0}, 422, "top_n"),
    ("/v2/rerank", {"query": "q", "documents": ["d"] * 41}, 422, "limit of 40"),
    ("/v2/rerank", {"query": "q", "documents": ["x" * 2001]}, 422, "2001 characters"),
    ("/v1/rerank", {"query": 3, "documents": DOCS}, 422, "query"),
    ("/rerank", {"query": "", "texts": DOCS}, 400, "query is empty"),
    ("/rerank", {"query": "q"}, 422, "texts"),
    ("/rerank", {"query": "q", "texts": ["d"] * 41}, 422, "limit of 40"),
    ("/v2/rerank", {"query": "q", "documents": DOCS, "fuse_first_stage": True}, 422, "not true/false"),
    ("/rerank", {"query": "q", "texts": DOCS, "fuse_first_stage": False}, 422, "not true/false"),
    ("/v1/explain", {"query": "q", "documents": DOCS, "fuse_first_stage": True}, 422, "not true/false"),
    ("/v2/rerank", {"query": "q", "documents": DOCS, "fuse_first_stage": 1.5}, 422, "fuse_first_stage"),
]


@pytest.mark.parametrize("route, body, status, message", BAD, ids=[f"{r}-{s}-{m}" for r, _, s, m in BAD])
def test_validation_errors_use_each_routes_envelope(server, route, body, status, message):
    response = httpx.post(f"{server.url}{route}", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    if route == "/rerank":
        assert set(payload) == {"error", "error_type"} and message in payload["error"]
    else:
        assert set(payload) == {"message"} and message in payload["message"]


def test_malformed_and_oversized_bodies(server):
    r = httpx.post(f"{server.url}/v2/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "message" in r.json()
    r = httpx.post(f"{server.url}/v2/rerank", json={"query": "q", "documents": ["x" * 1000] * 39 + ["y" * 1999] * 30})
    assert r.status_code == 413 and "bytes" in r.json()["message"]

    def chunks():
        yield b'{"query": "q", "documents": ["'
        for _ in range(70):
            yield b"x" * 1000
        yield b'"]}'

    r = httpx.post(f"{server.url}/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation"


def test_batching_gives_the_same_answers_as_alone(server, local):
    """Concurrent requests of different lengths share forwards; each answer equals its in-process ranking."""
    requests = [(f"query about {w}", DOCS[: 2 + i % 4] + [f"extra passage {j} " * (i + 1) for j in range(i % 3)])
                for i, w in enumerate(["solar", "wind", "pasta", "river", "chess", "music", "cloud", "tiger"])]

    async def run():
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [client.post(f"{server.url}/v2/rerank", json={"query": q, "documents": d, "raw_scores": True})
                     for q, d in requests]
            return await asyncio.gather(*calls)

    responses = asyncio.run(run())
    for (query, docs), response in zip(requests, responses):
        assert response.status_code == 200
        got = response.json()["results"]
        alone = local.rank(query, docs)
        assert [r["index"] for r in got] == [r.corpus_id for r in alone]
        for r, a in zip(got, alone):
            assert r["relevance_score"] == pytest.approx(a.score, abs=1e-6)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "headrank_batch_lists_bucket" in metrics and 'headrank_requests_total{route="/v2/rerank",status="200"}' in metrics


def test_concurrent_answers_equal_solo_answers(server, local):
    """300 requests from 16 concurrent clients over 20 distinct inputs: every answer (order and raw scores)
    equals the same request ranked alone. The tiny model runs the real SmolLM2 tokenizer and its chat
    template: before prompt building was thread-safe, concurrent tokenization split the template's special
    tokens now and then, and some answers differed (stops by itself)."""
    words = ["solar", "wind", "pasta", "river", "chess", "music", "cloud", "tiger", "bread", "train"]
    inputs = [(f"query about {words[i % 10]} <|im_end|> {i}", DOCS[i % 5:] + DOCS[: i % 5] + [f"extra {i}"])
              for i in range(20)]
    solo = [[(r.corpus_id, r.score) for r in local.rank(q, d)] for q, d in inputs]

    async def client_loop(client, k, n, errors, wrong):
        for i in range(n):
            which = (k * 7 + i) % len(inputs)
            q, d = inputs[which]
            r = await client.post(f"{server.url}/v1/rerank", json={"query": q, "documents": d, "raw_scores": True})
            if r.status_code != 200:
                errors.append(r.status_code)
                continue
            got = [(x["index"], x["relevance_score"]) for x in r.json()["results"]]
            if [g[0] for g in got] != [s[0] for s in solo[which]] or any(
                    abs(g[1] - s[1]) > 1e-6 for g, s in zip(got, solo[which])):
                wrong.append(which)

    async def run():
        errors, wrong = [], []
        async with httpx.AsyncClient(timeout=60) as client:
            await asyncio.wait_for(asyncio.gather(*(client_loop(client, k, 300 // 16 + (k < 300 % 16), errors, wrong)
                                                    for k in range(16))), timeout=300)
        return errors, wrong

    errors, wrong = asyncio.run(run())
    assert errors == [] and wrong == []


def test_route_labels_are_bounded(server):
    """Unknown paths (and refused requests) share one metrics label instead of one series per path."""
    for i in range(30):
        httpx.get(f"{server.url}/no/such/path/{i}")
    labels = {line.split('route="')[1].split('"')[0] for line in httpx.get(f"{server.url}/metrics").text.splitlines()
              if line.startswith("headrank_requests_total{")}
    assert "unmatched" in labels and not any(label.startswith("/no/") for label in labels)
    assert labels <= {"unmatched", "/v1/rerank", "/v2/rerank", "/rerank", "/v1/explain", "/", "/health", "/info",
                      "/v1/models", "/metrics", "/docs", "/redoc", "/openapi.json"}
    text = httpx.get(f"{server.url}/metrics").text
    assert 'headrank_request_seconds_bucket{le="0.005",route="/v1/rerank",status="200"}' in text


def test_content_type_request_id_and_offline_docs(server):
    r = httpx.post(f"{server.url}/v2/rerank", content=b'{"query": "q", "documents": ["a"]}',
                   headers={"content-type": "application/x-www-form-urlencoded"})  # curl -d without -H
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["message"]
    r = httpx.post(f"{server.url}/rerank", content=b'{"query": "q", "texts": ["a"]}')  # no Content-Type at all
    assert r.status_code == 415 and "no Content-Type" in r.json()["error"]
    r = httpx.get(f"{server.url}/health", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and len(httpx.get(f"{server.url}/health").headers["x-request-id"]) > 8
    for page, asset in (("/docs", "/static-docs/swagger-ui-bundle.js"), ("/redoc", "/redoc.js")):
        html = httpx.get(f"{server.url}{page}").text
        assert "cdn." not in html and "https://" not in html.replace("https://fonts", "")
        assert f'"{asset}"' in html
        script = httpx.get(f"{server.url}{asset}")
        assert script.status_code == 200 and "cdn.redoc.ly" not in script.text  # ReDoc's logo came from its CDN


def test_official_cohere_client(server, local):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=server.url)
    response = client.rerank(model="rerank-v3.5", query="query about solar", documents=DOCS, top_n=3)
    assert [r.index for r in response.results] == [r.corpus_id for r in local.rank("query about solar", DOCS)][:3]
    assert all(0.0 <= r.relevance_score <= 1.0 for r in response.results)


def test_api_key_queue_timeout_and_loading_errors(tiny_dir):
    keyed = Server(str(tiny_dir), "--heads", HEADS, "--api-key", "s3cret")
    try:
        body = {"query": "q", "documents": DOCS[:2]}
        assert httpx.get(f"{keyed.url}/health").status_code == 200  # health needs no key
        r = httpx.post(f"{keyed.url}/v2/rerank", json=body)
        assert r.status_code == 401 and r.json() == {"message": "missing or wrong API key"}
        assert r.headers["www-authenticate"].startswith("Bearer")  # RFC 6750: a 401 names its scheme
        assert httpx.post(f"{keyed.url}/v2/rerank", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.post(f"{keyed.url}/v2/rerank", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.post(f"{keyed.url}/rerank", json={"query": "q", "texts": ["a"]},
                          headers={"X-API-Key": "s3cret"}).status_code == 200
    finally:
        keyed.stop()
    busy = Server(str(tiny_dir), "--heads", HEADS, "--max-queue", "1", "--max-batch", "1")
    try:
        long_docs = [f"passage {i} " + "words " * 150 for i in range(30)]

        async def flood():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(f"{busy.url}/v2/rerank",
                                                          json={"query": "q", "documents": long_docs})
                                              for _ in range(12)))

        responses = asyncio.run(flood())
        statuses = [r.status_code for r in responses]
        assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}
        limited = next(r for r in responses if r.status_code == 429)
        assert limited.headers["retry-after"] == "1" and "busy" in limited.json()["message"]
    finally:
        busy.stop()
    hasty = Server(str(tiny_dir), "--heads", HEADS, "--timeout", "0.001")
    try:
        r = httpx.post(f"{hasty.url}/v2/rerank", json={"query": "q", "documents": DOCS})
        assert r.status_code == 504 and "longer than 0.001 s" in r.json()["message"]
        r = httpx.post(f"{hasty.url}/rerank", json={"query": "q", "texts": DOCS})
        assert r.status_code == 504 and r.json()["error_type"] == "Timeout"
    finally:
        hasty.stop()
    broken = Server(str(tiny_dir.parent / "no-such-model"), ready=False)
    try:
        time.sleep(1)
        health = httpx.get(f"{broken.url}/health")
        assert health.status_code == 503 and "failed to load" in health.json()["message"]
        r = httpx.post(f"{broken.url}/rerank", json={"query": "q", "texts": ["a"]})
        assert r.status_code == 503 and r.json()["error_type"] == "Unhealthy"
    finally:
        broken.stop()


def test_gone_clients_are_dropped_and_shutdown_finishes_in_flight_work(tiny_dir):
    import signal
    import threading

    s = Server(str(tiny_dir), "--heads", HEADS, "--max-batch", "1", "--max-queue", "16")
    long_docs = [f"passage {i} " + "words " * 150 for i in range(30)]
    body = {"query": "q", "documents": long_docs}
    try:
        async def impatient():
            async with httpx.AsyncClient(timeout=60) as client:
                slow = [asyncio.ensure_future(client.post(f"{s.url}/v2/rerank", json=body)) for _ in range(10)]
                await asyncio.sleep(0.05)
                async with httpx.AsyncClient(timeout=0.1) as hasty:  # gives up while queued behind `slow`
                    for _ in range(3):
                        try:
                            await hasty.post(f"{s.url}/v2/rerank", json=body)
                        except httpx.TimeoutException:
                            pass
                return await asyncio.gather(*slow)

        assert [r.status_code for r in asyncio.run(impatient())] == [200] * 10
        time.sleep(1.0)
        dropped = [line for line in httpx.get(f"{s.url}/metrics").text.splitlines()
                   if line.startswith("headrank_dropped_total")]
        assert dropped and float(dropped[0].split()[-1]) >= 1  # their work was not done

        result = {}

        def in_flight():
            result["response"] = httpx.post(f"{s.url}/v2/rerank", json=body, timeout=60)

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)  # graceful: the request already in flight is answered
        time.sleep(0.1)
        try:  # a new request during shutdown: the connection is refused (or, on an open one, 503)
            late = httpx.get(f"{s.url}/health", timeout=5).status_code
        except httpx.TransportError:
            late = "refused"
        assert late in ("refused", 503)
        thread.join(timeout=60)
        assert result["response"].status_code == 200 and len(result["response"].json()["results"]) == 30
        assert s.proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutting down
    finally:
        s.stop()


def test_explain_route_and_playground_page(server, local):
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for remote in ("http://", "https://", "<script src", "<link"):
        assert remote not in page.text  # no CDN, no build step: everything inline
    out = httpx.post(f"{server.url}/v1/explain", json={"query": "query about solar", "documents": DOCS[:3]}).json()
    expected = local.explain("query about solar", DOCS[:3])
    assert [r["index"] for r in out["results"]] == [e.corpus_id for e in expected]
    for r, e in zip(out["results"], expected):
        assert r["score"] == pytest.approx(e.score, abs=1e-6)
        assert sum(t["contribution"] for t in r["tokens"]) == pytest.approx(r["score"], abs=1e-5)
        assert r["text"] == DOCS[r["index"]]
    bad = httpx.post(f"{server.url}/v1/explain", json={"query": "", "documents": DOCS})
    assert bad.status_code == 400 and bad.json() == {"message": "query is empty"}
    unknown = httpx.post(f"{server.url}/v1/explain", json={"query": "q", "documents": DOCS, "model": "nope"})
    assert unknown.status_code == 404 and "unknown model" in unknown.json()["message"]
    assert "--preload" in unknown.json()["message"]  # other presets load only when named at start
    assert httpx.get(f"{server.url}/info").json()["presets"][0] == out["model"]


def test_max_tokens_per_doc_cuts_documents_like_the_prompt_builder(server, local):
    from headrank.engine.prompt import normalize_text

    body = {"query": "query about solar", "documents": DOCS, "raw_scores": True, "max_tokens_per_doc": 2}
    got = {r["index"]: r["relevance_score"] for r in httpx.post(f"{server.url}/v2/rerank", json=body).json()["results"]}
    cut = [local.builder.cut(normalize_text(d), 2)[0] for d in DOCS]
    assert sum(len(c) < len(d) for c, d in zip(cut, DOCS)) >= 3  # most documents are longer than 2 tokens
    expected = _expected(local, body["query"], cut)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(_expected(local, body["query"], DOCS), abs=1e-6)


def test_explain_waits_in_the_same_queue(tiny_dir):
    """Explanations are model work like reranks: a full queue answers 429 to them too, and the server's timeout
    applies (they once ran beside the queue, so explains made the next reranks time out)."""
    s = Server(str(tiny_dir), "--heads", HEADS, "--max-queue", "1", "--max-batch", "1")
    try:
        long_docs = [f"passage {i} " + "words " * 150 for i in range(30)]

        async def flood():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(f"{s.url}/v1/explain", json={"query": "q",
                                                                                       "documents": long_docs})
                                              for _ in range(8)))

        statuses = [r.status_code for r in asyncio.run(flood())]
        assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}
    finally:
        s.stop()
    hasty = Server(str(tiny_dir), "--heads", HEADS, "--timeout", "0.001")
    try:
        r = httpx.post(f"{hasty.url}/v1/explain", json={"query": "q", "documents": DOCS})
        assert r.status_code == 504 and "longer than 0.001 s" in r.json()["message"]
    finally:
        hasty.stop()


def test_fusion_per_request_and_server_default(tiny_dir, local):
    s = Server(str(tiny_dir), "--heads", HEADS, "--fuse-first-stage", "0.5")
    try:
        body = {"query": "query about solar", "documents": DOCS, "raw_scores": True}
        fused = httpx.post(f"{s.url}/v2/rerank", json=body).json()
        assert fused["meta"]["headrank"]["inference"]["fuse_first_stage"] == 0.5
        assert "raw attention score" in fused["meta"]["headrank"]["scores"]
        want = local.rank(body["query"], DOCS, fuse_first_stage=0.5)
        assert [r["index"] for r in fused["results"]] == [r.corpus_id for r in want]
        # raw_scores under fusion: the heads' scores, never the RRF values that order the results (issue 44)
        assert [r["relevance_score"] for r in fused["results"]] == pytest.approx([r.model_score for r in want])
        assert [r["relevance_score"] for r in fused["results"]] != pytest.approx([r.score for r in want])
        plain = httpx.post(f"{s.url}/v2/rerank", json={**body, "fuse_first_stage": 0}).json()
        assert plain["meta"]["headrank"]["inference"]["fuse_first_stage"] is None
        assert [r["index"] for r in plain["results"]] == [r.corpus_id for r in local.rank(body["query"], DOCS)]
        assert plain["usage"]["prompt_tokens"] == len(local.builder.build(body["query"], DOCS))
        tei = httpx.post(f"{s.url}/rerank", json={"query": body["query"], "texts": DOCS, "fuse_first_stage": 0})
        assert [r["index"] for r in tei.json()] == [r["index"] for r in plain["results"]]
        explained = httpx.post(f"{s.url}/v1/explain", json={"query": body["query"], "documents": DOCS}).json()
        top = explained["results"][0]
        assert top["ranking_score"] == pytest.approx(top["fused_score"]) and top["fusion_weight"] == 0.5
        assert top["first_stage_rank"] >= 1 and top["attention_rank"] >= 1
        bad = httpx.post(f"{s.url}/v2/rerank", json={**body, "fuse_first_stage": 1.5})
        assert bad.status_code == 422 and "fuse_first_stage" in bad.json()["message"]
    finally:
        s.stop()


def test_api_key_leaves_pages_usable_and_logs_requests(tiny_dir):
    keyed = Server(str(tiny_dir), "--heads", HEADS, "--api-key", "s3cret", "--json-logs")
    try:
        for page in ("/", "/docs", "/openapi.json"):
            assert httpx.get(f"{keyed.url}{page}").status_code == 200  # the key is typed into the page
        schema = httpx.get(f"{keyed.url}/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert httpx.get(f"{keyed.url}/info").status_code == 401
        assert httpx.get(f"{keyed.url}/info", headers={"Authorization": "Bearer s3cret"}).json()["auth"] is True
        httpx.post(f"{keyed.url}/v2/rerank", json={"query": "q", "documents": ["a"]},
                   headers={"Authorization": "Bearer s3cret", "X-Request-ID": "req-42"})
    finally:
        keyed.stop()
    lines = [json.loads(line) for line in keyed.proc.stdout.read().decode().splitlines() if line.startswith("{")]
    access = [x for x in lines if x["logger"] == "headrank.access"]
    hit = next(x for x in access if x.get("request_id") == "req-42")
    assert hit["method"] == "POST" and hit["route"] == "/v2/rerank" and hit["status"] == 200 and hit["latency_ms"] > 0
    assert any(x["status"] == 401 and x["route"] == "/info" for x in access)
    quiet = Server(str(tiny_dir), "--heads", HEADS, "--log-level", "warning")
    try:
        httpx.get(f"{quiet.url}/health")
    finally:
        quiet.stop()
    assert "headrank.access" not in quiet.proc.stdout.read().decode()


def test_safety_valve_per_request_and_server_default(tiny_base, tmp_path):
    """A served preset's valve applies by default, a request turns it off with "safety_valve": false, and
    --no-safety-valve turns it off for the server (/info says which)."""
    from conftest import make_tiny_preset

    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.rule import SafetyValve

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)
    preset = make_tiny_preset(tiny_base, tmp_path / "valved", InferenceSettings(safety_valve=always))
    body = {"query": "query about solar", "documents": DOCS, "raw_scores": True}
    s = Server(str(preset))
    try:
        on = httpx.post(f"{s.url}/v2/rerank", json=body).json()
        assert on["meta"]["headrank"]["valve_fired"] and [r["index"] for r in on["results"]] == list(range(len(DOCS)))
        assert on["meta"]["headrank"]["inference"]["safety_valve"]["signal"] == "agreement"
        off = httpx.post(f"{s.url}/v2/rerank", json={**body, "safety_valve": False}).json()
        assert not off["meta"]["headrank"]["valve_fired"] and off["meta"]["headrank"]["inference"]["safety_valve"] is None
        tei = httpx.post(f"{s.url}/rerank", json={"query": body["query"], "texts": DOCS, "safety_valve": False})
        assert [r["index"] for r in tei.json()] == [r["index"] for r in off["results"]]
        explained = httpx.post(f"{s.url}/v1/explain", json={"query": body["query"], "documents": DOCS}).json()
        assert explained["valve_fired"] and [r["index"] for r in explained["results"]] == list(range(len(DOCS)))
    finally:
        s.stop()
    s = Server(str(preset), "--no-safety-valve")
    try:
        assert httpx.get(f"{s.url}/info").json()["inference"]["safety_valve"] is None
        assert not httpx.post(f"{s.url}/v2/rerank", json=body).json()["meta"]["headrank"]["valve_fired"]
    finally:
        s.stop()


def test_start_warms_every_batch_size_it_serves_within_its_budget(tiny_dir, monkeypatch):
    """With length buckets (CUDA; forced here on the CPU) the loading thread warms every (batch size, length)
    shape that ``--max-batch`` requests can reach, smaller ones first, and stops after ``--warm-up`` seconds;
    before, it warmed one list only, so each new batch size met new kernel shapes under load."""
    import headrank.engine.capture as capture
    import headrank.rerankers as rerankers
    from headrank.serve import ServeConfig
    from headrank.serve.service import Service

    real_loader = rerankers.load_attention_reranker

    def bucketed(*args, **kwargs):
        ranker = real_loader(*args, **kwargs)
        ranker.length_buckets = True
        return ranker

    batches = []
    real_capture = capture.capture_lists

    def spy(model, prefixes, *args, **kwargs):
        batches.append(len(prefixes))
        return real_capture(model, prefixes, *args, **kwargs)

    monkeypatch.setattr(rerankers, "load_attention_reranker", bucketed)
    monkeypatch.setattr("headrank.engine.ranker.capture_lists", spy)
    for budget, want in ((60.0, {1, 2, 4}), (0.0, set())):
        batches.clear()
        service = Service(ServeConfig(model=str(tiny_dir), heads=HEADS, device="cpu", max_documents=2,
                                      max_batch_lists=3, warm_up_s=budget))
        service._load()
        assert service.load_error is None and service.ranker is not None
        assert set(batches) == want and batches == sorted(batches)
    with pytest.raises(ValueError, match="warm_up_s"):
        ServeConfig(warm_up_s=-1.0)


@pytest.mark.integration
def test_playground_example_model_alone_puts_the_solar_passages_first_with_the_small_preset(default_model_dir):
    """The playground's typed example, ranked by the model alone (what the page sends for typed passages) with the
    real small preset: the photovoltaic and inverter passages rank above Sourdough and the Great Wall."""
    from headrank.engine.ranker import HeadRanker
    from headrank.serve.routes.explain import PLAYGROUND_EXAMPLE

    docs = PLAYGROUND_EXAMPLE["documents"]
    ranker = HeadRanker.from_pretrained("headrank-smollm2-135m", device="cpu")
    order = [e.corpus_id for e in ranker.explain(PLAYGROUND_EXAMPLE["query"], docs, fuse_first_stage=0,
                                                 safety_valve=False)]
    where = {key: order.index(next(i for i, d in enumerate(docs) if key in d))
             for key in ("Photovoltaic", "inverter", "Sourdough", "Great Wall")}
    assert max(where["Photovoltaic"], where["inverter"]) < min(where["Sourdough"], where["Great Wall"]), where


def test_examples_route_gives_the_typed_example_and_a_first_stage_list_or_null(server):
    from conftest import data_path

    from headrank.serve.routes.explain import PLAYGROUND_EXAMPLE

    data_path("msmarco-passage", "dl19")
    out = httpx.get(f"{server.url}/v1/examples").json()
    assert out["typed"] == PLAYGROUND_EXAMPLE
    real = out["first_stage"]
    assert real["source"].startswith("TREC DL19 query") and len(real["documents"]) == len(real["grades"]) == 10
    assert all("\n" not in d for d in real["documents"])  # one passage per line in the page's text box


def test_first_stage_example_is_null_without_benchmark_data(monkeypatch, tmp_path):
    from headrank.serve.routes.explain import first_stage_example

    monkeypatch.setenv("HEADRANK_DATA", str(tmp_path / "nowhere"))
    assert first_stage_example.__wrapped__() is None  # the page then hides its button


def test_tei_truncate_false_and_truncation_direction(server, local):
    """TEI's contract (issue 44): truncate false with a text over the passage budget is a 413 in TEI's envelope;
    truncation_direction Left ranks each long text by its end, Right (the default) by its beginning."""
    budget = local.prompt_settings.max_passage_tokens
    long_text = "solar panels " * 10 + "pasta " * (3 * budget) + "river music at the end"
    texts = [long_text, DOCS[1], DOCS[2]]
    refused = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": texts, "truncate": False})
    assert refused.status_code == 413 and refused.json()["error_type"] == "Validation"
    assert "document 0" in refused.json()["error"] and f"{budget} tokens" in refused.json()["error"]
    fits = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": DOCS[:3], "truncate": False})
    assert fits.status_code == 200
    from headrank.engine.prompt import normalize_text

    for direction, cut in (("Left", local.builder.cut_left), ("Right", local.builder.cut)):
        body = {"query": "query about solar", "texts": texts, "raw_scores": True, "truncation_direction": direction}
        got = {r["index"]: r["score"] for r in httpx.post(f"{server.url}/rerank", json=body).json()}
        kept = cut(normalize_text(long_text), budget)[0]
        want = {r.corpus_id: r.model_score for r in local.rank("query about solar", [kept, *texts[1:]])}
        assert got == pytest.approx(want, abs=1e-6), direction
    assert local.builder.cut_left(normalize_text(long_text), budget)[0].endswith("river music at the end")
    bad = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": texts, "truncation_direction": "Up"})
    assert bad.status_code == 422
