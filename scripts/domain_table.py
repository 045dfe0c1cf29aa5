"""Issue 30's per-domain table (docs/research/fusion-and-valve.md, "Safe on a new domain"), generated from recorded result files.

    # record a four-set evaluation (runs/ is not kept; results/ is):
    PYTHONPATH=src python scripts/domain_table.py record --eval runs/eval-robust --method heads+rrf0.6+valve \
        --bm25 runs/eval-bm25 --out results/eval-robust-qwen.json
    # print the table from results/:
    PYTHONPATH=src python scripts/domain_table.py table

    # the previous default's per-query runs on the reporting sets, for paired tests against it:
    PYTHONPATH=src python scripts/domain_table.py record --eval runs/eval-previous --method heads+rrf0.5 \
        --bm25 runs/eval-bm25 --out results/eval-previous-qwen.json

Validation domains come from ``results/robust-choice-qwen.json`` (scripts/robust_choice.py) and
``results/adapted2-<domain>-qwen.json`` (scripts/score_on_pool.py); reporting sets from
``results/eval-robust-qwen.json`` and ``results/eval-previous-qwen.json`` (without the latter, the previous
default's row is the one its successor's card records, and no paired test is shown).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
REPORTING = ("dl19", "dl20", "noveleval", "nfcorpus")


def previous_default() -> dict[str, float]:
    """The previous default's reporting-set nDCG@10, as its successor's card records it (issue 18;
    docs/research/head-selection.md)."""
    from headrank.engine.presets import DEFAULT_PRESET, load_preset

    row = next(r for r in load_preset(DEFAULT_PRESET).card["quality"] if r["method"].startswith("previous default"))
    return {name: row["ndcg@10"][name] for name in REPORTING}


def paired_p(mine: dict[str, float], other: dict[str, float]) -> float:
    """Paired sign-flip p-value over one set's queries (same seed and draws as the other tables)."""
    return macro_p({"set": mine}, {"set": other})


NAMES = {"dl21-val": "DL21 validation", "nfcorpus-dev": "NFCorpus dev", "cranfield": "Cranfield", "cisi": "CISI",
         "npl": "NPL", "dl19": "DL19", "dl20": "DL20", "noveleval": "NovelEval", "nfcorpus": "NFCorpus test"}


def per_query(run_dir: Path, method: str) -> dict[str, dict[str, float]]:
    """{benchmark: {qid: nDCG@10}} from an evaluate output folder's metrics.json files of one method."""
    out = {}
    for metrics in sorted(run_dir.glob("*/metrics.json")):
        data = json.loads(metrics.read_text())
        if data["settings"]["method"] == method:
            out[data["settings"]["benchmark"]] = {q: v["nDCG@10"] for q, v in data["per_query"].items()}
    return out


def record(args) -> None:
    from headrank.eval.compare import sign_flip_p_value

    mine, bm25 = per_query(args.eval, args.method), per_query(args.bm25, "bm25")
    sets = {}
    for name in REPORTING:
        if name not in mine:
            sys.exit(f"{args.eval} has no {args.method} run of {name}")
        qids = sorted(mine[name])
        diffs = [mine[name][q] - bm25[name][q] for q in qids]
        sets[name] = {"ndcg": sum(mine[name].values()) / len(qids), "bm25": sum(bm25[name][q] for q in qids) / len(qids),
                      "queries": len(qids), "p_vs_bm25": sign_flip_p_value(diffs, 20000, 0), "per_query": mine[name]}
    args.out.write_text(json.dumps({"method": args.method, "eval": str(args.eval), "sets": sets}, indent=1))


def macro_p(mine: dict[str, dict[str, float]], other: dict[str, dict[str, float]]) -> float:
    """Paired sign-flip p of the difference in the mean over sets of per-set means (the "four-set average"):
    each query's difference is weighted by 1 / (sets x its set's queries), so small sets count as much as large."""
    from headrank.eval.compare import sign_flip_p_value

    total = sum(len(q) for q in mine.values())
    diffs = []
    for name, queries in mine.items():
        if set(queries) != set(other[name]):
            raise ValueError(f"{name}: the two runs scored different queries")
        weight = total / (len(mine) * len(queries))
        diffs += [weight * (queries[q] - other[name][q]) for q in sorted(queries)]
    return sign_flip_p_value(diffs, 20000, 0)


def zero_label_cell(dom: str) -> str:
    """The domain table's zero-label column: the second design, adapted from the domain's leave-one-domain-out
    preset, with its paired p against that preset (the first design's rows are in the zero-label table)."""
    path = RESULTS / f"adapted2-{dom}-qwen.json"
    if not path.is_file():
        return "no corpus here" if dom == "dl21-val" else "not run"
    r = json.loads(path.read_text())
    return f"{r['ndcg']:.4f} ({r['p_vs_against']:.2f}{', kept' if r['adapt']['kept_preset'] else ''})"


