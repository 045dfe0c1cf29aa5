"""CPU speed at the machine's limit: the default preset in float32 and in int8, side by side in one run.

Measures, in one process unless said otherwise (2 torch threads unless --threads):
- the CPU's own peak: float32 ``torch.mm`` and int8 ``torch._int_mm`` on the preset's MLP shape and a square one;
- per 20-passage list (the first ``--queries`` DL19 lists after one warm-up, methods interleaved list by list):
  the default in float32, in int8 (MLP only, the shipped choice), in int8 on every linear layer (the
  alternative the choice was made against), ICR, and a plain forward of the same depth in both modes;
- the default's achieved operations per second and its share of the machine's limit (the time the measured
  peaks would need for its float32 and int8 matrix products, over the time it took);
- lists per second for one list at a time against ``rank_batch`` (4 lists per forward) at 1 and 2 threads;
- in fresh processes: peak memory (RSS) of loading the preset and ranking one list, and the cold start of
  ``headrank rerank`` on one list from a cached model (process start to printed result), in both modes.

    PYTHONPATH=src python benchmarks/cpu_int8.py --out results/cpu-int8-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PRESET = "headrank-qwen2.5-coder-0.5b"


def gemm_peak(shapes: list[tuple[int, int, int]], reps: int = 5) -> dict:
    """Best float32 GFLOP/s and int8 GOP/s over ``shapes`` (m, k, n), each the best of ``reps`` runs."""
    out = {"float32_gflops": 0.0, "int8_gops": 0.0, "shapes": [list(s) for s in shapes]}
    for m, k, n in shapes:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        ai = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=gen)
        bi = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=gen)
        for key, fn in (("float32_gflops", lambda: torch.mm(a, b)), ("int8_gops", lambda: torch._int_mm(ai, bi))):
            fn()
            best = min(_seconds(fn) for _ in range(reps))
            out[key] = max(out[key], 2 * m * k * n / best / 1e9)
    return out


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def kernel_comparison(tokens: int = 1600, reps: int = 5) -> dict:
    """One MLP-shaped linear layer (hidden 896 -> 4864, Qwen2.5-0.5B) in every int8 form at hand, as a share of
    float32's time, with its error against float32: why ``headrank.engine.quantize`` is built on ``torch._int_mm``."""
    import warnings

    from headrank.engine.quantize import Int8Linear

    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(896, 4864, bias=False)
    x = torch.randn(tokens, 896, generator=gen)
    want = linear(x).detach()
    forms = {"float32 nn.Linear": linear, "headrank Int8Linear (per-token activations, torch._int_mm)":
             Int8Linear.from_linear(linear)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its deprecation
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        for name, qconfig in (("per-tensor", default_dynamic_qconfig), ("per-channel", per_channel_dynamic_qconfig)):
            model = quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear: qconfig}, dtype=torch.qint8)
            forms[f"torch.ao quantize_dynamic ({name} weights, per-tensor activations)"] = model
    try:
        import copy

        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        ao = copy.deepcopy(torch.nn.Sequential(linear))
        quantize_(ao, Int8DynamicActivationInt8WeightConfig())
        forms["torchao Int8DynamicActivationInt8Weight"] = ao
    except ImportError:
        pass  # torchao is not a dependency; the row appears where it is installed
    out = {}
    with torch.inference_mode():
        for name, module in forms.items():
            module(x)
            seconds = min(_seconds(lambda: module(x)) for _ in range(reps))
            error = float((module(x) - want).norm() / want.norm())
            out[name] = {"seconds": seconds, "relative_error": error}
    base = out["float32 nn.Linear"]["seconds"]
    return {name: {**row, "time_ratio": row["seconds"] / base} for name, row in out.items()}


def mlp_flops(config, layers: int, tokens: int) -> float:
    """Matmul operations of the MLPs (gate, up, down) of ``layers`` layers over ``tokens`` tokens."""
    return layers * tokens * 2 * 3 * config.hidden_size * config.intermediate_size


