"""Issue 18's recipe search on one all-head capture pool (scripts/observe_pool.py): selection on one or two
domains, per-head weights, a position prior, both orders and first-stage fusion, all chosen on validation
(DL21 validation + NFCorpus dev, macro-averaged over the two domains), never on a reporting set.

    PYTHONPATH=src python scripts/recipe_search.py --pool runs/pool-qwen --out runs/recipe-qwen.json

Prints a validation table; writes every row and the chosen recipe (head indices, weights, prior) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import load_pool, merged, qrels_of  # noqa: E402

from headrank.rule import ScoringRule, final_scores  # noqa: E402
from headrank.selection import HeadObservations, discriminability, ndcg_at_10  # noqa: E402
from headrank.weighting import WeightConfig, fit_head_weights  # noqa: E402

PRESET_HEADS = [(15, 9), (19, 2), (22, 1), (22, 5)]
DOMAINS = {"dl21": ("dl21", "dl21"), "nfcorpus": ("nfcorpus-train", "nfcorpus-dev")}


def position_prior(train: list[HeadObservations], length: int = 20) -> torch.Tensor:
    """Mean calibrated mass per head and feed position over shuffled lists of ``length`` passages: (H, length)."""
    rows = [m for obs in train for m in obs.calibrated if m.shape[1] == length]
    return torch.stack(rows).mean(dim=0)


def list_scores(obs: HeadObservations, i: int, idx: torch.Tensor, w: torch.Tensor,
                prior: torch.Tensor | None) -> torch.Tensor:
    """The shipped scoring rule on one list's head masses; a position prior (not part of the shipped rule, tried
    here and not chosen) is taken off the calibrated masses first."""
    rule = ScoringRule(tuple(obs.heads[j] for j in idx.tolist()), tuple(w.tolist()))
    calibrated = obs.calibrated[i]
    if prior is not None and calibrated.shape[1] == prior.shape[1]:
        calibrated = calibrated - prior
    return rule.from_head_masses(obs.raw[i], calibrated, obs.heads)


def evaluate(fs: HeadObservations, rv: HeadObservations | None, qrels, idx, w, prior, mode: str,
             fuse: float | None, only: set[str] | None = None) -> list[float]:
    """Per-query nDCG@10 of first-stage-order lists; mode one (as given), rev (read reversed) or both (the
    mean of the two). ``only``: restrict to these qids."""
    rv_index = {q: i for i, q in enumerate(rv.qids)} if rv is not None else {}
    out = []
    for i, qid in enumerate(fs.qids):
        if only is not None and qid not in only:
            continue
        scores = list_scores(fs, i, idx, w, prior)
        if mode in ("rev", "both"):
            j = rv_index[qid]
            back = list_scores(rv, j, idx, w, prior)
            pos = {d: k for k, d in enumerate(rv.docids[j])}
            back = torch.stack([back[pos[d]] for d in fs.docids[i]])
            scores = back if mode == "rev" else (scores + back) / 2
        if fuse is not None:
            scores = torch.tensor(final_scores(scores.tolist(), fuse).scores)
        out.append(float(ndcg_at_10(scores[None], fs.docids[i], qrels[qid])[0]))
    return out


def mean(xs):
    return sum(xs) / len(xs)


def split_pool(pool: dict) -> tuple[dict, dict, dict]:
    """Training observations, validation (first-stage, reversed, qrels) and training qrels per domain."""
    from headrank.heads import HeadSet

    qrels = {name: qrels_of(name) for name in ("dl21", "nfcorpus-train", "nfcorpus-dev")}
    preset_heads = HeadSet.load(Path("src/headrank/presets/headrank-qwen2.5-coder-0.5b/headset.json"))
    dl21_train_q = set(preset_heads.split_queries("train"))  # the adapter's DL21 training split
    shuffled = pool[("dl21", "shuffled")]
    train = {"dl21": shuffled.subset([q for q in shuffled.qids if q in dl21_train_q]),
             "nfcorpus": pool[("nfcorpus-train", "shuffled")]}
    val = {"dl21": (pool[("dl21", "first-stage")], pool.get(("dl21", "reversed")), qrels["dl21"]),
           "nfcorpus": (pool[("nfcorpus-dev", "first-stage")], pool.get(("nfcorpus-dev", "reversed")),
                        qrels["nfcorpus-dev"])}
    return train, val, {"dl21": qrels["dl21"], "nfcorpus": qrels["nfcorpus-train"]}


def candidate_sets(heads: list, d: dict, train: dict, train_qrels: dict) -> list:
    """Stage 1's head sets: the preset's, top-K by D_h and fitted weights over the top M, per selection domain."""
    merged_train, merged_qrels = merged(train, train_qrels)
    sets = [("preset heads (plain sum)", [heads.index(h) for h in PRESET_HEADS], None, {"select_on": "dl21 (shipped)"})]
    for select_on in ("dl21", "nfcorpus", "both"):
        order = torch.argsort(d[select_on], descending=True, stable=True).tolist()
        for k in (4, 8, 16, 32):
            sets.append((f"top-{k} by D_h (plain sum)", order[:k], None, {"select_on": select_on, "k": k}))
        fit_on = merged_train if select_on == "both" else train[select_on]
        fit_qrels = merged_qrels if select_on == "both" else train_qrels[select_on]
        for m in (8, 16, 32, 64):
            for l2 in (0.001, 0.01, 0.1):
                cand = order[:m]
                w = fit_head_weights(fit_on, fit_qrels, cand, WeightConfig(l2=l2))
                keep = [i for i, x in zip(cand, w.tolist()) if x > 0]
                sets.append((f"weights over top-{m} (l2 {l2})", keep, w[w > 0], {"select_on": select_on, "m": m, "l2": l2}))
    return sets


def card_validation(rows: list[dict], best: dict, val: dict, fusions: tuple) -> list[dict]:
    """The card's validation rows: the previous preset and the chosen set, unfused and fused."""
    n_dl21, n_nfc = len(val["dl21"][0].qids), len(val["nfcorpus"][0].qids)

    def card_row(setting: str, row: dict) -> dict:
        return {"setting": setting, "ndcg@10": {f"DL21 validation ({n_dl21})": row["val_dl21"],
                                                f"NFCorpus dev ({n_nfc})": row["val_nfcorpus"],
                                                "mean of the two": row["val_macro"]}}

    preset_rows = {r["fuse"]: r for r in rows if r["recipe"].startswith("preset")}
    chosen_rows = {r["fuse"]: r for r in rows if r["recipe"] == best["recipe"] and r["select_on"] == best["select_on"]}
    return [card_row("previous preset: 4 DL21 heads, plain sum, one pass", preset_rows[None]),
            card_row("previous preset, one pass, fused with the first stage (RRF 0.5)", preset_rows[0.5]),
            card_row(f"{len(best['heads'])} weighted heads, one pass", chosen_rows[None]),
            *[card_row(f"{len(best['heads'])} weighted heads, one pass, fused (RRF {f:g})", chosen_rows[f])
              for f in fusions if f is not None]]


