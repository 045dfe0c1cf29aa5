"""Robust choice of the default preset's head set, weights, fusion weight and safety valve (issue 30), on one
all-head capture pool of the preset's merged model (scripts/observe_pool.py), validation domains only.

    PYTHONPATH=src python scripts/robust_choice.py --pool runs/pool-qwen --out runs/robust-qwen.json \
        [--write-preset runs/preset-robust]

Validation domains: DL21 validation, NFCorpus dev, Cranfield, CISI, NPL (first-stage order, BM25 top-20).
Candidates: heads below the depth cap (default 18 of 24 layers, issue 29) ordered by D_h on the training lists
(DL21 train + NFCorpus train) or by the mean / the minimum of per-domain D_h over the training lists and the
fold's validation domains; the top K as a plain sum, or non-negative weights fitted on the training lists over
the top M; each with fusion weights from 0 to 0.8 and with or without a safety valve (``headrank.rule``).

Objective (per fold): the largest mean gain over BM25 across the fold's domains among configurations whose
every domain gains at least --floor; when none does, the largest worst-domain gain (`--rule worst`: always the
latter; the SmolLM2 preset uses it, the Qwen default the former, RESULTS.md). A domain's mean is over all
its judged queries (a query without a relevant passage in the top-20 scores 0 under any order of it).
Leave-one-domain-out: each domain is held out in turn, the choice is made on the other four, and the held-out
domain's gain is what a new domain can expect. The shipped choice is made on all five.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import add_pool_arguments, load_pool, load_set, merged, training_lists  # noqa: E402

from headrank.compare import sign_flip_p_value  # noqa: E402
from headrank.heads import HeadSet  # noqa: E402
from headrank.rule import SIGNALS, SafetyValve, ScoringRule, final_scores  # noqa: E402
from headrank.selection import HeadObservations, discriminability, ndcg_at_10  # noqa: E402
from headrank.weighting import WeightConfig, fit_head_weights  # noqa: E402

PRESET = Path(__file__).resolve().parents[1] / "src" / "headrank" / "presets" / "headrank-qwen2.5-coder-0.5b"
VALIDATION = {"dl21-val": ("dl21", "first-stage"), "nfcorpus-dev": ("nfcorpus-dev", "first-stage"),
              "cranfield": ("cranfield", "first-stage"), "cisi": ("cisi", "first-stage"),
              "npl": ("npl", "first-stage")}
FUSIONS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
VALVE_WEIGHTS = (0.8, 1.0)
VALVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class Domain:
    obs: HeadObservations
    qrels: dict
    total: int  # judged queries of the domain (observed or not)
    bm25: list[float]  # per observed query


@dataclass
class Config:
    heads: str
    idx: list[int]
    weights: torch.Tensor
    fuse: float
    valve: SafetyValve | None


def ndcg(scores: list[float], docids: list[str], judged: dict) -> float:
    return float(ndcg_at_10(torch.tensor(scores)[None], docids, judged)[0])


def attention_scores(obs: HeadObservations, i: int, idx: list[int], w: torch.Tensor) -> list[float]:
    rule = ScoringRule(tuple(obs.heads[j] for j in idx), tuple(w.tolist()))
    return rule.from_head_masses(obs.raw[i], obs.calibrated[i], obs.heads).tolist()


def per_query(dom: Domain, idx: list[int], w: torch.Tensor, fuse: float, valve: SafetyValve | None) -> list[float]:
    out = []
    for i, qid in enumerate(dom.obs.qids):
        final = final_scores(attention_scores(dom.obs, i, idx, w), fuse or None, valve)
        out.append(ndcg(final.scores, dom.obs.docids[i], dom.qrels[qid]))
    return out


def gain(dom: Domain, values: list[float]) -> float:
    return (sum(values) - sum(dom.bm25)) / dom.total


def head_candidates(orderings: dict[str, list[int]], train_all, train_qrels, fits: dict) -> list[tuple]:
    out = []
    for name, order in orderings.items():
        out += [(f"{name} top-{k}", order[:k], torch.ones(k)) for k in (4, 8, 16, 32) if k <= len(order)]
        fitted = ((16, 0.01), (16, 0.1), (32, 0.01), (32, 0.1), (64, 0.01), (64, 0.1)) if name == "train D_h" \
            else ((32, 0.1),)  # fits are the slow part; the fold-dependent orderings get one
        for m, l2 in fitted:
            if m <= len(order):
                key = (tuple(order[:m]), l2)
                if key not in fits:
                    fits[key] = fit_head_weights(train_all, train_qrels, order[:m], WeightConfig(l2=l2))
                w = fits[key]
                keep = [i for i, x in zip(order[:m], w.tolist()) if x > 0]
                if keep:
                    out.append((f"{name} weights over top-{m} (l2 {l2})", keep, w[w > 0]))
    return out


def orderings(d_train: dict[str, torch.Tensor], d_val: dict[str, torch.Tensor], allowed: list[int]) -> dict:
    both = torch.stack(list(d_train.values()) + list(d_val.values()))
    ranked = {"train D_h": torch.stack(list(d_train.values())).mean(0), "mean D_h": both.mean(0),
              "min D_h": both.min(0).values}
    return {name: sorted(allowed, key=lambda i: (-float(v[i]), i)) for name, v in ranked.items()}


TABLES: dict = {}


def table_for(name: str, dom: Domain, idx: list[int], w: torch.Tensor) -> tuple[dict, dict]:
    """One domain under one head set: per-query nDCG for every fusion weight, and every signal per query (cached:
    folds share candidates)."""
    key = (name, tuple(idx), tuple(round(x, 8) for x in w.tolist()))
    if key not in TABLES:
        scores = [attention_scores(dom.obs, i, idx, w) for i in range(len(dom.obs.qids))]
        by_w = {f: torch.tensor([ndcg(final_scores(s, f or None).scores, dom.obs.docids[i], dom.qrels[q])
                                 for i, (s, q) in enumerate(zip(scores, dom.obs.qids))], dtype=torch.float64)
                for f in sorted(set(FUSIONS + VALVE_WEIGHTS))}
        signals = {n: torch.tensor([fn(s) for s in scores], dtype=torch.float64) for n, fn in SIGNALS.items()}
        TABLES[key] = (by_w, signals)
    return TABLES[key]


RULES = ("floor-mean", "worst")


def rule_floor(rule: str, floor: float) -> float:
    """The worst-domain rule is the floor rule with a floor no configuration meets: its fallback decides."""
    return math.inf if rule == "worst" else floor


def objective(gains: list[float], floor: float) -> tuple:
    worst, mean = min(gains), sum(gains) / len(gains)
    return (1, round(mean, 6), round(worst, 6)) if worst >= floor else (0, round(worst, 6), round(mean, 6))


def valves_for(tables: dict) -> list[SafetyValve | None]:
    """No valve, or one per signal, threshold at a quantile of the fold's pooled signal, and valve weight."""
    out: list[SafetyValve | None] = [None]
    for n in SIGNALS:
        pooled = torch.cat([sig[n] for _, sig in tables.values()])
        pooled = pooled[torch.isfinite(pooled)]
        for q in VALVE_QUANTILES:
            out += [SafetyValve(n, float(torch.quantile(pooled, q)), vw) for vw in VALVE_WEIGHTS]
    return out


