"""GPU benchmark, one prepared command: HeadRank against its baselines at the real Qwen3 shapes (random weights:
speed does not depend on the values), then the product end to end. Needs torch, transformers and src/.

    bash benchmarks/gpu_run.sh                      # on the GPU host: installs .whl/, runs every part, $OUT
    OUT=/tmp/gpu-bench PYTHON=.venv/bin/python bash benchmarks/gpu_run.sh --tiny   # CPU rehearsal (the suite's)

Parts (``--parts``, default all):
- ``micro``: per shape and list size N (batch 1, median of ``--reps``): HeadRank (one pass with the query and
  N/A tails, heads within 75% of the layers), ICR (all heads, full depth, one pass), a plain full-depth
  forward that keeps only the last position's logits (what a single-token reranker costs), and a RankGPT-style
  window of 20 passages with 90 greedy tokens through ``model.generate`` (N = 100: 9 windows, timed as one
  window times 9); peak memory; a correctness check of the one-pass capture against eager float32 attention.
- ``e2e``: ``HeadRanker.rank`` through the API with the real Qwen3 tokenizer (``--tokenizer``) on the largest
  shape: the first call (cold), a warm median, a token length not seen before, prompt building vs capture.
- ``build``: ``headrank build-preset`` on the device with a random model of the smallest shape and the real
  tokenizer, over a synthetic judged collection (exercises selection, training and packaging on CUDA).
- ``commands``: the other commands with ``--device`` on ``build``'s preset and collection: ``evaluate``,
  ``adapt`` (judged queries, and ``--corpus``: the base model writes the queries), ``rerank-batch``.
- ``serve``: ``headrank serve`` on loopback under a bounded load (16 clients x 8 requests of 20 documents)
  with batching 1 and 8: p50 / p95 latency and requests/s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

SHAPES = {
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128),
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
}
VOCAB = 151936
TOKENIZER_VOCAB = 151669  # the real Qwen3 tokenizer's size
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM
WORDS = ("the immune system learns to recognise a pathogen after vaccination and memory cells respond faster "
         "when the real virus appears while other passages talk about bread markets rivers music chess and "
         "trains running late across the city in winter").split()


def build_model(shape: dict, dtype: torch.dtype, device: str, vocab: int = VOCAB):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from headrank.engine.capture import enable_capture

    config = Qwen3Config(vocab_size=vocab, max_position_embeddings=40960, rope_theta=1e6, tie_word_embeddings=True,
                         **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(dtype).eval()
    enable_capture(model)
    return model


def synthetic_list(n: int, passage_tokens: int, vocab: int, rng: random.Random) -> tuple[list[int], list[int], list[int]]:
    """Token ids of a listwise prompt: a 30-token head, n passages of ~passage_tokens (+4 label/separator), a
    40-token query tail and a 40-token N/A tail."""
    low = min(1000, vocab // 10)  # skip the low ids, where special tokens usually sit
    draw = lambda k: [rng.randrange(low, vocab - 1) for _ in range(k)]  # noqa: E731
    prefix = draw(30)
    for _ in range(n):
        prefix += draw(passage_tokens + 4)
    return prefix, draw(40), draw(40)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn, device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def correctness(device: str) -> float:
    """Max |one-pass capture - eager| for the query and the N/A tail, one list and a padded batch of two, on a
    small float32 Qwen3 (real head_dim, GQA)."""
    import copy

    from headrank.engine.capture import capture_lists

    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=128)
    model = build_model(shape, torch.float32, device, vocab=1000)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    rng = random.Random(1)
    lists = [synthetic_list(n, 20, 1000, rng) for n in (4, 6)]
    heads = [(0, 1), (1, 0), (1, 3)]
    worst = 0.0
    with torch.no_grad():
        for batch in (lists[:1], lists):
            got = capture_lists(model, [x[0] for x in batch], [[x[1] for x in batch], [x[2] for x in batch]], heads)
            for b, (prefix, tail, na) in enumerate(batch):
                for g, rows in enumerate((tail, na)):
                    ids = torch.tensor([prefix + rows], device=device)
                    att = eager(input_ids=ids, output_attentions=True).attentions
                    span = slice(len(prefix), len(prefix) + len(rows))
                    ref = torch.stack([att[layer][0, head, span, : len(prefix)].mean(0) for layer, head in heads])
                    worst = max(worst, float((got[g][b].token_mass - ref.cpu()).abs().max()))
    return worst


def rankgpt_window_ids(prefix: list[int], tail: list[int], passages: int, n: int) -> list[int]:
    """A generative window's prompt length: the share of the list's passages in one window of ``passages``."""
    per_passage = (len(prefix) - 30) // max(n, 1)
    return prefix[: 30 + per_passage * min(passages, n)] + tail


def micro_row(name: str, model, n: int, args, device: str, rng: random.Random) -> dict:
    """One shape and list size: HeadRank, ICR, plain forward and generate, batch 1."""
    from headrank.engine.capture import capture_lists
    from headrank.eval.bench import prefill_flops

    shape = SHAPES[name]
    layers, num_heads = shape["num_hidden_layers"], shape["num_attention_heads"]
    l_star = max(0, math.ceil(0.75 * layers) - 1)
    pool = [(layer, head) for layer in range(l_star // 2, l_star + 1) for head in range(num_heads)]
    headrank_heads = sorted(set(rng.sample(pool, min(15, len(pool))) + [(l_star, 0)]))
    all_heads = [(layer, head) for layer in range(layers) for head in range(num_heads)]
    prefix, tail, na = synthetic_list(n, args.passage_tokens, model.config.vocab_size, rng)
    tokens = len(prefix) + len(tail)
    row = {"model": name, "N": n, "tokens": tokens, "L*": l_star, "layers": layers}

    def capture(heads):
        with torch.inference_mode():
            capture_lists(model, [prefix], [[tail], [na]], heads)

    ids = torch.tensor([prefix + tail], device=device)

    def plain():
        with torch.inference_mode():
            model(input_ids=ids, logits_to_keep=1)

    window = torch.tensor([rankgpt_window_ids(prefix, tail, 20, n)], device=device)
    windows = 1 if n <= 20 else 1 + math.ceil((n - 20) / 10)

    def generate():
        with torch.inference_mode():
            model.generate(window, attention_mask=torch.ones_like(window), max_new_tokens=args.gen_tokens,
                           min_new_tokens=args.gen_tokens, do_sample=False, pad_token_id=0)

    for method, fn in (("headrank", lambda: capture(headrank_heads)), ("icr", lambda: capture(all_heads)),
                       ("plain_forward", plain)):
        latency = timed(fn, device, args.reps)
        row[method] = {"latency_ms": 1000 * latency, "peak_mem_mib": peak_memory(fn, device)}
    row["headrank"]["prefill_tflop"] = prefill_flops(model.config, l_star + 1, tokens) / 1e12
    one_window = timed(generate, device, max(1, args.reps // 3))
    row["generate"] = {"latency_ms": 1000 * one_window * windows, "windows": windows,
                       "tokens_per_window": args.gen_tokens}
    row["headrank_vs_plain"] = row["headrank"]["latency_ms"] / row["plain_forward"]["latency_ms"]
    row["headrank_vs_icr"] = row["headrank"]["latency_ms"] / row["icr"]["latency_ms"]
    row["generate_vs_headrank"] = row["generate"]["latency_ms"] / row["headrank"]["latency_ms"]
    return row


def micro(args, device: str, dtype: torch.dtype) -> list[dict]:
    rows = []
    for name in args.models:
        model = build_model(SHAPES[name], dtype, device, vocab=1000 if name == "tiny" else VOCAB)
        rng = random.Random(0)
        for n in args.sizes:
            rows.append(micro_row(name, model, n, args, device, rng))
            print(json.dumps(rows[-1]), flush=True)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def english_passages(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(n)]


def e2e(args, device: str, dtype: torch.dtype) -> dict:
    """``HeadRanker.rank`` with the real tokenizer: cold first call, warm median, a new token length."""
    from transformers import AutoTokenizer

    from headrank.engine.heads import HeadSet
    from headrank.engine.models import wrap_model
    from headrank.engine.ranker import HeadRanker

    name = args.models[-1]
    shape = SHAPES[name]
    model = build_model(shape, dtype, device, vocab=TOKENIZER_VOCAB)
    layers = shape["num_hidden_layers"]
    l_star = max(0, math.ceil(0.75 * layers) - 1)
    heads = HeadSet(heads=((l_star // 2, 0), (l_star - 1, 1), (l_star, 0)), num_layers=layers,
                    num_heads=shape["num_attention_heads"])
    ranker = HeadRanker(wrap_model(model, AutoTokenizer.from_pretrained(args.tokenizer), name=name), heads)
    out = {"model": name, "L*": l_star}
    for n in args.sizes:
        docs = english_passages(n, args.passage_words, seed=n)
        query = "how do vaccines train the immune system?"
        started = time.perf_counter()
        ranker.rank(query, docs)
        _sync(device)
        cold = time.perf_counter() - started
        warm = timed(lambda: ranker.rank(query, docs), device, args.reps)
        build = timed(lambda: ranker.builder.build(query, docs), "cpu", args.reps)
        other = english_passages(n, args.passage_words + 7, seed=n + 1)  # a token length not seen before
        started = time.perf_counter()
        ranker.rank(query, other)
        _sync(device)
        new_length = time.perf_counter() - started
        out[f"N={n}"] = {"tokens": len(ranker.builder.build(query, docs)), "cold_first_call_ms": 1000 * cold,
                         "warm_ms": 1000 * warm, "prompt_build_ms": 1000 * build,
                         "new_token_length_first_call_ms": 1000 * new_length,
                         **_varied_lengths(ranker, query, n, args, device),
                         **(_varied_batches(ranker, query, n, args, device) if n == min(args.sizes) else {})}
        print(json.dumps({"e2e": name, "N": n, **out[f"N={n}"]}), flush=True)
    model = ranker = None  # free the GPU memory before the next part
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def _varied_lengths(ranker, query: str, n: int, args, device: str) -> dict:
    """Mean latency over 10 requests of 10 token lengths never seen before: exact lengths, then lengths padded
    to buckets after ``warm_up`` (timed) ran every bucket once."""
    def mean_ms(words: range) -> float:
        times = []
        for k in words:
            docs = english_passages(n, k, seed=k)
            started = time.perf_counter()
            ranker.rank(query, docs)
            _sync(device)
            times.append(time.perf_counter() - started)
        return 1000 * statistics.mean(times)

    base = args.passage_words
    before = ranker.length_buckets
    ranker.length_buckets = False
    exact = mean_ms(range(base + 11, base + 21))
    ranker.length_buckets = True
    started = time.perf_counter()
    warmed = ranker.warm_up(int(1.2 * len(ranker.builder.build(query, english_passages(n, base + 35, 0)))))
    warm_up_s = time.perf_counter() - started
    bucketed = mean_ms(range(base + 21, base + 31))
    ranker.length_buckets = before
    return {"new_lengths_exact_mean_ms": exact, "new_lengths_bucketed_mean_ms": bucketed,
            "warm_up_lengths": warmed, "warm_up_s": warm_up_s}


def _varied_batches(ranker, query: str, n: int, args, device: str) -> dict:
    """Mean latency per ``rank_batch`` call for batches of 3, 5 and 7 lists of token lengths never seen before
    (what a service batching up to 8 meets): exact shapes, then batch and length buckets after ``warm_up``
    (timed) ran every (batch size, length) shape up to 8 lists."""
    def mean_ms(offset: int) -> float:
        times = []
        for size in (3, 5, 7):
            lists = [english_passages(n, args.passage_words + offset + size + k, seed=100 * size + k)
                     for k in range(size)]
            started = time.perf_counter()
            ranker.rank_batch([query] * size, lists, batch_size=size)
            _sync(device)
            times.append(time.perf_counter() - started)
        return 1000 * statistics.mean(times)

    before = ranker.length_buckets
    ranker.length_buckets = False
    exact = mean_ms(41)
    ranker.length_buckets = True
    longest = len(ranker.builder.build(query, english_passages(n, args.passage_words + 60, 0)))
    started = time.perf_counter()
    warmed = ranker.warm_up(int(1.2 * longest), max_batch=8)
    warm_up_s = time.perf_counter() - started
    bucketed = mean_ms(51)
    ranker.length_buckets = before
    return {"new_batches_exact_mean_ms": exact, "new_batches_bucketed_mean_ms": bucketed,
            "warm_up_batch_shapes": warmed, "warm_up_batches_s": warm_up_s}


def save_model_dir(path: Path, name: str, dtype: torch.dtype, tokenizer: str) -> Path:
    """A random model of ``name``'s shape saved with the real tokenizer, as a local model directory."""
    import shutil

    model = build_model(SHAPES[name], dtype, "cpu", vocab=TOKENIZER_VOCAB)
    model.save_pretrained(path)
    for file in Path(tokenizer).iterdir():
        shutil.copy(file, path / file.name)
    return path


