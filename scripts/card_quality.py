"""The presets' quality tables from recorded result files: every row of a card's "Quality" table is read from a
file in ``results/`` named by ``scripts/cards/quality-<preset>.json``, never typed by hand.

    PYTHONPATH=src python scripts/card_quality.py check            # exit 1 and name every card row that differs
    PYTHONPATH=src python scripts/card_quality.py write            # rewrite the cards' quality rows (and READMEs)
    PYTHONPATH=src python scripts/card_quality.py record-summary runs/x/summary-....json --command "headrank ..." \
        --out results/eval-x.json                                  # keep an evaluate summary as a recorded result
    PYTHONPATH=src python scripts/card_quality.py record-scores results/int8-quality-qwen-scores.jsonl \
        --column float32 --command "..." --out results/eval-unfused-qwen.json   # nDCG@10 of recorded per-list scores

A spec row is ``{"method": label, "source": "results/<file>.json", "values": PATH}`` where PATH is a dotted path
with ``{set}`` for the benchmark (``sets.{set}.float32``), or ``summary:results`` / ``summary:fused_results`` for
an evaluate summary (its per-benchmark nDCG@10). ``tests/test_documents.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "scripts" / "cards"
SETS = ("dl19", "dl20", "noveleval", "nfcorpus")


def set_values(source: dict, values: str) -> dict[str, float]:
    """nDCG@10 per reporting set from one recorded file."""
    if values.startswith("summary:"):
        results = source[values.split(":", 1)[1]]
        found = {r["benchmark"]: r["metrics"]["nDCG@10"] for r in results}
    else:
        found = {}
        for name in SETS:
            node = source
            for key in values.format(set=name).split("."):
                node = node[key]
            found[name] = node
    missing = [s for s in SETS if s not in found]
    if missing:
        raise ValueError(f"{values}: no value for {', '.join(missing)}")
    return {s: float(found[s]) for s in SETS}


def per_query(preset: str, method_prefix: str, name: str) -> dict[str, float] | None:
    """One row's nDCG@10 per query on one reporting set, where its recorded file keeps them (else None): an
    evaluate summary's ``per_query``, or the spec's ``per_query`` path (``{set}``) and ``per_query_index``."""
    spec = json.loads((SPECS / f"quality-{preset}.json").read_text(encoding="utf-8"))
    row = next(r for r in spec["rows"] if r["method"].startswith(method_prefix))
    if row.get("pending"):
        return None
    source = json.loads((ROOT / row["source"]).read_text(encoding="utf-8"))
    if row["values"].startswith("summary:"):
        found = next(r for r in source[row["values"].split(":", 1)[1]] if r["benchmark"] == name)
        return found.get("per_query")
    if "per_query" not in row:
        return None
    node = source
    for key in row["per_query"].format(set=name).split("."):
        node = node[key]
    index = row.get("per_query_index")
    return {qid: float(v if index is None else v[index]) for qid, v in node.items()}


def spec_rows(preset: str) -> tuple[list[dict], str]:
    """The card's quality rows as its spec's result files give them, and the rows' source note. A row whose
    spec has ``"pending"`` (the run that records it not yet done) keeps the card's value and says so; the
    test lists such rows by name, so there can be no silent one."""
    spec = json.loads((SPECS / f"quality-{preset}.json").read_text(encoding="utf-8"))
    card = {r["method"]: r for r in card_of(preset).get("quality", [])}
    rows = []
    for row in spec["rows"]:
        if row.get("pending"):
            rows.append({"method": row["method"], "ndcg@10": card[row["method"]]["ndcg@10"], "pending": row["pending"]})
            continue
        source = json.loads((ROOT / row["source"]).read_text(encoding="utf-8"))
        values = set_values(source, row["values"])
        values["average"] = sum(values.values()) / len(SETS)
        rows.append({"method": row["method"], "ndcg@10": values, "source": row["source"]})
    notes = [f"{r['method']}: not yet in results/ ({r['pending']})" if r.get("pending")
             else f"{r['method']}: `{r['source']}` ({r['command']})" for r in spec["rows"]]
    return rows, spec["note"] + " Rows and their recorded files: " + "; ".join(notes) + "."


def pending_rows() -> list[str]:
    """``preset: row`` for every quality row still awaiting its recorded file."""
    return [f"{preset}: {r['method']}" for preset in presets() for r in spec_rows(preset)[0] if r.get("pending")]


def presets() -> list[str]:
    return sorted(p.name[len("quality-"):-len(".json")] for p in SPECS.glob("quality-*.json"))


def card_of(preset: str) -> dict:
    path = ROOT / "src" / "headrank" / "presets" / preset / "headrank_config.json"
    return json.loads(path.read_text(encoding="utf-8"))["card"]


def stale_cards() -> list[str]:
    """``preset: row`` for every card quality row (or headline) that differs from its recorded file."""
    stale = []
    for preset in presets():
        rows, note = spec_rows(preset)
        card = card_of(preset)
        shown = {r["method"]: r for r in card.get("quality", [])}
        if [r["method"] for r in card.get("quality", [])] != [r["method"] for r in rows]:
            stale.append(f"{preset}: rows {list(shown)} instead of {[r['method'] for r in rows]}")
        for row in rows:
            if shown.get(row["method"], {}).get("ndcg@10") != row["ndcg@10"]:
                stale.append(f"{preset}: {row['method']}")
        if card.get("four_set_ndcg@10") != headline(rows) or card.get("quality_source") != note:
            stale.append(f"{preset}: headline or source note")
    return stale


def headline(rows: list[dict]) -> dict:
    """The card's four-set averages of the preset (first row), BM25 and ICR."""
    by_method = {r["method"]: r["ndcg@10"]["average"] for r in rows}
    return {"preset": rows[0]["ndcg@10"]["average"], "bm25": by_method["BM25"],
            "icr": next(v for k, v in by_method.items() if k.startswith("ICR"))}