def choose(domains: dict[str, Domain], candidates: list[tuple], floor: float) -> tuple[tuple, Config]:
    best = None
    for label, idx, w in candidates:
        tables = {name: table_for(name, dom, idx, w) for name, dom in domains.items()}
        bm25 = {name: sum(dom.bm25) for name, dom in domains.items()}
        for valve in valves_for(tables):
            for fuse in FUSIONS:
                if valve is not None and valve.weight <= fuse:
                    continue
                gains = []
                for name, dom in domains.items():
                    by_w, sig = tables[name]
                    values = by_w[fuse] if valve is None else torch.where(
                        sig[valve.signal] < valve.threshold, by_w[valve.weight], by_w[fuse])
                    gains.append((float(values.sum()) - bm25[name]) / dom.total)
                key = objective(gains, floor)
                if best is None or key > best[0]:
                    best = (key, Config(label, idx, w, fuse, valve))
    return best


def validation_domains(pool: dict) -> dict[str, Domain]:
    """The pool's validation lists per domain, with qrels, BM25's per-query nDCG@10 and the query count."""
    domains = {}
    for name, (set_name, order) in VALIDATION.items():
        bench, obs = load_set(set_name), pool[(set_name, order)]
        qrels = bench.qrels
        with_relevant = [q for q in bench.queries if any(qrels[q].get(c.docid, 0) >= bench.relevant_grade
                                                         for c in bench.candidates[q][:20])]
        # every query with a relevant passage in the top-20 observed: the mean is over all judged queries (the
        # rest score 0 under any order); a sample: over the sample
        total = len(bench.queries) if set(with_relevant) <= set(obs.qids) else len(obs.qids)
        bm25 = [ndcg([-float(k) for k in range(len(d))], d, qrels[q]) for q, d in zip(obs.qids, obs.docids)]
        domains[name] = Domain(obs, qrels, total, bm25)
    return domains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pool_arguments(parser)
    parser.add_argument("--cap", type=int, default=18, help="deepest allowed layer count (heads in layers < cap)")
    parser.add_argument("--floor", type=float, default=0.0, help="every fold domain must gain at least this")
    parser.add_argument("--rule", choices=RULES, default="floor-mean",
                        help="floor-mean: the largest mean gain among configurations meeting --floor on every domain "
                             "(the largest worst-domain gain when none does); worst: the largest worst-domain gain")
    parser.add_argument("--write-preset", type=Path, help="write the shipped preset with the choice into this folder")
    parser.add_argument("--shipped", type=Path, default=PRESET,
                        help="the preset to compare with (and whose adapter split gives the DL21 training queries)")
    args = parser.parse_args()
    if args.rule == "worst" and args.floor != 0.0:
        parser.error("--floor applies to --rule floor-mean only; --rule worst has no floor")
    floor = rule_floor(args.rule, args.floor)
    pool = load_pool(args.pool, args.layers, args.heads)
    train, train_qrels = training_lists(pool, args.shipped)
    domains = validation_domains(pool)
    heads = train["dl21"].heads
    allowed = [i for i, h in enumerate(heads) if h[0] < args.cap]
    d_train = {dom: discriminability(obs, train_qrels[dom]) for dom, obs in train.items()}
    d_val = {name: discriminability(dom.obs, dom.qrels) for name, dom in domains.items()}
    train_all, all_qrels = merged(train, train_qrels)
    fits: dict = {}
    report = {"cap": args.cap, "rule": args.rule, "floor": None if math.isinf(floor) else floor,
              "queries": {n: [len(d.obs.qids), d.total] for n, d in domains.items()},
              "lodo": {}}
    for held in list(domains) + [None]:
        fold = {n: d for n, d in domains.items() if n != held}
        cands = head_candidates(orderings(d_train, {n: d_val[n] for n in fold}, allowed), train_all, all_qrels, fits)
        key, config = choose(fold, cands, floor)
        result = describe(config, domains, heads)
        print(held or "ALL", key, result["label"], {n: round(g, 4) for n, g in result["gain"].items()}, flush=True)
        if held is None:
            report["chosen"] = result
        else:
            report["lodo"][held] = {"gain": result["gain"][held], "config": result}
    report["shipped"] = describe(shipped_config(args.shipped, heads), domains, heads)
    report["bm25"] = {n: sum(d.bm25) / d.total for n, d in domains.items()}
    paired(report, domains)
    args.out.write_text(json.dumps(report, indent=1))
    if args.write_preset:
        write_preset(report["chosen"], args.write_preset, args.shipped)


