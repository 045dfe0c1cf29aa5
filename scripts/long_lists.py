"""Issue 30 item 4: what depth buys. The default preset on DL19 at K = 20 (one prompt) and at K = 100 (windows of
20, fusion and valve in each window), beside BM25, from recorded evaluate runs; a table from results/.

    PYTHONPATH=src python scripts/long_lists.py record --k20 runs/eval-raw --k100 runs/eval-k100 \
        --bm25 runs/eval-bm25-k100 --out results/long-lists-qwen.json
    PYTHONPATH=src python scripts/long_lists.py table
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
FILE = "long-lists-qwen.json"


def run_metrics(folder: Path, method: str, depth: int, benchmark: str = "dl19") -> dict:
    """The metrics.json of one run in an evaluate output folder (by method and depth)."""
    for path in sorted(folder.glob(f"{benchmark}-*/metrics.json")):
        data = json.loads(path.read_text())
        if data["settings"]["method"] == method and data["settings"]["depth"] == depth:
            return data
    raise SystemExit(f"{folder}: no {method} run at K = {depth} of {benchmark}")


def record(args) -> None:
    from headrank.eval.compare import sign_flip_p_value

    method = "heads+rrf0.6+valve"
    runs = {"k20": run_metrics(args.k20, method, 20), "k100": run_metrics(args.k100, method, 100),
            "bm25": run_metrics(args.bm25, "bm25", 100)}
    ndcg = {name: {q: v["nDCG@10"] for q, v in r["per_query"].items()} for name, r in runs.items()}
    qids = sorted(ndcg["k100"])
    rows = {}
    for name, r in runs.items():
        recall = next(v for k, v in r["metrics"].items() if k.startswith("R("))
        rows[name] = {"ndcg@10": r["metrics"]["nDCG@10"], "recall@K": recall, "depth": r["settings"]["depth"],
                      "window": r["settings"].get("window"), "latency_s": r.get("mean_latency_s"),
                      "command_folder": str(r["run_file"]).rsplit("/", 1)[0] if r.get("run_file") else None}
    for a, b in (("k100", "k20"), ("k100", "bm25"), ("k20", "bm25")):
        rows[a][f"p_vs_{b}"] = sign_flip_p_value([ndcg[a][q] - ndcg[b][q] for q in qids], 20000, 0)
    (args.out).write_text(json.dumps({"benchmark": "dl19", "queries": len(qids), "method": method, "rows": rows},
                                     indent=1))


def table() -> str:
    data = json.loads((RESULTS / FILE).read_text())
    rows = data["rows"]
    label = {"bm25": "BM25 (first stage)", "k20": "default preset, one prompt of 20",
             "k100": "default preset, windows of 20 over the top 100"}
    lines = ["| DL19 (43 queries) | K | nDCG@10 | Recall@K (rel >= 2) | p vs K = 20 | p vs BM25 | prompts of 20 "
             "passages per query |", "|---|---|---|---|---|---|---|"]
    for name in ("bm25", "k20", "k100"):
        r = rows[name]
        windows = 1 + -(-(r["depth"] - r["window"]) // (r["window"] // 2)) if r["window"] else 1
        prompts = "0" if name == "bm25" else str(windows)
        p20 = f"{r['p_vs_k20']:.3f}" if "p_vs_k20" in r else ""
        pbm = f"{r['p_vs_bm25']:.3f}" if "p_vs_bm25" in r else ""
        lines.append(f"| {label[name]} | {r['depth']} | {r['ndcg@10']:.4f} | {r['recall@K']:.4f} | {p20} | {pbm} | "
                     f"{prompts} |")
    return "\n".join(lines) + "\n"


def deep_rule_table() -> str:
    """The validation check of the deep-rerank rule (scripts/deep_rule.py, results/deep-rule-dl21-qwen.json)."""
    data = json.loads((RESULTS / "deep-rule-dl21-qwen.json").read_text())
    label = {"bm25": "BM25 (first stage)", "A-per-window": "fusion + valve in each window (shipped rule)",
             "B-fuse-once": "windows by attention alone, fused once with BM25 (RRF 0.6)",
             "raw-windows": "windows by attention alone, no fusion"}
    lines = [f"| DL21 validation ({data['queries']} queries), K = 100, windows of 20 | nDCG@10 |", "|---|---|"]
    lines += [f"| {label[name]} | {data['ndcg@10'][name]:.4f} |" for name in ("bm25", "A-per-window", "B-fuse-once",
                                                                            "raw-windows")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    for flag in ("--k20", "--k100", "--bm25", "--out"):
        rec.add_argument(flag, type=Path, required=True)
    sub.add_parser("table")
    sub.add_parser("deep-rule")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        print(table() if args.command == "table" else deep_rule_table(), end="")


if __name__ == "__main__":
    main()
