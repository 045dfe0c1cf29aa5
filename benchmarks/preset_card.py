"""Latency of a preset at N = 20 beside ICR and the generative listwise baseline on the same base model.

Times each method on the first ``--queries`` DL19 lists (BM25 top 20, first-stage order) after one warm-up
list, in one process, one after the other, so the ratios compare like with like. The generative baseline's
formatting success and the share of windows answered with the input order are counted on the same lists.
Writes a JSON list of rows that ``headrank build-preset --card`` merges into the model card as "latency".

    PYTHONPATH=src python benchmarks/preset_card.py --preset headrank-qwen2.5-coder-0.5b --queries 5 --out lat.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def timed_lists(lists: list, fn, after_warmup=None) -> float:
    """Mean seconds per list of ``fn(query, docs)`` after one warm-up list (``after_warmup`` runs between)."""
    fn(*lists[0])
    if after_warmup:
        after_warmup()
    times = []
    for query, docs in lists[1:]:
        started = time.perf_counter()
        fn(query, docs)
        times.append(time.perf_counter() - started)
    return statistics.fmean(times)


def generative_row(generative, base_model: str, timed) -> dict:
    """The generative baseline's latency row with its formatting success (counters reset after the warm-up)."""
    def reset_counters() -> None:  # the warm-up window is not counted
        generative.windows_total = generative.windows_valid = generative.windows_identity = 0
        generative.tokens_generated = 0

    seconds = timed(generative.score, reset_counters)
    return {"method": f"generative listwise (RankGPT) on {base_model}", "seconds_per_list": seconds,
            "formatting_success": generative.formatting_success, "identity_share": generative.identity_share,
            "tokens_per_window": generative.tokens_generated / max(generative.windows_total, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--also", nargs="*", default=[], help="more presets (names or folders) timed in the same run")
    parser.add_argument("--no-generative", action="store_true", help="skip the (slow) generative baseline")
    args = parser.parse_args()

    from headrank.data.benchmarks import load_benchmark
    from headrank.engine.models import load_model
    from headrank.engine.presets import load_preset
    from headrank.engine.ranker import HeadRanker
    from headrank.rerankers.generative import GenerativeRanker

    bench = load_benchmark("dl19", data_root=args.data_root)
    qids = sorted(bench.queries)[: args.queries + 1]  # the first list warms up every method
    lists = [(bench.queries[q], [c.text for c in bench.candidates[q][: args.depth]]) for q in qids]
    preset = load_preset(args.preset)
    ranker = HeadRanker.from_pretrained(args.preset, device="cpu", dtype="float32")
    base = load_model(preset.base_model, device="cpu", dtype="float32")
    icr = HeadRanker.from_pretrained(base, method="icr")
    generative = GenerativeRanker(base)

    def timed(fn, after_warmup=None) -> float:
        return timed_lists(lists, fn, after_warmup)

    rows = [
        {"method": f"{preset.name} ({preset.inference.describe()})",
         "seconds_per_list": timed(lambda q, d: ranker.rank(q, d))},
        {"method": f"ICR on {preset.base_model} (all heads, full depth)",
         "seconds_per_list": timed(lambda q, d: icr.rank(q, d))},
    ]
    for other in args.also:
        extra = HeadRanker.from_pretrained(other, device="cpu", dtype="float32")
        rows.append({"method": f"{other} (L* {extra.heads.deepest_layer}, {extra.inference_settings.describe()})",
                     "seconds_per_list": timed(lambda q, d, extra=extra: extra.rank(q, d))})
        rows[-1]["ratio_to_icr"] = rows[-1]["seconds_per_list"] / rows[1]["seconds_per_list"]
    rows[0]["ratio_to_icr"] = rows[0]["seconds_per_list"] / rows[1]["seconds_per_list"]
    if not args.no_generative:
        rows.append(generative_row(generative, preset.base_model, timed))
    for row in rows:
        row["ratio_to_preset"] = row["seconds_per_list"] / rows[0]["seconds_per_list"]
    meta = {"lists": len(lists) - 1, "depth": args.depth, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "benchmark": "dl19, first queries by qid"}
    args.out.write_text(json.dumps({"latency": rows, "latency_meta": meta}, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