def plain_forward(loaded, ids: list[int], depth: int) -> None:
    """One forward of the prompt through the first ``depth`` layers, no capture (what the capture adds to)."""
    inner = loaded.model.model
    layers = inner.layers
    inner.layers = layers[:depth]
    try:
        with torch.inference_mode():
            inner(input_ids=torch.tensor([ids]))
    finally:
        inner.layers = layers


def per_list(lists, rankers: dict, plains: dict, depth: int) -> dict:
    """Mean seconds per list of every method, interleaved list by list after one warm-up list."""
    methods = {**{k: (lambda r: lambda q, d: r.rank(q, d))(r) for k, r in rankers.items()},
               **{k: (lambda m: lambda q, d: plain_forward(m, _ids(rankers["float32"], q, d), depth))(m)
                  for k, m in plains.items()}}
    times = {k: [] for k in methods}
    for n, (query, docs) in enumerate(lists):
        for name, fn in methods.items():
            seconds = _seconds(lambda: fn(query, docs))
            if n:
                times[name].append(seconds)
        print(f"list {n}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v), flush=True)
    return {k: statistics.fmean(v) for k, v in times.items()}


def _ids(ranker, query: str, docs: list[str]) -> list[int]:
    prompt = ranker.builder.build(query, docs)
    return list(prompt.prefix_ids) + list(prompt.tail_ids)


def throughput(lists, rankers: dict, threads: list[int]) -> list[dict]:
    """Lists per second: one ``rank`` call per list against one ``rank_batch`` over all (4 lists per forward)."""
    rows = []
    queries, docs = [q for q, _ in lists], [d for _, d in lists]
    for mode, ranker in rankers.items():
        for t in threads:
            torch.set_num_threads(t)
            one = _seconds(lambda: [ranker.rank(q, d) for q, d in lists])
            batched = _seconds(lambda: ranker.rank_batch(queries, docs, batch_size=4))
            rows.append({"mode": mode, "threads": t, "lists": len(lists), "one_at_a_time_lists_per_s": len(lists) / one,
                         "rank_batch4_lists_per_s": len(lists) / batched})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# VmHWM, the peak RSS of this process's memory image: ru_maxrss would carry the parent's peak across exec.
RSS_CODE = """
import torch
def status(key):
    return [line.split()[1] for line in open("/proc/self/status") if line.startswith(key)][0]
def hwm():
    return status("VmHWM")
torch.set_num_threads({threads})
from headrank.engine.ranker import HeadRanker
r = HeadRanker.from_pretrained({preset!r}, device="cpu", quantize={mode!r})
loaded = hwm()
r.rank({query!r}, {docs!r})
print(loaded, hwm(), status("VmRSS"))
"""


def peak_rss_mib(mode: str, query: str, docs: list[str], threads: int) -> dict:
    code = RSS_CODE.format(threads=threads, preset=PRESET, mode=mode, query=query, docs=docs)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, peak, now = (int(x) / 1024 for x in out.stdout.split()[-3:])
    return {"after_load_peak_mib": loaded, "peak_mib": peak, "after_rank_rss_mib": now}


def cold_start(mode: str, query: str, docs: list[str], threads: int, runs: int) -> float:
    """Mean seconds of ``headrank rerank`` in a fresh process on one list (model and int8 cache warm)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.tsv"
        path.write_text("".join(f"d{i}\t{d}\n" for i, d in enumerate(docs)))
        cmd = [sys.executable, "-m", "headrank.cli", "rerank", str(path), "-q", query, "--quantize", mode,
               "--device", "cpu", "--threads", str(threads), "-o", "json"]
        subprocess.run(cmd, capture_output=True, check=True)  # fills the int8 cache the first time
        times = [_seconds(lambda: subprocess.run(cmd, capture_output=True, check=True)) for _ in range(runs)]
    return statistics.fmean(times)


def operations(ranker, lists: list, depth: int, peak: dict, seconds: dict) -> dict:
    """Prefill operations per list, the achieved rate of each mode and its share of this CPU's GEMM peak."""
    from headrank.eval.bench import prefill_flops

    config = ranker.model.model.config
    tokens = statistics.fmean(len(_ids(ranker, q, d)) for q, d in lists[1:])
    total, mlp = prefill_flops(config, depth, round(tokens)), mlp_flops(config, depth, round(tokens))
    ideal = {"float32": total / (peak["float32_gflops"] * 1e9),
             "int8": mlp / (peak["int8_gops"] * 1e9) + (total - mlp) / (peak["float32_gflops"] * 1e9)}
    return {"tokens_per_list": tokens, "prefill_gop": total / 1e9, "mlp_gop": mlp / 1e9,
            **{f"{m}_achieved_gops": total / seconds[m] / 1e9 for m in ideal},
            **{f"{m}_share_of_peak": ideal[m] / seconds[m] for m in ideal}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--throughput-lists", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from headrank.data.benchmarks import load_benchmark
    from headrank.engine.quantize import quantize_model
    from headrank.engine.ranker import HeadRanker

    bench = load_benchmark("dl19")
    qids = sorted(bench.queries)
    lists = [(bench.queries[q], [c.text for c in bench.candidates[q][:20]]) for q in qids[: args.queries + 1]]
    extra = [(bench.queries[q], [c.text for c in bench.candidates[q][:20]])
             for q in qids[args.queries + 1: args.queries + 1 + args.throughput_lists]]
    result = {"command": "PYTHONPATH=src python benchmarks/cpu_int8.py " + " ".join(sys.argv[1:]),
              "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
                          "flags": _cpu_flags(), "torch": torch.__version__, "python": platform.python_version(),
                          "load_before": os.getloadavg()[0]}}
    result["gemm_peak"] = gemm_peak([(2048, 896, 4864), (2048, 4864, 896), (2048, 2048, 2048)])
    print(json.dumps(result["gemm_peak"]), flush=True)
    result["kernels"] = kernel_comparison()
    print(json.dumps(result["kernels"]), flush=True)

    rankers = {"float32": HeadRanker.from_pretrained(PRESET, device="cpu", quantize="none"),
               "int8": HeadRanker.from_pretrained(PRESET, device="cpu", quantize="int8")}
    every_linear = HeadRanker.from_pretrained(PRESET, device="cpu", quantize="none")
    depth = every_linear.heads.deepest_layer + 1
    quantize_model(every_linear.model.model, range(depth), parts=("mlp", "self_attn"))
    icr = HeadRanker.from_pretrained(PRESET, method="icr", device="cpu", quantize="none")
    plains = {"plain_float32": rankers["float32"].model, "plain_int8": rankers["int8"].model}
    seconds = per_list(lists, {**rankers, "int8_every_linear": every_linear, "icr": icr}, plains, depth)
    result["seconds_per_list"] = seconds
    result["ratio_to_float32"] = {k: v / seconds["float32"] for k, v in seconds.items()}
    result["ratio_to_icr"] = {k: v / seconds["icr"] for k, v in seconds.items()}
    del icr, every_linear

    result["operations"] = operations(rankers["float32"], lists, depth, result["gemm_peak"], seconds)
    print(json.dumps(result["operations"]), flush=True)

    result["throughput"] = throughput(extra, rankers, [1, args.threads])
    torch.set_num_threads(args.threads)
    del rankers
    query, docs = lists[1]
    result["memory"] = {m: peak_rss_mib(m, query, docs, args.threads) for m in ("none", "int8")}
    result["cold_start_s"] = {m: cold_start(m, query, docs, args.threads, args.cold_runs) for m in ("none", "int8")}
    result["machine"]["load_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds_per_list", "ratio_to_float32", "memory", "cold_start_s")}))


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("flags"):
            return [f for f in wanted if f in line.split()]
    return []


if __name__ == "__main__":
    main()
