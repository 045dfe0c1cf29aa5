"""Which way of fusing the heads' scores with the first-stage order: rank fusion (RRF, shipped) or score fusion
(z-scores), chosen on issue 30's five validation domains by issue 30's rule, with a leave-one-domain-out
estimate; then, once, the chosen setting on the reporting sets' recorded attention scores.

RRF keeps only ranks: a list where the heads put one passage far above the rest (a confident answer) fuses
exactly like one where they barely prefer it. Score fusion, (1 - w) z(attention) + w z(-first-stage rank), keeps
that margin, so a confident head can move a passage up against the input order and an unsure one cannot.
Both families get the same grid of weights and the same safety valves (``scripts/robust_choice.py``: none, or a
signal below a quantile of the fold's lists -> first-stage weight 0.8 or 1), on the shipped preset's own
attention scores (``scripts/validation_scores.py``; no capture here).

    PYTHONPATH=src python scripts/fusion_forms.py --scores runs/val-scores-qwen.jsonl --out runs/fusion-forms.json \
        [--reporting runs/eval-default-s18 [--reporting-against OTHER_RUN]]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import load_set  # noqa: E402
from robust_choice import FUSIONS, VALVE_QUANTILES, VALVE_WEIGHTS, objective  # noqa: E402

from headrank.compare import sign_flip_p_value  # noqa: E402
from headrank.fusion import fuse_with_first_stage  # noqa: E402
from headrank.rule import SIGNALS, SafetyValve  # noqa: E402
from headrank.selection import ndcg_at_10  # noqa: E402

PRESET = Path(__file__).resolve().parents[1] / "src" / "headrank" / "presets" / "headrank-qwen2.5-coder-0.5b"
DOMAINS = {"dl21-val": "dl21", "nfcorpus-dev": "nfcorpus-dev", "cranfield": "cranfield", "cisi": "cisi",
           "npl": "npl"}
REPORTING = ("dl19", "dl20", "noveleval", "nfcorpus")


def zscores(values: Sequence[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return [0.0 if math.isfinite(v) else -math.inf for v in values]
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return [(v - mean) / std if std > 0 and math.isfinite(v) else (0.0 if math.isfinite(v) else -math.inf)
            for v in values]


def score_fusion(scores: Sequence[float], weight: float) -> list[float]:
    """(1 - w) z(attention) + w z(-input position); -inf (empty passages) stays -inf."""
    heads, prior = zscores(scores), zscores([-float(i) for i in range(len(scores))])
    return [-math.inf if not math.isfinite(s) else (1 - weight) * h + weight * p
            for s, h, p in zip(scores, heads, prior)]


FORMS = {"rrf": fuse_with_first_stage, "zscore": score_fusion}


def fused(form: str, scores: list[float], weight: float) -> list[float]:
    return list(scores) if not weight else FORMS[form](scores, weight)


def ndcg(scores: list[float], docids: list[str], judged: dict) -> float:
    return float(ndcg_at_10(torch.tensor(scores)[None], docids, judged)[0])


class Domain:
    """One domain's lists: attention scores, docids, qrels, BM25 per query, and how many queries the mean is over."""

    def __init__(self, set_name: str, rows: list[dict]):
        bench = load_set(set_name)
        self.qrels, self.rows = bench.qrels, rows
        with_relevant = {q for q in bench.queries if any(self.qrels[q].get(c.docid, 0) >= bench.relevant_grade
                                                         for c in bench.candidates[q][:20])}
        ids = {r["qid"] for r in rows}
        # as scripts/robust_choice.py: every query with a relevant passage in the top 20 listed -> the mean is
        # over all the set's queries (the rest score 0 under any order); a sample -> over the sample
        self.complete = with_relevant <= ids
        self.total = len(bench.queries) if self.complete else len(rows)
        self.bm25 = torch.tensor([ndcg([-float(k) for k in range(len(r["docids"]))], r["docids"],
                                       self.qrels[r["qid"]]) for r in rows], dtype=torch.float64)
        self.signals = {n: torch.tensor([fn(r["scores"]) for r in rows], dtype=torch.float64)
                        for n, fn in SIGNALS.items()}
        self._cache: dict = {}

    def values(self, form: str, weight: float) -> torch.Tensor:
        if (form, weight) not in self._cache:
            self._cache[form, weight] = torch.tensor(
                [ndcg(fused(form, r["scores"], weight), r["docids"], self.qrels[r["qid"]]) for r in self.rows],
                dtype=torch.float64)
        return self._cache[form, weight]

    def per_query(self, form: str, fuse: float, valve: SafetyValve | None) -> torch.Tensor:
        base = self.values(form, fuse)
        if valve is None:
            return base
        return torch.where(self.signals[valve.signal] < valve.threshold, self.values(form, valve.weight), base)

    def gain(self, values: torch.Tensor) -> float:
        return float(values.sum() - self.bm25.sum()) / self.total