def synthetic_collection(path: Path, queries: int, depth: int) -> Path:
    """A judged RankGPT-layout collection (candidates.json + qrels.txt): every query has 2 graded passages."""
    path.mkdir(parents=True, exist_ok=True)
    entries, qrels = [], []
    for q in range(queries):
        docs = english_passages(depth, 30, seed=1000 + q)
        entries.append({"query": f"question {q} about {WORDS[q % len(WORDS)]}",
                        "hits": [{"qid": f"q{q}", "docid": f"q{q}-d{i}", "rank": i + 1, "score": float(depth - i),
                                  "content": text} for i, text in enumerate(docs)]})
        qrels += [f"q{q} 0 q{q}-d{(q * 3) % depth} 2", f"q{q} 0 q{q}-d{(q * 5 + 1) % depth} 1"]
    (path / "candidates.json").write_text(json.dumps(entries))
    (path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return path


def build(args, device: str, dtype: torch.dtype, work: Path) -> dict:
    """``headrank build-preset`` with ``--device``: selection, one training epoch, packaging."""
    name = args.models[0]
    model_dir = save_model_dir(work / "model", name, dtype, args.tokenizer)
    data = synthetic_collection(work / "data", args.build_queries, 10)
    cmd = [sys.executable, "-m", "headrank.cli", "build-preset", "--out", str(work / "preset"), "--model",
           str(model_dir), "--benchmark", str(data), "--depth", "10", "--ks", "4,8", "--lambdas", "0,0.3",
           "--epochs", "1", "--device", device, "--work", str(work / "build"), "--cache", str(work / "cache")]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = {"model": name, "queries": args.build_queries, "returncode": proc.returncode,
              "wall_s": time.perf_counter() - started, "preset_written": (work / "preset" / "headset.json").is_file()}
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-1500:]
    print(json.dumps({"build": result}), flush=True)
    return result


