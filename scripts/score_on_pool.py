"""Score a preset or checkpoint of the default preset's model on the capture pool's validation domains, offline.

The pool (scripts/observe_pool.py) holds every head's passage mass for each validation list under the shipped
adapter; any head set, weights, fusion and valve on that adapter is scored from it without running the model.
Used for checkpoints written by ``headrank adapt`` (same adapter, new heads): real qrels only report.

    PYTHONPATH=src python scripts/score_on_pool.py --pool runs/pool-qwen --checkpoint runs/adapted-npl \
        --domain npl --against runs/preset-robust --out results/adapted-npl-qwen.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import load_pool  # noqa: E402
from robust_choice import VALIDATION, per_query, validation_domains  # noqa: E402

from headrank.checkpoint import CONFIG_NAME, HEADSET_NAME, InferenceSettings  # noqa: E402
from headrank.compare import sign_flip_p_value  # noqa: E402
from headrank.heads import HeadSet  # noqa: E402


def scores_of(path: Path, dom, heads) -> list[float]:
    head_set = HeadSet.load(path / HEADSET_NAME)
    settings = InferenceSettings.from_dict(json.loads((path / CONFIG_NAME).read_text()).get("inference"))
    idx = [heads.index(tuple(h)) for h in head_set.heads]
    w = torch.tensor(head_set.weights or [1.0] * len(idx))
    return per_query(dom, idx, w, settings.fuse_first_stage or 0.0, settings.safety_valve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--against", type=Path, required=True, help="the unadapted preset, for the paired test")
    parser.add_argument("--domain", choices=sorted(VALIDATION), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--adapt-report", type=Path, help="adapt's --report JSON: what it chose on written queries")
    parser.add_argument("--also", type=Path, help="another preset to compare with (e.g. the shipped default)")
    args = parser.parse_args()
    pool = load_pool(args.pool, 24, 14)
    dom = validation_domains(pool)[args.domain]
    heads = dom.obs.heads
    mine, base = scores_of(args.checkpoint, dom, heads), scores_of(args.against, dom, heads)
    result = {"domain": args.domain, "checkpoint": str(args.checkpoint), "against": str(args.against),
              "queries": [len(dom.obs.qids), dom.total],
              "bm25": sum(dom.bm25) / dom.total, "ndcg": sum(mine) / dom.total, "against_ndcg": sum(base) / dom.total,
              "p_vs_bm25": sign_flip_p_value([a - b for a, b in zip(mine, dom.bm25)], 20000, 0),
              "p_vs_against": sign_flip_p_value([a - b for a, b in zip(mine, base)], 20000, 0),
              "per_query": dict(zip(dom.obs.qids, mine))}
    if args.also is not None:
        also = scores_of(args.also, dom, heads)
        result.update({"also": str(args.also), "also_ndcg": sum(also) / dom.total,
                       "p_vs_also": sign_flip_p_value([a - b for a, b in zip(mine, also)], 20000, 0)})
    if args.adapt_report is not None:
        report = json.loads(args.adapt_report.read_text())
        result["adapt"] = {"lists": [len(report["train_queries"]), len(report["val_queries"])],
                           "before": report["before"]["val_ndcg"], "best": max(c["val_ndcg"] for c in report["candidates"]),
                           "after": report["after"]["val_ndcg"], "after_label": report["after"]["label"],
                           "p_value": report.get("p_value"), "kept_preset": report.get("kept_preset")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{args.domain}: BM25 {result['bm25']:.4f}, unadapted {result['against_ndcg']:.4f} , adapted "
          f"{result['ndcg']:.4f} (p {result['p_vs_against']:.3f} vs unadapted, {result['p_vs_bm25']:.3f} vs BM25)")


if __name__ == "__main__":
    main()
