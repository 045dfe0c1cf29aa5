"""Capture benchmark: SDPA capture vs eager ``output_attentions``, and depth truncation.

Each measurement runs in a fresh process (spawn), so its peak memory is its own: we report the
peak resident set size *above* the loaded model (``ru_maxrss`` after the forward minus the RSS right
after loading). Times are the median over the queries of one forward per list.

    python benchmarks/capture_bench.py --sizes 20 50 --queries 3 [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DL19 = REPO.parent / "shared" / "data" / "msmarco-passage" / "dl19" / "bm25-top100.json"
EAGER_FITS_GIB = 12.0  # run eager only where its returned attention maps stay under this


def _child(kind: str, size: int, n_queries: int, heads_spec: str, conn) -> None:
    import torch

    from headrank.engine.capture import capture_lists
    from headrank.engine.models import load_model
    from headrank.engine.prompt import PromptBuilder, PromptSettings
    from headrank.eval.bench import page_in_weights, reset_peak_rss, rss_mib

    torch.set_num_threads(torch.get_num_threads())
    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    builder = PromptBuilder(loaded.tokenizer, PromptSettings(max_passage_tokens=100))
    entries = json.loads(DL19.read_text())[:n_queries]
    prompts = [builder.build(e["query"], [h["content"] for h in e["hits"][:size]]) for e in entries]
    model = loaded.model
    all_heads = [(layer, head) for layer in range(loaded.num_layers) for head in range(loaded.num_heads)]
    if heads_spec == "all":
        heads = all_heads
    else:
        lo, hi = map(int, heads_spec.split("-"))
        heads = [(layer, head) for layer in range(lo, hi + 1) for head in range(loaded.num_heads)]
    page_in_weights(model)
    reset_peak_rss()
    baseline = rss_mib()
    times = []
    with torch.inference_mode():
        for prompt in prompts:
            started = time.perf_counter()
            if kind == "eager":
                model.set_attn_implementation("eager")
                ids = torch.tensor([prompt.input_ids])
                out = model.model(input_ids=ids, output_attentions=True)
                q0, q1 = prompt.attending_rows
                _ = [a[0, :, q0:q1, :q0].mean(1) for a in out.attentions]
                del out
            else:
                capture_lists(model, [prompt.prefix_ids], [[prompt.tail_ids]], heads, truncate=(kind == "truncated"))
            times.append(time.perf_counter() - started)
    conn.send({
        "time_s": statistics.median(times),
        "extra_peak_mib": rss_mib("VmHWM") - baseline,
        "tokens": statistics.median(len(p) for p in prompts),
    })
    conn.close()


def measure(kind: str, size: int, n_queries: int, heads: str) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(kind, size, n_queries, heads, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def eager_need_gib(tokens: float, layers: int = 30, heads: int = 9) -> float:
    """Memory of the attention maps eager returns: layers x heads x T x T float32."""
    return layers * heads * tokens * tokens * 4 / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--write", type=Path, help="append the Markdown section to this file")
    args = parser.parse_args()

    rows = []
    for size in args.sizes:
        sdpa = measure("full", size, args.queries, "all")
        need = eager_need_gib(sdpa["tokens"])
        eager = measure("eager", size, args.queries, "all") if need <= EAGER_FITS_GIB else None
        trunc = measure("truncated", size, args.queries, "14-16")
        deep = measure("full", size, args.queries, "14-16")
        rows.append((size, sdpa, eager, need, trunc, deep))
        print(f"N={size}: sdpa {sdpa}, eager {eager} (need {need:.1f} GiB), trunc {trunc}, full {deep}", file=sys.stderr)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    import torch

    lines = [
        "## Attention capture: SDPA capture vs eager, depth truncation (SmolLM2-135M, CPU)",
        "",
        f"Measured in one run on {platform.machine()} with {torch.get_num_threads()} threads, float32, "
        f"torch {torch.__version__}, commit {commit}. DL19 BM25 candidates, first {args.queries} queries, "
        "passages cut to 100 tokens; one forward per list (no calibration tail); time = median per list; "
        "memory = peak RSS above the loaded model, each measurement in a fresh process.",
        "",
        f"Command: `python benchmarks/capture_bench.py --sizes {' '.join(map(str, args.sizes))} --queries {args.queries}`",
        "",
        "| N | tokens | (a) capture, all 270 heads, SDPA | (b) eager `output_attentions` | (b)/(a) time | "
        "(c) heads in layers 14-16, stop after 16 | same heads, full depth (30) | full/truncated time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, sdpa, eager, need, trunc, deep in rows:
        if eager:
            eager_cell = f"{eager['time_s']:.2f} s, +{eager['extra_peak_mib'] / 1024:.2f} GiB"
            ratio = f"{eager['time_s'] / sdpa['time_s']:.2f}x"
        else:
            eager_cell = f"not run: its attention maps alone need {need:.1f} GiB (machine: 24 GiB)"
            ratio = "n/a"
        lines.append(
            f"| {size} | {sdpa['tokens']:.0f} | {sdpa['time_s']:.2f} s, +{sdpa['extra_peak_mib']:.0f} MiB | {eager_cell} | "
            f"{ratio} | {trunc['time_s']:.2f} s, +{trunc['extra_peak_mib']:.0f} MiB | "
            f"{deep['time_s']:.2f} s, +{deep['extra_peak_mib']:.0f} MiB | {deep['time_s'] / trunc['time_s']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