def valves(domains: dict[str, Domain]) -> list[SafetyValve | None]:
    out: list[SafetyValve | None] = [None]
    for n in SIGNALS:
        pooled = torch.cat([d.signals[n] for d in domains.values()])
        pooled = pooled[torch.isfinite(pooled)]
        for q in VALVE_QUANTILES:
            out += [SafetyValve(n, float(torch.quantile(pooled, q)), vw) for vw in VALVE_WEIGHTS]
    return out


def choose(domains: dict[str, Domain], forms: Sequence[str], floor: float = 0.0) -> tuple[tuple, dict]:
    best = None
    for valve in valves(domains):
        for form in forms:
            for fuse in FUSIONS:
                if valve is not None and valve.weight <= fuse:
                    continue
                gains = [d.gain(d.per_query(form, fuse, valve)) for d in domains.values()]
                key = objective(gains, floor)
                if best is None or key > best[0]:
                    best = (key, {"form": form, "fuse": fuse, "valve": valve})
    return best


def shipped_setting(preset: Path) -> dict:
    inference = json.loads((preset / "headrank_config.json").read_text()).get("inference") or {}
    return {"form": inference.get("fusion", "rrf"), "fuse": inference.get("fuse_first_stage") or 0.0,
            "valve": SafetyValve.from_dict(inference.get("safety_valve"))}


def label(setting: dict) -> str:
    valve = setting["valve"].describe() if setting["valve"] else "no valve"
    return f"{setting['form']} w {setting['fuse']}, {valve}"


def reporting_rows(run_root: Path) -> dict[str, list[dict]]:
    """The recorded attention scores of an unfused ``headrank evaluate`` run (one folder per set)."""
    out = {}
    for name in REPORTING:
        folders = sorted(run_root.glob(f"{name}-heads-k20-first-stage-*"))
        if not folders:
            raise SystemExit(f"no unfused {name} run under {run_root}")
        rows = [json.loads(line) for line in (folders[0] / "progress.jsonl").read_text().splitlines() if line]
        # sorted by query id: two runs of the same set pair up query by query whatever order they finished in
        out[name] = sorted(({"qid": r["qid"], "docids": r["docids"], "scores": r["scores"]} for r in rows),
                           key=lambda r: r["qid"])
    return out


def choices(domains: dict) -> dict:
    """Issue 30's choice within each family of forms (RRF, z-score, both), with its leave-one-domain-out gains."""
    report = {}
    for forms in (("rrf",), ("zscore",), ("rrf", "zscore")):
        key, setting = choose(domains, forms)
        lodo = {}
        for held in domains:
            _, fold_setting = choose({n: d for n, d in domains.items() if n != held}, forms)
            lodo[held] = domains[held].gain(domains[held].per_query(fold_setting["form"], fold_setting["fuse"],
                                                                    fold_setting["valve"]))
        gains = {n: d.gain(d.per_query(setting["form"], setting["fuse"], setting["valve"]))
                 for n, d in domains.items()}
        report["+".join(forms)] = {"chosen": label(setting), "key": key, "gain": gains, "lodo": lodo,
                                   "setting": {**setting, "valve": setting["valve"] and setting["valve"].to_dict()}}
        print("+".join(forms), label(setting), {n: round(g, 4) for n, g in gains.items()},
              "LODO", {n: round(g, 4) for n, g in lodo.items()}, flush=True)
    return report


