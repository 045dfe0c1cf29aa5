"""GPU benchmark: HeadRank (stopped at ~75% depth) against ICR (all heads, full depth), both with the N/A
calibration tail, on randomly initialized models of the real Qwen3 shapes (speed does not depend on the
weight values). Needs only torch, transformers and this repository's src/ (no downloads).

    PYTHONPATH=src python3 benchmarks/gpu_bench.py --out results/            # on a GPU machine
    PYTHONPATH=src python3 benchmarks/gpu_bench.py --tiny --device cpu --out /tmp/gpu-bench   # smoke test

Reports per model and list size N: latency per query (batch 1), throughput in queries/s with batching,
peak GPU memory above the weights, FLOPs of the truncated prefill and the achieved TFLOP/s against the
card's dense bf16 peak, plus a correctness check of the captured attention against eager float32.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
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
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM


def build_model(shape: dict, dtype: torch.dtype, device: str, vocab: int = VOCAB):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from headrank.capture import enable_capture

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
    """Max |capture - eager| on a small float32 Qwen3 (real head_dim, GQA) with a cached prefix."""
    import copy

    from headrank.capture import capture_lists

    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=128)
    model = build_model(shape, torch.float32, device, vocab=1000)
    rng = random.Random(1)
    prefix, tail, _ = synthetic_list(4, 20, 1000, rng)
    heads = [(0, 1), (1, 0), (1, 3)]
    with torch.no_grad():
        got = capture_lists(model, [prefix], [[tail]], heads)[0][0].token_mass
        eager = copy.deepcopy(model)
        eager.set_attn_implementation("eager")
        att = eager(input_ids=torch.tensor([prefix + tail], device=device), output_attentions=True).attentions
    rows = slice(len(prefix), len(prefix) + len(tail))
    ref = torch.stack([att[layer][0, head, rows, : len(prefix)].mean(0) for layer, head in heads])
    return float((got - ref).abs().max())


def bench_model(name: str, shape: dict, sizes: list[int], args, device: str, dtype: torch.dtype) -> list[dict]:
    from headrank.bench import prefill_flops
    from headrank.capture import capture_lists

    model = build_model(shape, dtype, device, vocab=VOCAB if name != "tiny" else 1000)
    layers = shape["num_hidden_layers"]
    l_star = max(0, math.ceil(0.75 * layers) - 1)
    rng = random.Random(0)
    pool = [(layer, head) for layer in range(l_star // 2, l_star + 1) for head in range(shape["num_attention_heads"])]
    headrank_heads = sorted(set(rng.sample(pool, min(15, len(pool))) + [(l_star, 0)]))
    all_heads = [(layer, head) for layer in range(layers) for head in range(shape["num_attention_heads"])]
    rows = []
    for n in sizes:
        lists = [synthetic_list(n, args.passage_tokens, VOCAB if name != "tiny" else 1000, rng)
                 for _ in range(args.batch)]
        tokens = len(lists[0][0]) + len(lists[0][1])
        row = {"model": name, "N": n, "tokens": tokens, "L*": l_star, "layers": layers}
        for method, heads in (("headrank", headrank_heads), ("icr", all_heads)):
            def one(heads=heads):
                with torch.inference_mode():
                    capture_lists(model, [lists[0][0]], [[lists[0][1]], [lists[0][2]]], heads)

            batch = max(1, args.batch if n <= 20 else args.batch // 4)

            def many(heads=heads, batch=batch):
                with torch.inference_mode():
                    capture_lists(model, [x[0] for x in lists[:batch]], [[x[1] for x in lists[:batch]],
                                                                           [x[2] for x in lists[:batch]]], heads)

            latency = timed(one, device, args.reps)
            batch_time = timed(many, device, max(1, args.reps // 2))
            depth = (l_star if method == "headrank" else layers - 1) + 1
            flops = prefill_flops(model.config, depth, tokens)
            row[method] = {
                "latency_ms": 1000 * latency,
                "throughput_qps": batch / batch_time,
                "batch": batch,
                "peak_mem_mib": peak_memory(one, device),
                "prefill_tflop": flops / 1e12,
                "achieved_tflops": flops / latency / 1e12,
            }
        row["headrank_vs_icr_latency"] = row["headrank"]["latency_ms"] / row["icr"]["latency_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def markdown(rows: list[dict], card: str, peak: float | None, max_err: float) -> str:
    lines = [f"Card: {card}; dense bf16 peak used for utilization: {peak or 'unknown'} TFLOP/s. "
             f"Capture vs eager float32 on the card: max abs difference {max_err:.2e}.", "",
             "| model | N | tokens | L* / layers | HeadRank ms | ICR ms | HeadRank/ICR | HeadRank q/s (batch) | "
             "ICR q/s (batch) | HeadRank peak MiB | ICR peak MiB | HeadRank TFLOP/s (% peak) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h, i = r["headrank"], r["icr"]
        util = f"{h['achieved_tflops']:.1f}" + (f" ({100 * h['achieved_tflops'] / peak:.0f}%)" if peak else "")
        mem = lambda x: "n/a" if x is None else f"{x:.0f}"  # noqa: E731
        lines.append(
            f"| {r['model']} | {r['N']} | {r['tokens']} | {r['L*'] + 1} / {r['layers']} | {h['latency_ms']:.1f} | "
            f"{i['latency_ms']:.1f} | {r['headrank_vs_icr_latency']:.2f}x | {h['throughput_qps']:.1f} ({h['batch']}) | "
            f"{i['throughput_qps']:.1f} ({i['batch']}) | {mem(h['peak_mem_mib'])} | {mem(i['peak_mem_mib'])} | {util} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--passage-tokens", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny model, 2 reps: a smoke test for CPU")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.tiny:
        args.models, args.reps, args.batch, args.passage_tokens = ["tiny"], 2, 4, 10
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in card), None)
    max_err = correctness(args.device)
    rows = []
    for name in args.models:
        rows += bench_model(name, SHAPES[name], args.sizes, args, args.device, dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"card": card, "torch": torch.__version__, "dtype": str(dtype), "peak_bf16_tflops": peak,
            "capture_vs_eager_max_abs": max_err}
    (args.out / "gpu_bench.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    (args.out / "gpu_bench.md").write_text(markdown(rows, card, peak, max_err))
    print(markdown(rows, card, peak, max_err))


if __name__ == "__main__":
    main()
