"""How far a padded batch's scores are from the same lists ranked alone (the service batches concurrent
requests): the first N judged DL21 queries (a training/validation set) with lists of different lengths, both
shipped presets in float32, one padded batch against one call per list.

    .venv/bin/python benchmarks/batched_vs_solo.py --out results/batched-vs-solo.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

PRESETS = ("headrank-smollm2-135m", "headrank-qwen2.5-coder-0.5b")


def measure(preset: str, queries: list[str], lists: list[list[str]], **load) -> dict:
    from headrank import HeadRanker

    ranker = HeadRanker.from_pretrained(preset, device="cpu", dtype="float32", quantize="none", **load)
    batched = ranker.rank_batch(queries, lists, batch_size=len(queries), fuse_first_stage=0, safety_valve=False)
    worst, same = 0.0, True
    for query, docs, got in zip(queries, lists, batched):
        alone = ranker.rank(query, docs, fuse_first_stage=0, safety_valve=False)
        scores = {r.corpus_id: r.score for r in alone}
        worst = max(worst, max(abs(r.score - scores[r.corpus_id]) for r in got))
        same &= [r.corpus_id for r in got] == [r.corpus_id for r in alone]
    return {"preset": preset, "max_abs_difference": worst, "same_order": same}


def main() -> None:
    from headrank.data.benchmarks import load_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lists", type=int, default=8)
    args = parser.parse_args()
    bench = load_benchmark("dl21")
    qids = list(bench.queries)[: args.lists]
    queries = [bench.queries[q] for q in qids]
    lists = [[c.text for c in bench.candidates[q][: 10 + 2 * i]] for i, q in enumerate(qids)]
    rows = [measure(p, queries, lists) for p in PRESETS]
    out = {"command": f".venv/bin/python benchmarks/batched_vs_solo.py --out {args.out}", "lists": len(lists),
           "passages": [len(x) for x in lists], "device": f"CPU ({platform.machine()}), float32", "rows": rows}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for row in rows:
        print(f"{row['preset']}: max |batched - alone| {row['max_abs_difference']:.3g}, same order {row['same_order']}")


if __name__ == "__main__":
    main()
