"""Speed and memory of HeadRank against ICR and the generative and pointwise baselines, by list size.

Every (method, N) runs in a fresh process, so its peak memory is its own: we report the peak resident
set size above the loaded model (CPU; weights paged in and the kernel's peak counter reset after loading)
or the peak allocated GPU memory above the weights (CUDA).
Latency is the median over the lists, after one warm-up list. Ratios are to HeadRank at the same N,
measured in the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time
from dataclasses import asdict, dataclass

from headrank.methods import BASELINES, Method, names, resolve

METHODS = names((Method.HEADS, Method.ICR, *BASELINES))  # a trained preset's heads first: the reference


def prefill_flops(config, layers: int, tokens: int) -> float:
    """Matmul FLOPs of a causal prefill of ``tokens`` through ``layers`` layers of a decoder config."""
    h = config.hidden_size
    i = config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    per_token = 2 * (h * q + 2 * h * kv + q * h + 3 * h * i)
    attention = 2 * 2 * q * tokens * tokens / 2
    return layers * (per_token * tokens + attention)


def passage_budget(n: int, context: int, wanted: int = 100, overhead: int = 400) -> int:
    """Per-passage token budget so that n passages fit the context (at most ``wanted``)."""
    return max(8, min(wanted, (context - overhead) // n - 6))


@dataclass
class BenchRow:
    method: str
    n: int
    budget: int
    tokens: int
    latency_s: float
    extra_peak_mib: float
    prefill_gflop: float | None
    achieved_gflops: float | None


def rss_mib(field: str = "VmRSS") -> float:
    """Resident set size of this process, MiB (Linux): current (VmRSS) or peak (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def page_in_weights(model) -> None:
    """Touch every parameter: safetensors weights are memory-mapped and would otherwise become resident
    during the first forward and count as that method's memory."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            param.sum()


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (VmHWM), so loading the model does not count as the peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(method: str, model_name: str, heads: list | None, lists: list, budget: int, device: str, conn) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    from headrank.engine.heads import HeadSet
    from headrank.engine.models import load_model
    from headrank.engine.prompt import PromptBuilder, PromptSettings
    from headrank.engine.ranker import HeadRanker

    hf_logging.disable_progress_bar()  # one bar per fresh process would bury the progress lines
    loaded = load_model(model_name, device=device, dtype="auto")
    prompt = PromptSettings(max_passage_tokens=budget)
    depth = None
    if method == Method.HEADS:
        ranker = HeadRanker(loaded, HeadSet(heads=tuple(map(tuple, heads))), prompt=prompt)
        run = lambda q, docs: ranker.rank(q, docs)  # noqa: E731
        depth = ranker.heads.deepest_layer + 1
    elif method == "icr":
        ranker = HeadRanker.from_pretrained(loaded, method="icr", max_passage_tokens=budget)
        run = lambda q, docs: ranker.rank(q, docs)  # noqa: E731
        depth = loaded.num_layers
    else:  # the baselines through the reranker factory, on the model loaded above
        from headrank.rerankers import load_reranker

        run = load_reranker(method, loaded, max_passage_tokens=budget).score
    tokens = len(PromptBuilder(loaded.tokenizer, prompt).build(*lists[0]))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    page_in_weights(loaded.model)
    # the baseline is the loaded model, taken before the warm-up: the warm-up list is usually the peak
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        exact_peak = reset_peak_rss()
        base = rss_mib()
    run(*lists[0])  # warm-up
    times = []
    for query, docs in lists[1:] or lists:
        started = time.perf_counter()
        run(query, docs)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak = (rss_mib("VmHWM") if exact_peak else lifetime) - base
    latency = statistics.median(times)
    flops = prefill_flops(loaded.model.config, depth, tokens) if depth else None
    conn.send(asdict(BenchRow(method, len(lists[0][1]), budget, tokens, latency, peak,
                              flops / 1e9 if flops else None, flops / latency / 1e9 if flops else None)))
    conn.close()


def measure(method: str, model_name: str, heads: list | None, lists: list, budget: int, device: str = "auto") -> BenchRow:
    """One (method, N) measurement in a fresh process."""
    method = resolve(method, tuple(Method(m) for m in METHODS)).value
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(method, model_name, heads, lists, budget, device, child))
    proc.start()
    child.close()
    try:
        row = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"benchmark process for {method} N={len(lists[0][1])} died (exit {proc.exitcode})") from None
    proc.join()
    return BenchRow(**row)


def markdown(rows: list[BenchRow], command: str, note: str) -> str:
    by_n: dict[int, dict[str, BenchRow]] = {}
    for row in rows:
        by_n.setdefault(row.n, {})[row.method] = row
    lines = [note, "", f"Command: `{command}`", "",
             "| N | method | budget (tokens/passage) | prompt tokens | latency (s) | x HeadRank | extra peak memory (MiB) "
             "| prefill GFLOP | achieved GFLOP/s |", "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted(by_n):
        ref = by_n[n].get(Method.HEADS.value)
        for method in METHODS:
            row = by_n[n].get(method)
            if row is None:
                continue
            ratio = f"{row.latency_s / ref.latency_s:.2f}x" if ref else "n/a"
            gflop = f"{row.prefill_gflop:.1f}" if row.prefill_gflop else "-"
            rate = f"{row.achieved_gflops:.1f}" if row.achieved_gflops else "-"
            lines.append(f"| {n} | {method} | {row.budget} | {row.tokens} | {row.latency_s:.2f} | {ratio} | "
                         f"{max(row.extra_peak_mib, 0.0):.0f} | {gflop} | {rate} |")
    return "\n".join(lines) + "\n"


def bench_section(rows: list[BenchRow], command: str, deepest_layer: int, model: str, queries: int) -> str:
    """The BENCHMARKS.md section of one ``headrank bench`` run: what was measured where, then the table."""
    import platform

    import torch

    from headrank.eval.evaluate import git_commit

    note = (f"## Speed by list size: HeadRank (L* = {deepest_layer}) vs ICR, generative, pointwise\n\n"
            f"Measured in one run on {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"commit {git_commit()}, model {model}; DL19 lists, median over {queries} queries after a warm-up list; "
            "memory = peak above the loaded model, each cell in a fresh process. FLOPs: matmuls of the listwise "
            "prefill through the layers that run (none for the baselines, which are not one prefill).")
    return markdown(rows, command, note)


# ------------------------------------------------------------------ two capture paths, same process (benchmarks/)


def capture_bench_parser(doc: str):
    """The options the CPU capture benchmarks share (benchmarks/one_pass_bench.py, batch_layout_bench.py)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="headrank-smollm2-135m")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def load_capture_bench(model: str, threads: int, data_root=None):
    """The preset on the CPU in float32 with ``threads``, the DL19 BM25 lists (RankGPT JSON entries), its heads,
    model and N/A tail."""
    import json

    import torch

    from headrank.data.benchmarks import default_data_root
    from headrank.engine.prompt import CALIBRATION_QUERY
    from headrank.engine.ranker import HeadRanker

    torch.set_num_threads(threads)
    ranker = HeadRanker.from_pretrained(model, device="cpu", dtype="float32")
    path = (data_root or default_data_root()) / "msmarco-passage" / "dl19" / "bm25-top100.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    return ranker, entries, list(ranker.heads.heads), ranker.model.model, ranker.builder.tail_ids(CALIBRATION_QUERY)


def alternate(fns: dict, reps: int, per: int = 1) -> dict[str, float]:
    """Median seconds of each function (divided by ``per``), timed in turn ``reps`` times so drift hits all."""
    times: dict[str, list[float]] = {}
    for _ in range(reps):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times.setdefault(name, []).append((time.perf_counter() - started) / per)
    return {name: statistics.median(values) for name, values in times.items()}


def paths_summary(rows: list[dict], label: str, new: str, old: str, names: tuple[str, str]) -> str:
    """One line: the two paths' mean seconds per list, their ratio and the largest difference seen."""
    new_s, old_s = (statistics.mean(r[k] for r in rows) for k in (new, old))
    return (f"{label}: {names[0]} {new_s:.3f} s per list, {names[1]} {old_s:.3f} s, ratio {new_s / old_s:.3f}; "
            f"max |difference| {max(r['max_abs_diff'] for r in rows):.1e}")