def shipped_config(preset: Path, heads: list[tuple[int, int]]) -> Config:
    """The compared preset as it ranks: its heads and weights with its own fusion weight and safety valve (the
    comparison once assumed fusion 0.5 and no valve, true only of the presets shipped before issue 30)."""
    headset = json.loads((preset / "headset.json").read_text())
    inference = json.loads((preset / "headrank_config.json").read_text()).get("inference") or {}
    idx = [heads.index(tuple(h)) for h in headset["heads"]]
    weights = torch.tensor(headset.get("weights") or [1.0] * len(idx))
    return Config("shipped", idx, weights, inference.get("fuse_first_stage") or 0.0,
                  SafetyValve.from_dict(inference.get("safety_valve")))


def describe(config: Config, domains: dict[str, Domain], heads) -> dict:
    per = {n: per_query(d, config.idx, config.weights, config.fuse, config.valve) for n, d in domains.items()}
    return {"label": config.heads, "heads": [list(heads[i]) for i in config.idx],
            "weights": [round(x, 4) for x in config.weights.tolist()], "fuse": config.fuse,
            "valve": config.valve.to_dict() if config.valve else None,
            "deepest": max(heads[i][0] for i in config.idx) + 1,
            "gain": {n: gain(d, per[n]) for n, d in domains.items()},
            "ndcg": {n: sum(per[n]) / d.total for n, d in domains.items()},
            "per_query": {n: dict(zip(d.obs.qids, per[n])) for n, d in domains.items()}}


def paired(report: dict, domains: dict[str, Domain]) -> None:
    """Sign-flip p of the chosen setting against BM25 and against the shipped one, per domain."""
    report["p"] = {}
    for n, d in domains.items():
        chosen = [report["chosen"]["per_query"][n][q] for q in d.obs.qids]
        ship = [report["shipped"]["per_query"][n][q] for q in d.obs.qids]
        report["p"][n] = {"vs_bm25": sign_flip_p_value([a - b for a, b in zip(chosen, d.bm25)], 20000, 0),
                          "vs_shipped": sign_flip_p_value([a - b for a, b in zip(chosen, ship)], 20000, 0)}


def write_preset(chosen: dict, out: Path, base: Path = PRESET, name: str = "robust-5-domains") -> None:
    """The ``base`` preset (same adapter) with the chosen head set, weights, fusion and valve."""
    import dataclasses
    import shutil

    from headrank.checkpoint import CONFIG_NAME, HEADSET_NAME
    shutil.copytree(base, out, dirs_exist_ok=True)
    shipped = HeadSet.load(base / HEADSET_NAME)
    plain = all(abs(w - 1.0) < 1e-12 for w in chosen["weights"])
    # the adapter's own split (a base that was itself re-chosen keeps it one level down): never nest deeper
    adapter = shipped.selection.get("adapter_selection", shipped.selection)
    dataclasses.replace(shipped, heads=tuple(tuple(h) for h in chosen["heads"]),
                        weights=None if plain else tuple(chosen["weights"]), name=name,
                        selection={"recipe": chosen["label"], "chosen_by": "scripts/robust_choice.py",
                                   "adapter_selection": adapter}).save(out / HEADSET_NAME)
    config = json.loads((out / CONFIG_NAME).read_text())
    config["inference"] = {"both_orders": False, "window": None, "fuse_first_stage": chosen["fuse"] or None,
                           "safety_valve": chosen["valve"]}
    config["preset"] = out.name
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