def _command(name: str, cmd: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "headrank.cli", *cmd], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - started, 1)}
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-1500:]
    print(json.dumps({"command": name, **result}), flush=True)
    return result


def commands(args, device: str, work: Path) -> dict:
    """The other commands of issue 29 item 4 with ``--device``, on the preset and synthetic collection that
    ``build`` wrote: evaluate, adapt on judged queries, adapt on a bare corpus (the base model writes queries),
    rerank-batch. Each: return code, wall time and, when it failed, the end of its stderr."""
    preset, data = work / "preset", work / "data"
    if not (preset / "headset.json").is_file():
        raise RuntimeError("the commands part runs on the build part's preset: --parts build commands")
    entries = json.loads((data / "candidates.json").read_text())
    corpus = work / "corpus.tsv"
    corpus.write_text("".join(f"{h['docid']}\t{h['content']}\n" for e in entries for h in e["hits"]))
    dev = ["--device", device]
    runs = {
        "evaluate": ["evaluate", "-b", str(data), "--method", "heads", "--model", str(preset), "-K", "10",
                     "--no-plot", "--fuse-first-stage", "0.5", "--out", str(work / "eval"), *dev],
        "adapt": ["adapt", "--from", str(preset), "--data", str(data), "-K", "10", "--out", str(work / "adapted"),
                  "--cache", str(work / "cache-adapt"), *dev],
        "adapt --corpus": ["adapt", "--from", str(preset), "--corpus", str(corpus), "--synthetic-queries", "8",
                           "--out", str(work / "adapted-corpus"), "--cache", str(work / "cache-adapt"), *dev],
        "rerank-batch": ["rerank-batch", "--candidates", str(data / "candidates.json"), "--model", str(preset),
                         "-K", "10", "--out", str(work / "batch"), *dev],
    }
    out = {name: _command(name, cmd) for name, cmd in runs.items()}
    # Random weights write noise, which the query filter refuses with a clear error after the writing (the part
    # that runs generation on the device); the capture and choice after it are those of adapt on judged queries.
    written = out["adapt --corpus"]
    written["wrote_on_device"] = written["returncode"] == 0 or "wrote no usable query" in written.get("stderr_tail", "")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(url: str, clients: int, per_client: int, docs: list[str]) -> dict:
    import asyncio

    import httpx

    latencies: list[float] = []
    errors = []

    async def client(c: httpx.AsyncClient, k: int) -> None:
        for i in range(per_client):
            body = {"query": f"question {k} {i} about vaccines", "documents": docs}
            started = time.perf_counter()
            r = await c.post(f"{url}/v2/rerank", json=body)
            latencies.append(time.perf_counter() - started)
            if r.status_code != 200:
                errors.append(r.status_code)

    async def run() -> float:
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=120) as c:
            await asyncio.wait_for(asyncio.gather(*(client(c, k) for k in range(clients))), timeout=300)
        return time.perf_counter() - started

    wall = asyncio.run(run())
    latencies.sort()
    return {"requests": len(latencies), "errors": len(errors), "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))], "requests_per_s": len(latencies) / wall}


def serve(args, device: str, work: Path) -> dict:
    """``headrank serve`` on loopback with batching 1 and 8 under 16 clients x 8 requests of 20 documents; how
    long until /health was ready (loading and, on CUDA, the warm-up of every (batch size, length) shape)."""
    import httpx

    model_dir = work / "model"
    if not (model_dir / "config.json").is_file():
        save_model_dir(model_dir, args.models[0], torch.bfloat16 if device.startswith("cuda") else torch.float32,
                       args.tokenizer)
    layers = SHAPES[args.models[0]]["num_hidden_layers"]
    l_star = max(0, math.ceil(0.75 * layers) - 1)
    heads = f"{l_star // 2}:0,{l_star - 1}:1,{l_star}:0"
    docs = english_passages(20, args.passage_words, seed=7)
    out = {"model": args.models[0]}
    for batch in (1, 8):
        port = _free_port()
        cmd = [sys.executable, "-m", "headrank.cli", "serve", "--model", str(model_dir), "--heads", heads, "--device",
               device, "--port", str(port), "--max-batch", str(batch), "--log-level", "warning"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            launched = time.perf_counter()
            deadline = time.time() + 180
            while time.time() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()[-1500:])
                time.sleep(0.5)
            ready_s = time.perf_counter() - launched  # loading plus the start's warm-up of every shape
            _load(url, 2, 2, docs)  # warm-up
            out[f"batch={batch}"] = {"ready_s": ready_s, **_load(url, args.clients, args.per_client, docs)}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        print(json.dumps({"serve": batch, **out[f"batch={batch}"]}), flush=True)
    return out


def markdown(result: dict) -> str:
    lines = [f"Card: {result['card']}; torch {result['torch']}; transformers {result['transformers']}; "
             f"{result['dtype']}. One-pass capture vs eager float32 on the card: max abs difference "
             f"{result['capture_vs_eager_max_abs']:.2e}.", ""]
    if result.get("micro"):
        lines += ["| shape | N | tokens | L* / layers | HeadRank ms | ICR ms | plain forward ms | HF generate s | "
                  "HeadRank / plain forward | generate / HeadRank |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["micro"]:
            lines.append(f"| {r['model']} | {r['N']} | {r['tokens']} | {r['L*'] + 1} / {r['layers']} | "
                         f"{r['headrank']['latency_ms']:.1f} | {r['icr']['latency_ms']:.1f} | "
                         f"{r['plain_forward']['latency_ms']:.1f} | {r['generate']['latency_ms'] / 1000:.2f} | "
                         f"{r['headrank_vs_plain']:.2f}x | {r['generate_vs_headrank']:.0f}x |")
    for key in ("e2e", "build", "commands", "serve"):
        if result.get(key):
            lines += ["", f"{key}: `{json.dumps(result[key])}`"]
    return "\n".join(lines) + "\n"


def resolve_device(parser: argparse.ArgumentParser, device: str | None, tiny: bool) -> str:
    """The device to time on: CUDA where torch sees it; the CPU for a --tiny rehearsal. A full run where torch sees
    no GPU is refused with a message (not a torch traceback, nor hours of full shapes on a CPU that a GPU host
    whose CUDA failed to start would spend its whole lease on)."""
    has_cuda = torch.cuda.is_available()
    if device is None and not has_cuda and not tiny:
        parser.error(f"torch {torch.__version__} sees no CUDA device here: the full run needs a GPU; --tiny rehearses "
                     "on the CPU (--device cpu runs the full shapes on the CPU anyway)")
    if device is None:
        return "cuda" if has_cuda else "cpu"
    if device.startswith("cuda") and not has_cuda:
        parser.error(f"--device {device}: torch {torch.__version__} sees no CUDA device here; on a CPU, rehearse with "
                     "--tiny --device cpu")
    return device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--parts", nargs="+", default=["micro", "e2e", "build", "commands", "serve"])
    parser.add_argument("--passage-tokens", type=int, default=100)
    parser.add_argument("--passage-words", type=int, default=70)
    parser.add_argument("--gen-tokens", type=int, default=90)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--build-queries", type=int, default=16)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--tokenizer", type=Path, help="Folder with the real Qwen3 tokenizer files (e2e, build, "
                                                        "serve).")
    parser.add_argument("--device", default=None, help="cuda (the default where torch sees a GPU), cuda:N or cpu "
                                                       "(the default of a --tiny rehearsal elsewhere)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, few reps: a rehearsal on the CPU")
    parser.add_argument("--out", type=Path, required=True, help="Results: gpu_bench.json and gpu_bench.md.")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder for saved models and the built "
                                                                "preset (default: <out>/work).")
    args = parser.parse_args()
    if args.tiny:
        args.models, args.reps, args.passage_tokens, args.passage_words = ["tiny"], 2, 10, 12
        args.gen_tokens, args.build_queries, args.clients, args.per_client = 4, 8, 4, 2
    args.device = resolve_device(parser, args.device, args.tiny)
    needs_tokenizer = {"e2e", "build", "commands", "serve"} & set(args.parts)
    if needs_tokenizer and (args.tokenizer is None or not (args.tokenizer / "tokenizer.json").is_file()):
        parser.error(f"--tokenizer must name a folder with tokenizer.json for {', '.join(sorted(needs_tokenizer))}")
    import transformers

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {"card": card, "torch": torch.__version__, "transformers": transformers.__version__, "dtype": str(dtype),
              "peak_bf16_tflops": next((v for k, v in PEAK_BF16_TFLOPS.items() if k in card), None),
              "capture_vs_eager_max_abs": correctness(args.device)}
    print(json.dumps(result), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "work"
    steps = {"micro": lambda: micro(args, args.device, dtype), "e2e": lambda: e2e(args, args.device, dtype),
             "build": lambda: build(args, args.device, dtype, work), "commands": lambda: commands(args, args.device, work),
             "serve": lambda: serve(args, args.device, work)}
    for part in args.parts:
        try:
            result[part] = steps[part]()
        except Exception as err:  # noqa: BLE001 - one failed part must not lose the others' numbers
            result[part] = {"error": f"{type(err).__name__}: {err}"}
            print(json.dumps({part: result[part]}), flush=True)
        (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=2))
    (args.out / "gpu_bench.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
