"""An all-head pool: every head of a model observed once on lists of named sets (``observe_pool``, run by
``headrank pool``, writes it with ``engine.observe``): ``index.jsonl`` (set, feed order, qid, docids, cache file)
and the cached per-head masses. The every-domain choice (``learn.choose``) and the recipe studies read it from here."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from headrank.data.benchmarks import load_set
from headrank.data.formats import appendable_lines
from headrank.engine.heads import HeadSet
from headrank.engine.observe import HeadObservations, SharedCapture, all_head_observer
from headrank.learn.choose import Domain, PoolDomain, ScoredList, domain_from_benchmark

DEPTH = 20  # BM25 top 20: the lists of every pool and of the validation scores
# The validation lists the default was chosen on (SET:WHICH, as a pool plan item without its order).
VALIDATION_PLAN = ("dl21:val", "nfcorpus-dev:60", "cranfield:80", "cisi:judged", "npl:judged")
# The pool the default's heads were chosen from: the validation lists in first-stage order, and shuffled training
# lists (the head set's DL21 training split, 60 NFCorpus train queries) that rank each head by its own nDCG@10.
POOL_PLAN = (*(f"{item}:first-stage" for item in VALIDATION_PLAN), "dl21:train:shuffled", "nfcorpus-train:60:shuffled")
ORDERS = ("first-stage", "reversed", "shuffled")


@dataclass(frozen=True)
class PlanItem:
    """One line of a pool's plan, ``SET:WHICH:ORDER`` (see ``pick_queries`` for WHICH)."""

    set_name: str
    which: str
    order: str

    @classmethod
    def parse(cls, text: str) -> PlanItem:
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"a plan item is SET:WHICH:ORDER (e.g. cisi:judged:first-stage), got {text!r}")
        item = cls(*parts)
        if item.order not in ORDERS:
            raise ValueError(f"{text!r}: ORDER is one of {', '.join(ORDERS)}")
        if item.which not in ("all", "judged", "train", "val") and not (item.which.isdigit() and int(item.which)):
            raise ValueError(f"{text!r}: WHICH is all, judged, train, val or a number of queries")
        return item

    def __str__(self) -> str:
        return f"{self.set_name}:{self.which}:{self.order}"


def plan_lists(item: PlanItem, head_set: HeadSet, seed: int, data_root=None) -> list[tuple[str, str, list]]:
    """(qid, query, [(docid, text)]) of a plan item: the BM25 top 20 of each query, in the item's feed order."""
    bench = load_set(item.set_name, data_root)
    lists = []
    for qid in pick_queries(bench, item.which, head_set, seed):
        docs = [(c.docid, c.text) for c in bench.candidates[qid][:DEPTH]]
        if item.order == "reversed":
            docs.reverse()
        elif item.order == "shuffled":
            random.Random(f"{seed}/{qid}").shuffle(docs)
        lists.append((qid, bench.queries[qid], docs))
    return lists


def observe_pool(ranker, out: str | Path, plan: Sequence[str] = POOL_PLAN, seed: int = 0, data_root=None,
                 on_list: Callable[..., None] | None = None) -> int:
    """Observe every head of ``ranker``'s model once on each list of ``plan``, resumably (lists already in
    ``out/index.jsonl`` are skipped, each new one is cached and indexed as soon as it is captured); the
    lists observed now. Processes given disjoint plans may share ``out``. ``on_list(item, done, total, resumed)``
    follows each item (``resumed``: its lists read back from the index, which take no time)."""
    items = [PlanItem.parse(text) for text in plan]  # every item checked before an hour of capture
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.jsonl"
    seen = {(r["set"], r["qid"], r["order"]) for r in map(json.loads, appendable_lines(index_path))} \
        if index_path.is_file() else set()
    shared, observed = SharedCapture(all_head_observer(ranker), out / "cache"), 0
    with index_path.open("a", encoding="utf-8") as index:
        for item in items:
            lists = plan_lists(item, ranker.heads, seed, data_root)
            resumed = 0
            for done, (qid, query, docs) in enumerate(lists, start=1):
                if (item.set_name, qid, item.order) in seen:
                    resumed += 1
                else:
                    texts = [t for _, t in docs]
                    shared.observe(query, texts)
                    index.write(json.dumps({"set": item.set_name, "qid": qid, "order": item.order, "query": query,
                                            "docids": [d for d, _ in docs],
                                            "path": shared.path_of(query, texts).name}) + "\n")
                    index.flush()
                    seen.add((item.set_name, qid, item.order))
                    observed += 1
                if on_list:
                    on_list(str(item), done, len(lists), resumed)
    return observed


def load_pool(folder: str | Path, num_layers: int, num_heads: int) -> dict[tuple[str, str], HeadObservations]:
    """The pool's observations per (set, feed order), heads in (layer, head) order."""
    folder = Path(folder)
    if not (folder / "index.jsonl").is_file():
        raise FileNotFoundError(f"{folder} is not an all-head pool (no index.jsonl; headrank pool writes one)")
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
