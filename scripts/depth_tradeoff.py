"""Validation nDCG@10 against depth (issue 29, "truncation that pays"): on one all-head capture pool of the default
preset's merged model (scripts/observe_pool.py), the best head set whose deepest head lies below each depth cap,
chosen on validation only (DL21 validation + NFCorpus dev, macro-averaged), beside the shipped head set.

    PYTHONPATH=src python scripts/depth_tradeoff.py --pool runs/pool-qwen --out runs/depth-qwen.json

Candidates per cap: top-K heads by D_h (train lists of both domains) as a plain sum, and non-negative weights
fitted over the top-M, each with and without first-stage fusion. A forward stops after the deepest head's
layer, so a cap of c layers costs about c / 24 of a full pass. The table's p is a paired sign-flip test of the
capped set against the shipped one over all validation queries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import add_pool_arguments, load_pool, merged, qrels_of, training_lists  # noqa: E402
from recipe_search import evaluate, mean  # noqa: E402

from headrank.compare import sign_flip_p_value  # noqa: E402
from headrank.selection import discriminability  # noqa: E402
from headrank.weighting import WeightConfig, fit_head_weights  # noqa: E402

PRESET = Path(__file__).resolve().parents[1] / "src" / "headrank" / "presets" / "headrank-qwen2.5-coder-0.5b"
CAPS = (12, 15, 18, 21, 24)
FUSIONS = (None, 0.5)


def candidates(order: list[int], train_all, train_qrels: dict) -> list[tuple[str, list[int], torch.Tensor]]:
    out = [(f"top-{k}", order[:k], torch.ones(k)) for k in (4, 8, 16, 32) if k <= len(order)]
    for m in (16, 32, 64):
        if m > len(order):
            continue
        for l2 in (0.01, 0.1):
            w = fit_head_weights(train_all, train_qrels, order[:m], WeightConfig(l2=l2))
            keep = [i for i, x in zip(order[:m], w.tolist()) if x > 0]
            if keep:
                out.append((f"weights over top-{m} (l2 {l2})", keep, w[w > 0]))
    return out


def per_query(val: dict, idx: list[int], w: torch.Tensor, fuse: float | None) -> dict[str, list[float]]:
    return {dom: evaluate(fs, None, q, torch.tensor(idx), w, None, "one", fuse) for dom, (fs, q) in val.items()}


def write_preset(row: dict, out: Path) -> None:
    """The shipped preset (same adapter) with ``row``'s head set, weights and fusion: a candidate to evaluate."""
    import dataclasses
    import shutil

    from headrank.checkpoint import CONFIG_NAME, HEADSET_NAME, InferenceSettings
    from headrank.heads import HeadSet

    shutil.copytree(PRESET, out, dirs_exist_ok=True)
    shipped = HeadSet.load(PRESET / HEADSET_NAME)
    plain = all(abs(w - 1.0) < 1e-12 for w in row["weights"])
    dataclasses.replace(shipped, heads=tuple(tuple(h) for h in row["heads"]),
                        weights=None if plain else tuple(row["weights"]), name=f"depth-cap-{row['cap']}",
                        selection={"recipe": row["recipe"], "cap": row["cap"], "fuse": row["fuse"],
                                   "adapter_selection": shipped.selection}).save(out / HEADSET_NAME)
    config = json.loads((out / CONFIG_NAME).read_text())
    config["inference"] = InferenceSettings(fuse_first_stage=row["fuse"]).to_dict()
    config["preset"] = out.name
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pool_arguments(parser)
    parser.add_argument("--write-preset", nargs=2, metavar=("CAP", "DIR"),
                        help="also write the shipped preset with the head set chosen under CAP layers into DIR")
    args = parser.parse_args()
    pool = load_pool(args.pool, args.layers, args.heads)
    qrels = {name: qrels_of(name) for name in ("dl21", "nfcorpus-train", "nfcorpus-dev")}
    shipped = json.loads((PRESET / "headset.json").read_text())
    train, train_qrels = training_lists(pool, PRESET)
    val = {"dl21": (pool[("dl21", "first-stage")], qrels["dl21"]),
           "nfcorpus": (pool[("nfcorpus-dev", "first-stage")], qrels["nfcorpus-dev"])}
    heads = train["dl21"].heads
    train_all, all_qrels = merged(train, train_qrels)
    d = (discriminability(train["dl21"], train_qrels["dl21"]) + discriminability(train["nfcorpus"],
                                                                                 train_qrels["nfcorpus"])) / 2
    ship_idx = [heads.index(tuple(h)) for h in shipped["heads"]]
    ship_w = torch.tensor(shipped.get("weights") or [1.0] * len(ship_idx))
    ship_q = per_query(val, ship_idx, ship_w, 0.5)  # as shipped: one pass, fused (RRF 0.5)
    rows = [{"cap": None, "recipe": "shipped (13 weighted heads, fused 0.5)", "fuse": 0.5,
             "deepest": max(h[0] for h in shipped["heads"]) + 1, "heads": shipped["heads"],
             **{f"val_{dom}": mean(v) for dom, v in ship_q.items()}, "val_macro": mean([mean(v) for v in ship_q.values()])}]
    for cap in CAPS:
        allowed = [i for i in torch.argsort(d, descending=True, stable=True).tolist() if heads[i][0] < cap]
        best = None
        for label, idx, w in candidates(allowed, train_all, all_qrels):
            for fuse in FUSIONS:
                scores = per_query(val, idx, w, fuse)
                macro = mean([mean(v) for v in scores.values()])
                if best is None or round(macro, 6) > round(best[0], 6):
                    best = (macro, label, idx, w, fuse, scores)
        macro, label, idx, w, fuse, scores = best
        diffs = [a - b for dom in scores for a, b in zip(scores[dom], ship_q[dom])]
        rows.append({"cap": cap, "recipe": label, "fuse": fuse, "deepest": max(heads[i][0] for i in idx) + 1,
                     "heads": [list(heads[i]) for i in idx], "weights": [round(x, 4) for x in w.tolist()],
                     **{f"val_{dom}": mean(v) for dom, v in scores.items()}, "val_macro": macro,
                     "vs_shipped": mean(diffs), "p": sign_flip_p_value(diffs, 20000, 0)})
    args.out.write_text(json.dumps({"rows": rows, "validation": {dom: len(fs.qids) for dom, (fs, _) in val.items()},
                                    "train": {dom: len(o.qids) for dom, o in train.items()}}, indent=1))
    if args.write_preset:
        write_preset(next(r for r in rows if r["cap"] == int(args.write_preset[0])), Path(args.write_preset[1]))
    print("| depth cap (layers) | chosen | layers run | DL21 val | NFCorpus dev | mean | vs shipped (p) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        vs = f"{r['vs_shipped']:+.4f} ({r['p']:.2f})" if "p" in r else ""
        fused = f", fused {r['fuse']:g}" if r["fuse"] else ""
        print(f"| {r['cap'] or 'shipped'} | {r['recipe']}{fused}, {len(r['heads'])} heads | {r['deepest']} / 24 | "
              f"{r['val_dl21']:.4f} | {r['val_nfcorpus']:.4f} | {r['val_macro']:.4f} | {vs} |")


if __name__ == "__main__":
    main()