def print_tables(rows: list[dict], stage2: list[dict], chosen: dict) -> None:
    for title, table in (("stage 1 (one pass, all validation lists)", sorted(rows, key=lambda r: -r["val_macro"])[:25]),
                         ("stage 2 (validation lists captured in both orders)", sorted(stage2, key=lambda r: -r["val_macro"]))):
        print(f"== {title}")
        for r in table:
            print(f"{r['val_macro']:.4f}  dl21 {r['val_dl21']:.4f}  nfc {r['val_nfcorpus']:.4f}  {r['recipe']:<32} "
                  f"on={r['select_on']:<14} n={len(r['heads']):>3} prior={int(r['prior'])} {r['mode']:<4} fuse={r['fuse']}")
    print("chosen:", json.dumps({k: v for k, v in chosen.items() if k not in ("heads", "weights")}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--heads", type=int, default=14)
    args = parser.parse_args()
    pool = load_pool(args.pool, args.layers, args.heads)
    train, val, train_qrels = split_pool(pool)
    heads = pool[("dl21", "first-stage")].heads
    d = {dom: discriminability(obs, train_qrels[dom]) for dom, obs in train.items()}
    d["both"] = (d["dl21"] + d["nfcorpus"]) / 2
    prior = position_prior(list(train.values()))
    fusions = (None, 0.3, 0.5, 0.7)

    def score_row(label: str, idx: list[int], w: torch.Tensor | None, extra: dict, mode: str = "one",
                  use_prior: bool = False, fuse: float | None = None, only: dict | None = None) -> dict:
        idx_t = torch.tensor(idx)
        w = torch.ones(len(idx)) if w is None else w
        per_dom = {dom: evaluate(fs, rv, q, idx_t, w, prior if use_prior else None, mode, fuse,
                                 None if only is None else only[dom])
                   for dom, (fs, rv, q) in val.items()}
        return {"recipe": label, **extra, "prior": use_prior, "mode": mode, "fuse": fuse,
                "heads": [list(heads[i]) for i in idx], "weights": w.tolist(),
                **{f"val_{dom}": mean(v) for dom, v in per_dom.items()},
                **{f"n_{dom}": len(v) for dom, v in per_dom.items()},
                "val_macro": mean([mean(v) for v in per_dom.values()])}

    # stage 1: which heads, weights and fusion, in one pass over every validation list
    rows = [score_row(label, idx, w, extra, fuse=fuse)
            for label, idx, w, extra in candidate_sets(heads, d, train, train_qrels) for fuse in fusions]
    best = max(rows, key=lambda r: round(r["val_macro"], 6))  # ties: the first (simpler) row
    args.out.with_suffix(".stage1.json").write_text(json.dumps(rows, indent=1))
    # stage 2: how to read the chosen set (one pass, reversed, both orders; a position prior), on the
    # validation lists that were also captured reversed
    if any(rv is None for _, rv, _ in val.values()):
        sys.exit("stage 2 needs validation lists captured reversed too (observe_pool.py --plan dl21:val:reversed "
                 "nfcorpus-dev:30:reversed); stage 1 alone is not a recipe")
    only = {dom: set(rv.qids) for dom, (_, rv, _) in val.items()}
    readings = (("chosen", [heads.index(tuple(h)) for h in best["heads"]], torch.tensor(best["weights"])),
                ("preset heads (plain sum)", [heads.index(h) for h in PRESET_HEADS], None))
    stage2 = [score_row(label, idx, w, {"select_on": best["select_on"]}, mode, use_prior, fuse, only)
              for label, idx, w in readings
              for mode in ("one", "rev", "both") for use_prior in (False, True) for fuse in fusions]
    chosen2 = max((r for r in stage2 if r["recipe"] == "chosen"), key=lambda r: round(r["val_macro"], 6))
    fuse = chosen2["fuse"] if chosen2["mode"] != "one" or chosen2["prior"] else best["fuse"]
    summary = {
        "rows": rows, "stage2": stage2, "chosen_stage1": best,
        "chosen": {**best, "mode": chosen2["mode"], "prior": chosen2["prior"], "fuse": fuse},
        "prior": prior.tolist(), "heads": [list(h) for h in heads],
        "train": {dom: {"queries": len(obs.qids), "order": "shuffled"} for dom, obs in train.items()},
        "validation": {dom: {"queries": len(fs.qids), "reversed_captured": len(rv.qids) if rv else 0}
                       for dom, (fs, rv, _) in val.items()},
        "card_validation": card_validation(rows, best, val, fusions),
    }
    args.out.write_text(json.dumps(summary, indent=1))
    print_tables(rows, stage2, summary["chosen"])

if __name__ == "__main__":
    main()
