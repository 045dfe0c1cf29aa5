"""Fill a preset's model card with measured numbers: quality rows from finished `headrank evaluate` summaries,
latency rows from `benchmarks/preset_card.py`, and fixed reference rows (BM25, ICR) as recorded in RESULTS.md.

    python scripts/preset_card_numbers.py PRESET_DIR --summary runs/summary-...json [--fused] \
        --latency lat.json --reference reference.json [--card-extra extra.json]

reference.json: {"rows": [{"method": ..., "ndcg@10": {"dl19": ..., ...}}], "source": "..."}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from headrank.checkpoint import uses_adapter
from headrank.presets.card import update_card

SETS = ("dl19", "dl20", "noveleval", "nfcorpus")


def quality_row(summary: dict, fused: bool, label: str) -> dict:
    results = summary["fused_results" if fused else "results"]
    values = {r["benchmark"]: r["metrics"]["nDCG@10"] for r in results}
    row = {s: values[s] for s in SETS}
    row["average"] = sum(row.values()) / len(SETS)
    return {"method": label, "ndcg@10": row}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset", type=Path)
    parser.add_argument("--summary", type=Path)
    parser.add_argument("--fused", action="store_true", help="the preset's setting is the fused method")
    parser.add_argument("--label", default="this preset (its inference settings)")
    parser.add_argument("--latency", type=Path)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--card-extra", type=Path)
    args = parser.parse_args()
    reference = json.loads(args.reference.read_text())
    rows = []
    if args.summary:
        summary = json.loads(args.summary.read_text())
        rows.append(quality_row(summary, args.fused, args.label))
        if args.fused:
            adapter = uses_adapter(args.preset)
            rows.append(quality_row(summary, False, f"same heads{' and adapter' if adapter else ''}, without the "
                                                    "fusion or the valve"))
    rows += reference.get("preset_rows", [])
    for row in reference["rows"]:
        values = dict(row["ndcg@10"])
        values.setdefault("average", sum(values[s] for s in SETS) / len(SETS))
        rows.append({"method": row["method"], "ndcg@10": values})
    by_method = {r["method"]: r["ndcg@10"]["average"] for r in rows}
    card = {"quality": rows, "quality_source": reference["source"],
            "four_set_ndcg@10": {"preset": rows[0]["ndcg@10"]["average"], "bm25": by_method["BM25"],
                                 "icr": next(v for k, v in by_method.items() if k.startswith("ICR"))}}
    if args.latency:
        measured = json.loads(args.latency.read_text())
        card["latency"] = measured["latency"]
        meta = measured["latency_meta"]
        card["latency_source"] = (f"`PYTHONPATH=src python benchmarks/preset_card.py --preset {args.preset.name} "
                                  f"--queries {meta['lists']}`: mean over the first {meta['lists']} DL19 lists "
                                  f"(after one warm-up), {meta['threads']} torch threads, torch {meta['torch']}, "
                                  "float32 on this project's 2-core CPU machine, methods timed one after the other "
                                  "in one process.")
    if args.card_extra:
        card.update(json.loads(args.card_extra.read_text()))
    preset = update_card(args.preset, card)
    print(json.dumps(preset.headline, indent=2))


if __name__ == "__main__":
    main()