def write_cards() -> None:
    from headrank.learn.card import update_card

    for preset in presets():
        rows, note = spec_rows(preset)
        update_card(ROOT / "src" / "headrank" / "presets" / preset,
                    {"quality": rows, "quality_source": note, "four_set_ndcg@10": headline(rows)})


def record_summary(summary: Path, command: str, out: Path) -> None:
    """An evaluate summary kept as a recorded result, with the command that made it and each query's nDCG@10
    (from the runs' metrics.json; run paths dropped)."""
    data = json.loads(summary.read_text(encoding="utf-8"))
    for key in ("results", "fused_results"):
        for result in data.get(key, []):
            metrics = Path(result.pop("run_file")).parent / "metrics.json"  # the run's per-query measures
            per_query = json.loads(metrics.read_text(encoding="utf-8"))["per_query"]
            result["per_query"] = {qid: m["nDCG@10"] for qid, m in per_query.items()}
    data = {"command": command, "recorded": date.today().isoformat()} | data
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def record_scores(scores: Path, column: str, command: str, out: Path) -> None:
    """nDCG@10 per reporting set of per-list scores recorded as JSON lines ({set, qid, docids, <column>})."""
    from headrank.data.benchmarks import load_benchmark
    from headrank.eval.evaluate import QueryRecord, compute_metrics

    rows = [json.loads(line) for line in scores.read_text(encoding="utf-8").splitlines() if line.strip()]
    sets = {}
    for name in SETS:
        bench = load_benchmark(name)
        records = [QueryRecord(r["qid"], r["docids"], r[column], 0.0) for r in rows if r["set"] == name]
        metrics, _ = compute_metrics(records, bench.qrels, bench.relevant_grade, len(records[0].docids))
        sets[name] = {"queries": len(records), "ndcg": metrics["nDCG@10"]}
    out.write_text(json.dumps({"command": command, "scores": str(scores), "column": column,
                               "recorded": date.today().isoformat(), "sets": sets}, indent=1) + "\n",
                   encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("check")
    sub.add_parser("write")
    queries = sub.add_parser("per-query", help="one row's per-query nDCG@10 per set, as JSON (scripts/documents.py)")
    queries.add_argument("preset")
    queries.add_argument("method_prefix")
    summary = sub.add_parser("record-summary")
    summary.add_argument("summary", type=Path)
    scores = sub.add_parser("record-scores")
    scores.add_argument("scores", type=Path)
    scores.add_argument("--column", required=True)
    for p in (summary, scores):
        p.add_argument("--command", required=True, help="the command that produced the run")
        p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.action == "record-summary":
        record_summary(args.summary, args.command, args.out)
    elif args.action == "record-scores":
        record_scores(args.scores, args.column, args.command, args.out)
    elif args.action == "write":
        write_cards()
    elif args.action == "per-query":
        print(json.dumps({s: per_query(args.preset, args.method_prefix, s) for s in SETS}))
    elif stale := stale_cards():
        print("cards differ from their recorded results (run scripts/card_quality.py write):\n  " + "\n  ".join(stale))
        sys.exit(1)
    else:
        print("every card quality row matches its recorded result file")


if __name__ == "__main__":
    main()
