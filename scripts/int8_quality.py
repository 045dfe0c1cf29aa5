"""int8 against float32, paired per query: a preset's scores on the same lists in both modes, resumably.

Every list is scored twice in one process, by the preset in float32 and by the same preset with int8 linear
layers (``headrank.engine.quantize``), without fusion or valve; ``--summary`` then applies the preset's own rule
(``rule.final_scores``: its fusion and valve) to both, computes nDCG@10 per query with ir-measures, and tests
the paired differences per set (sign-flip randomization, ``headrank.eval.compare``). The sets: the five validation
domains of the preset's choice (the lists of ``validation_scores.py``) and the four reporting sets (every
query, BM25 top 20). One JSON line per list: set, qid, docids, both modes' scores and the run's key (preset
files, quantization format and parts); a rerun resumes only lines with this key and the same docids.

    PYTHONPATH=src python scripts/int8_quality.py --preset headrank-qwen2.5-coder-0.5b \
        --out runs/int8-quality-qwen.jsonl --summary results/int8-quality-qwen.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from headrank.batch import RankerSpec
from headrank.data.benchmarks import load_set
from headrank.data.formats import appendable_lines
from headrank.engine.presets import load_preset
from headrank.engine.quantize import DEFAULT_PARTS, FORMAT
from headrank.engine.ranker import HeadRanker
from headrank.learn.pool import VALIDATION_PLAN, PlanItem, pick_queries, plan_lists

REPORTING_PLAN = ("dl19:all", "dl20:all", "noveleval:all", "nfcorpus:all")
# The order runs the small sets first, so that a stopped run has whole sets to show.
PLAN = (*REPORTING_PLAN[:3], *VALIDATION_PLAN, REPORTING_PLAN[3])
MODES = ("float32", "int8")


def run_key(preset: str) -> str:
    spec = {**RankerSpec(preset, dtype="float32").fingerprint(), "int8": FORMAT, "parts": list(DEFAULT_PARTS)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def finished(path: Path, key: str) -> dict[tuple[str, str], dict]:
    """(set, qid) -> row of the lists already scored with this key (a torn last line is dropped)."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in appendable_lines(path)]
    others = {row.get("key") for row in rows} - {key}
    if others:
        raise SystemExit(f"{path} holds scores of another run (key {sorted(map(str, others))[0]}, this one {key}); "
                         "pass a new --out")
    return {(row["set"], row["qid"]): row for row in rows}


def score_lists(preset: str, out: Path, plan: list[str], seed: int) -> None:
    rankers = {"float32": HeadRanker.from_pretrained(preset, device="cpu", dtype="float32", quantize="none"),
               "int8": HeadRanker.from_pretrained(preset, device="cpu", dtype="float32", quantize="int8")}
    key = run_key(preset)
    done = finished(out, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as sink:
        for item in plan:
            plan_item = PlanItem.parse(f"{item}:first-stage")
            set_name, lists = plan_item.set_name, plan_lists(plan_item, rankers["float32"].heads, seed)
            started, ran = time.time(), 0
            for n, (qid, query, docs) in enumerate(lists):
                docids = [d for d, _ in docs]
                if (set_name, qid) in done and done[(set_name, qid)]["docids"] == docids:
                    continue
                texts = [t for _, t in docs]
                row = {"set": set_name, "qid": qid, "docids": docids, "key": key}
                for mode, ranker in rankers.items():
                    row[mode] = ranker.score(query, texts, fuse_first_stage=0, safety_valve=False)
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                ran += 1
                per_list = (time.time() - started) / ran
                logging.info("%s %d/%d %.1fs/list, eta for this set %.0f min", item, n + 1, len(lists), per_list,
                             per_list * (len(lists) - n - 1) / 60)


def ndcg_per_query(rows: list[dict], mode: str, bench, fuse, valve) -> dict[str, float]:
    """nDCG@10 of each list ranked by the preset's rule on ``mode``'s scores (ir-measures, trec_eval semantics)."""
    import ir_measures
    from ir_measures import nDCG

    from headrank.engine.rule import final_scores

    run = []
    for row in rows:
        final = final_scores(row[mode], fuse, valve).scores
        run += [ir_measures.ScoredDoc(row["qid"], d, float(s)) for d, s in zip(row["docids"], final)]
    qrels = [ir_measures.Qrel(q, d, g) for q in {r["qid"] for r in rows} for d, g in bench.qrels.get(q, {}).items()]
    out = {r["qid"]: 0.0 for r in rows}
    for metric in ir_measures.iter_calc([nDCG @ 10], qrels, run):
        out[metric.query_id] = float(metric.value)
    return out


def summarize(preset: str, scores: Path, plan: list[str]) -> dict:
    from headrank.eval.compare import sign_flip_p_value

    config = load_preset(preset)
    fuse, valve = config.inference.fuse_first_stage, config.inference.safety_valve
    from headrank.engine.heads import HeadSet

    rows = list(finished(scores, run_key(preset)).values())
    heads = HeadSet.load(config.path / "headset.json")
    sets = {}
    for item in plan:
        set_name, which = item.split(":")
        mine = [r for r in rows if r["set"] == set_name]
        if not mine:
            continue
        bench = load_set(set_name)
        planned = len(pick_queries(bench, which, heads, 0))
        per = {mode: ndcg_per_query(mine, mode, bench, fuse, valve) for mode in MODES}
        diffs = [per["int8"][q] - per["float32"][q] for q in per["float32"]]
        fired = {m: sum(bool(valve and valve.fires(r[m])) for r in mine) for m in MODES}
        sets[set_name] = {
            "queries": len(mine), "planned": planned, "complete": len(mine) >= planned,
            "float32": statistics.fmean(per["float32"].values()),
            "int8": statistics.fmean(per["int8"].values()), "diff": statistics.fmean(diffs),
            "p_value": sign_flip_p_value(diffs) if any(diffs) else 1.0,
            "queries_changed": sum(abs(d) > 1e-9 for d in diffs), "valve_fired": fired,
            "per_query": {q: [per["float32"][q], per["int8"][q]] for q in per["float32"]},
        }
    return {"preset": preset, "setting": config.inference.describe(), "quantize": {"format": FORMAT,
            "parts": list(DEFAULT_PARTS)}, "torch": torch.__version__, "sets": sets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", type=Path, required=True, help="per-list scores (JSON lines, resumable)")
    parser.add_argument("--summary", type=Path, help="write the paired per-set comparison here (JSON)")
    parser.add_argument("--plan", nargs="+", default=list(PLAN), help="SET:WHICH as in headrank pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summary-only", action="store_true", help="summarize what --out holds; score nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if not args.summary_only:
        score_lists(args.preset, args.out, args.plan, args.seed)
    if args.summary:
        result = summarize(args.preset, args.out, args.plan)
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(result, indent=1) + "\n")
        for name, row in result["sets"].items():
            print(f"{name:14s} n={row['queries']:4d} float32 {row['float32']:.4f} int8 {row['int8']:.4f} "
                  f"diff {row['diff']:+.4f} p {row['p_value']:.3f}")


if __name__ == "__main__":
    main()