def table() -> str:
    """The markdown table (docs/research/fusion-and-valve.md, "Safe on a new domain") from results/*.json."""
    robust = json.loads((RESULTS / "robust-choice-qwen.json").read_text())
    report = json.loads((RESULTS / "eval-robust-qwen.json").read_text())["sets"]
    recorded = RESULTS / "eval-previous-qwen.json"
    prev_runs = json.loads(recorded.read_text())["sets"] if recorded.is_file() else None
    previous = {n: prev_runs[n]["ndcg"] for n in REPORTING} if prev_runs else previous_default()
    lines = ["| domain | role | queries | BM25 | previous default | new default | new - BM25 (p) | new - previous "
             "(p) | leave-one-domain-out estimate - BM25 | zero-label adapted from it (p vs it) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dom in robust["bm25"]:
        new, old = robust["chosen"]["ndcg"][dom], robust["shipped"]["ndcg"][dom]
        lines.append(f"| {NAMES[dom]} | validation | {robust['queries'][dom][1]} | {robust['bm25'][dom]:.4f} | "
                     f"{old:.4f} | {new:.4f} | {new - robust['bm25'][dom]:+.4f} ({robust['p'][dom]['vs_bm25']:.2f}) | "
                     f"{new - old:+.4f} ({robust['p'][dom]['vs_shipped']:.2f}) | {robust['lodo'][dom]['gain']:+.4f} | "
                     f"{zero_label_cell(dom)} |")
    for name in REPORTING:
        s = report[name]
        vs_prev = (f"{s['ndcg'] - previous[name]:+.4f} ({paired_p(s['per_query'], prev_runs[name]['per_query']):.2f})"
                   if prev_runs else "not run")
        lines.append(f"| {NAMES[name]} | reporting | {s['queries']} | {s['bm25']:.4f} | {previous[name]:.4f} | "
                     f"{s['ndcg']:.4f} | {s['ndcg'] - s['bm25']:+.4f} ({s['p_vs_bm25']:.2f}) | {vs_prev} | | |")
    mean = sum(report[n]["ndcg"] for n in REPORTING) / len(REPORTING)
    old_mean = sum(previous.values()) / len(REPORTING)
    vs_prev = f"{mean - old_mean:+.4f}"
    if prev_runs:
        vs_prev += f" ({macro_p(*({n: r[n]['per_query'] for n in REPORTING} for r in (report, prev_runs))):.2f})"
    lines.append(f"| four reporting sets | | | {sum(report[n]['bm25'] for n in REPORTING) / 4:.4f} | "
                 f"{old_mean:.4f} | **{mean:.4f}** | | {vs_prev} | | |")
    return "\n".join(lines) + "\n"


def diagnostic(dom: str, version: str = "adapted2") -> str:
    """The best-on-written candidate's real score and the written/real rank correlation (adapt_candidates.py)."""
    path = RESULTS / f"{version}-{dom}-candidates-qwen.json"
    if not path.is_file():
        return "not run | not run"
    c = json.loads(path.read_text())
    return f"{c['best_on_written']['real']:.4f} ({c['best_on_written']['label']}) | {c['spearman']:+.2f}"


def zero_label_table() -> str:
    """Zero-label adaptation v2 (docs/research/adaptation.md): per classic collection, adapted from the
    preset that never saw it (leave-one-domain-out) against that preset, from ``results/adapted2-<domain>-qwen.json``
    (scripts/score_on_pool.py with --adapt-report and --also)."""
    lines = ["| domain | written lists (train / held out) | held out: LODO preset -> best candidate | adapt's "
             "decision | BM25 | LODO preset | adapted (p vs LODO) | shipped default (saw this domain) | diagnostic: "
             "best written candidate on real queries | diagnostic: written vs real, Spearman over candidates |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dom in ("cranfield", "cisi", "npl", "nfcorpus-dev", "dl21-val"):
        path = RESULTS / f"adapted2-{dom}-qwen.json"
        if dom == "dl21-val" and not path.is_file():  # DL21 comes as BM25 lists only: no corpus to write for
            lines.append(f"| {NAMES[dom]} | no corpus in shared/data (BM25 lists only) | | | | | | | | |")
            continue
        if not path.is_file():
            lines.append(f"| {NAMES[dom]} | not run | | | | | | | | |")
            continue
        r = json.loads(path.read_text())
        a = r["adapt"]
        decision = (f"kept the preset (p {a['p_value']:.2f})" if a["kept_preset"] else
                    "preset best" if a["p_value"] is None else f"adopted {a['after_label']} (p {a['p_value']:.3f})")
        name = NAMES[dom] + (" (pseudo-corpus¹)" if dom == "dl21-val" else "")
        lines.append(f"| {name} | {a['lists'][0]} / {a['lists'][1]} | {a['before']:.4f} -> {a['best']:.4f} | "
                     f"{decision} | {r['bm25']:.4f} | {r['against_ndcg']:.4f} | {r['ndcg']:.4f} "
                     f"({r['p_vs_against']:.2f}) | {r['also_ndcg']:.4f} | {diagnostic(dom)} |")
    if (RESULTS / "adapted2-dl21-val-qwen.json").is_file():
        lines += ["", "¹ MS MARCO v2 is not here: the corpus is the union of DL21's BM25 top-100 passages (5,299; "
                  "`scripts/pseudo_corpus.py`), gathered by its own queries, so denser around their topics than the "
                  "real collection; 13 judged queries."]
    lines += ["", "First design for comparison (prompt v1, every list whose source BM25 finds, no guard, from the shipped "
              "default):", "", "| domain | best written candidate on real queries | written vs real, Spearman over "
              "candidates |", "|---|---|---|"]
    lines += [f"| {NAMES[dom]} | {diagnostic(dom, 'adapted')} |" for dom in ("cranfield", "cisi", "npl")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--eval", type=Path, required=True)
    rec.add_argument("--method", required=True)
    rec.add_argument("--bm25", type=Path, required=True)
    rec.add_argument("--out", type=Path, required=True)
    sub.add_parser("table")
    sub.add_parser("zero-label")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        print(table() if args.command == "table" else zero_label_table(), end="")


if __name__ == "__main__":
    main()