def against(domains: dict, shipped: dict, other: Path, scores: Path) -> dict:
    """The shipped setting on these scores and on ``other`` scores of the same lists, paired per query."""
    other_rows = [json.loads(line) for line in other.read_text().splitlines() if line.strip()]
    report = {"scores": str(other)}
    for name, s_name in DOMAINS.items():
        mine, theirs = domains[name], Domain(s_name, [r for r in other_rows if r["set"] == s_name])
        if [r["qid"] for r in mine.rows] != [r["qid"] for r in theirs.rows]:
            raise SystemExit(f"{other} does not hold the same {s_name} lists as {scores}")
        a, b = (d.per_query(shipped["form"], shipped["fuse"], shipped["valve"]) for d in (mine, theirs))
        report[name] = {"these": float(a.sum()) / mine.total, "against": float(b.sum()) / mine.total,
                        "p": sign_flip_p_value((a - b).tolist(), 20000, 0)}
        print("against", name, {k: round(v, 4) for k, v in report[name].items()})
    return report


def reporting(chosen: dict, shipped: dict, run: Path, run_against: Path | None) -> dict:
    """The chosen and shipped settings on an unfused reporting run (and the shipped preset's own run), once."""
    report = {}
    others = reporting_rows(run_against) if run_against else {}
    for name, set_rows in reporting_rows(run).items():
        d = Domain(name, set_rows)
        if not d.complete:  # a run still going: its mean would be over whichever queries it reached
            raise SystemExit(f"the {name} run under {run} is not finished ({len(set_rows)} lists): "
                             "rerun its evaluate command (it resumes) first")
        a = d.per_query(chosen["form"], chosen["fuse"], chosen["valve"])
        b = d.per_query(shipped["form"], shipped["fuse"], shipped["valve"])
        report[name] = {"chosen": float(a.sum()) / d.total, "shipped": float(b.sum()) / d.total,
                        "bm25": float(d.bm25.sum()) / d.total, "p": sign_flip_p_value((a - b).tolist(), 20000, 0)}
        if others:
            other = Domain(name, others[name])
            if not other.complete or [r["qid"] for r in other.rows] != [r["qid"] for r in d.rows]:
                raise SystemExit(f"{run_against} does not hold the same finished {name} lists")
            c = other.per_query(shipped["form"], shipped["fuse"], shipped["valve"])
            report[name].update(preset=float(c.sum()) / d.total, p_preset=sign_flip_p_value((a - c).tolist(), 20000, 0))
        print(name, {k: round(v, 4) for k, v in report[name].items()})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", type=Path, default=PRESET)
    parser.add_argument("--reporting", type=Path, help="an unfused evaluate run of the preset on the reporting "
                                                       "sets: score the chosen and the shipped setting there")
    parser.add_argument("--reporting-against", type=Path,
                        help="with --reporting: the shipped preset's own unfused run of the same sets; its shipped "
                             "setting there against the chosen setting on --reporting's scores, paired per query")
    parser.add_argument("--against", type=Path, help="other scores of the same lists (e.g. validation_scores.py "
                                                     "--on-base): the shipped setting on both, paired per query")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.scores.read_text().splitlines() if line.strip()]
    domains = {name: Domain(s, [r for r in rows if r["set"] == s]) for name, s in DOMAINS.items()}
    shipped = shipped_setting(args.preset)
    report = {"queries": {n: [len(d.rows), d.total] for n, d in domains.items()},
              "bm25": {n: float(d.bm25.sum()) / d.total for n, d in domains.items()}}
    for n, d in domains.items():
        report.setdefault("shipped_ndcg", {})[n] = float(d.per_query(shipped["form"], shipped["fuse"],
                                                                     shipped["valve"]).sum()) / d.total
    report.update(choices(domains))
    print("shipped", label(shipped), {n: round(v, 4) for n, v in report["shipped_ndcg"].items()}, "BM25",
          {n: round(v, 4) for n, v in report["bm25"].items()})
    if args.against:
        report["against"] = against(domains, shipped, args.against, args.scores)
    if args.reporting:
        chosen = report["rrf+zscore"]["setting"]
        chosen = {**chosen, "valve": SafetyValve.from_dict(chosen["valve"])}
        report["reporting"] = reporting(chosen, shipped, args.reporting, args.reporting_against)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
