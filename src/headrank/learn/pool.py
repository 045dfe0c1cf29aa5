"""An all-head pool: every head of a model observed once on lists of named sets (``scripts/observe_pool.py``
writes it with ``engine.observe``): ``index.jsonl`` (set, feed order, qid, docids, cache file) and the cached
per-head masses. The every-domain choice (``learn.choose``) and the recipe studies read it from here."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path

import torch

from headrank.data.benchmarks import load_set
from headrank.engine.heads import HeadSet
from headrank.engine.observe import HeadObservations
from headrank.learn.choose import Domain, PoolDomain, ScoredList, domain_from_benchmark

DEPTH = 20  # BM25 top 20: the lists of every pool and of the validation scores
# The validation lists the default was chosen on (SET:WHICH, as a pool plan item without its order).
VALIDATION_PLAN = ("dl21:val", "nfcorpus-dev:60", "cranfield:80", "cisi:judged", "npl:judged")


def load_pool(folder: str | Path, num_layers: int, num_heads: int) -> dict[tuple[str, str], HeadObservations]:
    """The pool's observations per (set, feed order), heads in (layer, head) order."""
    folder = Path(folder)
    if not (folder / "index.jsonl").is_file():
        raise FileNotFoundError(f"{folder} is not an all-head pool (no index.jsonl; scripts/observe_pool.py writes one)")
    heads = [(layer, head) for layer in range(num_layers) for head in range(num_heads)]
    groups: dict[tuple[str, str], dict] = {}
    for line in (folder / "index.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        obs = torch.load(folder / "cache" / row["path"], weights_only=True)
        if obs["raw"].shape[0] != len(heads):
            raise ValueError(f"{folder}: the pool observed {obs['raw'].shape[0]} heads per list, not {num_layers} "
                             f"layers x {num_heads} heads; give the model's --layers and --heads")
        g = groups.setdefault((row["set"], row["order"]), {"qids": [], "docids": [], "raw": [], "calibrated": []})
        g["qids"].append(row["qid"])
        g["docids"].append([row["docids"][i] for i in obs["kept"]])
        g["raw"].append(obs["raw"])
        g["calibrated"].append(obs["calibrated"])
    return {k: HeadObservations(heads, g["qids"], g["docids"], g["raw"], g["calibrated"]) for k, g in groups.items()}


def qrels_of(set_name: str, data_root=None) -> dict:
    return load_set(set_name, data_root).qrels


def training_lists(pool: Mapping, preset: str | Path, data_root=None) -> tuple[dict[str, HeadObservations], dict]:
    """The shuffled training lists per domain (the DL21 training split recorded in ``preset``'s head set, and
    NFCorpus train) with their qrels."""
    split = set(HeadSet.load(Path(preset) / "headset.json").split_queries("train"))
    dl21 = pool[("dl21", "shuffled")]
    train = {"dl21": dl21.subset([q for q in dl21.qids if q in split]), "nfcorpus": pool[("nfcorpus-train", "shuffled")]}
    return train, {"dl21": qrels_of("dl21", data_root), "nfcorpus": qrels_of("nfcorpus-train", data_root)}


def merged(train: Mapping[str, HeadObservations], qrels: Mapping[str, dict]) -> tuple[HeadObservations, dict]:
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


def pool_domains(pool: Mapping, names: Mapping[str, str], order: str = "first-stage",
                 data_root=None) -> dict[str, PoolDomain]:
    """The pool's validation lists per domain (domain name -> set name), in ``order``."""
    out = {}
    for name, set_name in names.items():
        if (set_name, order) not in pool:
            raise ValueError(f"the pool holds no {set_name} lists in {order} order")
        obs = pool[(set_name, order)]
        lists = [ScoredList(q, tuple(d), tuple(0.0 for _ in d)) for q, d in zip(obs.qids, obs.docids)]
        domain: Domain = domain_from_benchmark(name, lists, load_set(set_name, data_root))
        out[name] = PoolDomain(domain, obs)
    return out


def pick_queries(bench, which: str, head_set: HeadSet, seed: int) -> list[str]:
    """The queries of a plan item's WHICH: ``all``, ``judged`` (a relevant passage in the top 20), ``train`` /
    ``val`` (the head set's DL21 split), or a number n (a seeded sample of n queries whose top 20 holds a relevant
    and a non-relevant passage)."""
    qids = list(bench.queries)
    if which == "all":
        return qids
    if which == "judged":  # a relevant passage in the top-20: other queries score 0 whatever the order
        return [q for q in qids if any(bench.qrels[q].get(c.docid, 0) >= bench.relevant_grade
                                       for c in bench.candidates[q][:DEPTH])]
    if which in ("train", "val"):
        split = head_set.split_queries(which)
        return [q for q in qids if q in set(split)]
    n = int(which)
    judged = bench.qrels
    usable = []
    for q in sorted(qids):
        grades = [judged[q].get(c.docid, 0) for c in bench.candidates[q][:DEPTH]]
        if any(g >= bench.relevant_grade for g in grades) and any(g <= 0 for g in grades):
            usable.append(q)
    random.Random(f"pool/{bench.name}/{seed}").shuffle(usable)
    return sorted(usable[:n])
