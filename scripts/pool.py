"""Read what scripts/observe_pool.py captured: one selection.HeadObservations per (set, feed order)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from headrank.datasets import load_benchmark
from headrank.selection import HeadObservations


def load_pool(out: Path, num_layers: int, num_heads: int) -> dict[tuple[str, str], HeadObservations]:
    heads = [(layer, head) for layer in range(num_layers) for head in range(num_heads)]
    groups: dict[tuple[str, str], dict] = {}
    for line in (out / "index.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        obs = torch.load(out / "cache" / row["path"], weights_only=True)
        g = groups.setdefault((row["set"], row["order"]), {"qids": [], "docids": [], "raw": [], "calibrated": []})
        g["qids"].append(row["qid"])
        g["docids"].append([row["docids"][i] for i in obs["kept"]])
        g["raw"].append(obs["raw"])
        g["calibrated"].append(obs["calibrated"])
    return {k: HeadObservations(heads, g["qids"], g["docids"], g["raw"], g["calibrated"]) for k, g in groups.items()}


CLASSIC = ("cranfield", "cisi", "npl")  # validation domains in BEIR layout under <data root>/classic/


def load_set(set_name: str):
    """A pool set name as a benchmark: dl19/dl20/dl21/noveleval/nfcorpus, nfcorpus-<split>, or a classic domain."""
    from headrank.datasets import default_data_root

    if set_name.startswith("nfcorpus-"):
        return load_benchmark("nfcorpus", split=set_name.split("-", 1)[1])
    if set_name in CLASSIC:
        return load_benchmark(str(default_data_root() / "classic" / set_name))
    return load_benchmark(set_name)


def qrels_of(set_name: str):
    return load_set(set_name).qrels


def add_pool_arguments(parser) -> None:
    """--pool, --out, --layers, --heads: what every script reading a pool takes."""
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--heads", type=int, default=14)


def training_lists(pool: dict, preset: Path) -> tuple[dict[str, HeadObservations], dict[str, dict]]:
    """The shuffled training lists per domain (the adapter's DL21 training split of ``preset``, NFCorpus train)
    and their qrels."""
    from headrank.heads import HeadSet

    split = set(HeadSet.load(preset / "headset.json").split_queries("train"))
    dl21 = pool[("dl21", "shuffled")]
    train = {"dl21": dl21.subset([q for q in dl21.qids if q in split]), "nfcorpus": pool[("nfcorpus-train", "shuffled")]}
    return train, {"dl21": qrels_of("dl21"), "nfcorpus": qrels_of("nfcorpus-train")}


def merged(train: dict[str, HeadObservations], qrels: dict[str, dict]) -> tuple[HeadObservations, dict]:
    """The training lists of every domain as one set (qids prefixed by domain)."""
    heads = next(iter(train.values())).heads
    out, merged_qrels = HeadObservations(heads, [], [], [], []), {}
    for dom, obs in train.items():
        out.qids += [f"{dom}/{q}" for q in obs.qids]
        out.docids += obs.docids
        out.raw += obs.raw
        out.calibrated += obs.calibrated
        merged_qrels.update({f"{dom}/{q}": g for q, g in qrels[dom].items()})
    return out, merged_qrels
