"""Which linear layers to run in int8: score fidelity and speed per choice, on DL21 training lists.

For each choice of parts (the MLP's projections, the attention's, both), the default preset's raw attention
scores (no fusion, no valve) on the first ``--lists`` DL21 training queries of its head set (BM25 top 20) are
compared with float32's: relative error (||int8 - float32|| / ||float32 - mean||), Spearman correlation and the
overlap of the top 10; and the time per list against float32 in the same process. Training lists only: the
choice may not look at a reporting set.

    PYTHONPATH=src python benchmarks/int8_parts.py --lists 6 --out results/int8-parts.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

PRESET = "headrank-qwen2.5-coder-0.5b"
CHOICES = {"mlp": ("mlp",), "self_attn": ("self_attn",), "every linear": ("mlp", "self_attn")}


def fidelity(reference: list[float], scores: list[float]) -> dict:
    ref, got = torch.tensor(reference, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64)
    rel = float((got - ref).norm() / (ref - ref.mean()).norm())
    rank = lambda t: t.argsort().argsort().double()  # noqa: E731 - scores here have no ties
    rho = float(torch.corrcoef(torch.stack([rank(ref), rank(got)]))[0, 1])
    top = len(set(ref.argsort(descending=True)[:10].tolist()) & set(got.argsort(descending=True)[:10].tolist()))
    return {"relative_error": rel, "spearman": rho, "top10_overlap": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from headrank.data.benchmarks import load_benchmark
    from headrank.engine.quantize import quantize_model
    from headrank.engine.ranker import HeadRanker

    bench = load_benchmark("dl21")
    reference = HeadRanker.from_pretrained(PRESET, device="cpu", quantize="none")
    qids = reference.heads.split_queries("train")[: args.lists]
    lists = [(bench.queries[q], [c.text for c in bench.candidates[q][:20]]) for q in qids]

    def run(ranker) -> tuple[list[list[float]], float]:
        out, times = [], []
        for query, docs in lists:
            started = time.perf_counter()
            out.append(ranker.score(query, docs, fuse_first_stage=0, safety_valve=False))
            times.append(time.perf_counter() - started)
        return out, statistics.fmean(times[1:] or times)

    ref_scores, ref_time = run(reference)
    rows = []
    depth = reference.heads.deepest_layer + 1
    for name, parts in CHOICES.items():
        ranker = HeadRanker.from_pretrained(PRESET, device="cpu", quantize="none")
        quantize_model(ranker.model.model, range(depth), parts=parts)
        scores, seconds = run(ranker)
        per = [fidelity(a, b) for a, b in zip(ref_scores, scores)]
        rows.append({"parts": name, "time_ratio": seconds / ref_time,
                     **{k: statistics.fmean(r[k] for r in per) for k in per[0]},
                     "min_spearman": min(r["spearman"] for r in per)})
        print(json.dumps(rows[-1]), flush=True)
        del ranker
    if args.out:
        args.out.write_text(json.dumps({"command": "PYTHONPATH=src python benchmarks/int8_parts.py "
                                        + " ".join(sys.argv[1:]), "lists": args.lists, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
