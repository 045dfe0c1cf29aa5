"""Per-head weights without the adapter: fit on the DL21 training split of a cached base-model selection capture
(`headrank select-heads` writes it under runs/cache), scored on the split's validation queries, beside the plain
top-K sets. docs/research/head-selection.md, "Issue 18" ("weights alone").

    PYTHONPATH=src python scripts/weights_on_base.py --observations runs/cache/heads-<fingerprint>-dl21-k20-p100.pt \
        --heads runs/heads/qwen-dl21.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from headrank.adapt import score_lists
from headrank.datasets import load_benchmark
from headrank.selection import HeadObservations, discriminability
from headrank.weighting import WeightConfig, fit_head_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=Path, required=True)
    parser.add_argument("--heads", type=Path, required=True, help="head set JSON that records the train/val split")
    args = parser.parse_args()
    qrels = load_benchmark("dl21").qrels
    split = json.loads(args.heads.read_text())["selection"]
    obs = HeadObservations.load(args.observations)
    train = obs.subset([q for q in split["train_queries"] if q in obs.qids])
    val = obs.subset([q for q in split["val_queries"] if q in obs.qids])
    order = torch.argsort(discriminability(train, qrels), descending=True, stable=True).tolist()

    def mean_val(idx, weights=None) -> float:
        values = score_lists(val, [obs.heads[i] for i in idx], weights, None, qrels)
        return sum(values.values()) / len(values)

    for k in (4, 8, 16, 32):
        print(f"plain top-{k}: {mean_val(order[:k]):.4f}")
    for m in (8, 16, 32, 64):
        for l2 in (0.001, 0.01, 0.1):
            w = fit_head_weights(train, qrels, order[:m], WeightConfig(l2=l2))
            print(f"weighted top-{m} (l2 {l2}, {int((w > 0).sum())} heads): {mean_val(order[:m], w.tolist()):.4f}")


if __name__ == "__main__":
    main()
