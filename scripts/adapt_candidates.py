"""Diagnose zero-label adaptation: every candidate adapt tried, its score on the held-out written lists beside its
score on the domain's real judged queries (from the capture pool). Real qrels only report here: adapt chose
without them. Answers whether written lists rank candidates as real queries would.

    PYTHONPATH=src python scripts/adapt_candidates.py --pool runs/pool-qwen --domain cranfield \
        --report runs/adapted2-cranfield.json --preset runs/preset-lodo-cranfield \
        --out results/adapted2-cranfield-candidates-qwen.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import load_pool  # noqa: E402
from robust_choice import VALIDATION, per_query, validation_domains  # noqa: E402

from headrank.checkpoint import CONFIG_NAME, InferenceSettings  # noqa: E402


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    for r, i in enumerate(order):
        out[i] = float(r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--domain", choices=sorted(VALIDATION), required=True)
    parser.add_argument("--report", type=Path, required=True, help="adapt's --report JSON")
    parser.add_argument("--preset", type=Path, required=True, help="the preset adapt started from (its valve)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    valve = InferenceSettings.from_dict(json.loads((args.preset / CONFIG_NAME).read_text()).get("inference")).safety_valve
    dom = validation_domains(load_pool(args.pool, 24, 14))[args.domain]
    heads = dom.obs.heads
    rows = []
    for c in report["candidates"]:
        idx = [heads.index(tuple(h)) for h in c["heads"]]
        w = torch.tensor(c["weights"] or [1.0] * len(idx))
        real = sum(per_query(dom, idx, w, c["fuse"] or 0.0, valve)) / dom.total
        rows.append({"label": c["label"], "fuse": c["fuse"], "written": c["val_ndcg"], "real": real})
        print(f"{c['label']:<34} written {c['val_ndcg']:.4f}  real {real:.4f}")
    written, real = [r["written"] for r in rows], [r["real"] for r in rows]
    best = max(rows, key=lambda r: round(r["written"], 6))
    result = {"domain": args.domain, "report": str(args.report), "bm25": sum(dom.bm25) / dom.total, "rows": rows,
              "pearson": statistics.correlation(written, real),
              "spearman": statistics.correlation(ranks(written), ranks(real)),
              "best_on_written": best, "preset": rows[0]}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{args.domain}: written vs real, Pearson {result['pearson']:.2f}, Spearman {result['spearman']:.2f}; best on "
          f"written lists {best['label']} real {best['real']:.4f} vs the preset {rows[0]['real']:.4f}")


if __name__ == "__main__":
    main()
