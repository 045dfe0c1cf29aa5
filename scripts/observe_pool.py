"""Capture every head of a preset's (adapter-merged) model on a pool of lists, once, resumably.

Issue 18's recipe search (head weighting, position priors, multi-domain selection, domain adaptation) only
recombines per-head passage masses, so one all-head capture per list (full depth, N/A tail) serves every
variant. Each list is cached by ``observe.SharedCapture`` (keyed by weights, prompt, query and passages in
feed order); ``index.jsonl`` records what each cached list is (set, split, qid, feed order, docids).

    PYTHONPATH=src python scripts/observe_pool.py --preset headrank-qwen2.5-coder-0.5b --out runs/pool-qwen \
        --plan dl21:val:first-stage dl21:val:reversed nfcorpus-dev:60:first-stage ...

A plan item is ``SET:WHICH:ORDER``: SET is dl19, dl20, dl21, noveleval, nfcorpus (test), nfcorpus-train,
nfcorpus-dev, cranfield, cisi or npl; WHICH is ``all``, ``judged`` (a relevant passage in the top-20),
``train`` / ``val`` (the head set's DL21 split) or a number n (a seeded sample of n queries whose top-20 holds at least
one relevant and one non-relevant passage); ORDER is
first-stage, reversed or shuffled (seeded per query).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from pool import load_set  # noqa: E402

from headrank.data import appendable_lines
from headrank.heads import HeadSet
from headrank.observe import SharedCapture, all_head_observer
from headrank.ranker import HeadRanker

DEPTH = 20


def pick_queries(bench, which: str, head_set: HeadSet, seed: int) -> list[str]:
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plan", nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    trained = HeadRanker.from_pretrained(args.preset, device="cpu", dtype="float32")
    shared = SharedCapture(all_head_observer(trained), args.out / "cache")
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "index.jsonl"
    seen = set()
    if index_path.is_file():
        for line in appendable_lines(index_path):
            row = json.loads(line)
            seen.add((row["set"], row["qid"], row["order"]))
    with index_path.open("a") as index:
        for item in args.plan:
            set_name, which, order = item.split(":")
            bench = load_set(set_name)
            qids = pick_queries(bench, which, trained.heads, args.seed)
            started = time.time()
            for n, qid in enumerate(qids):
                if (set_name, qid, order) in seen:
                    continue
                docs = [(c.docid, c.text) for c in bench.candidates[qid][:DEPTH]]
                if order == "reversed":
                    docs.reverse()
                elif order == "shuffled":
                    random.Random(f"{args.seed}/{qid}").shuffle(docs)
                shared.observe(bench.queries[qid], [t for _, t in docs])
                row = {"set": set_name, "qid": qid, "order": order, "query": bench.queries[qid],
                       "docids": [d for d, _ in docs], "path": shared._path(bench.queries[qid], [t for _, t in docs]).name}
                index.write(json.dumps(row) + "\n")
                index.flush()
                seen.add((set_name, qid, order))
                rate = (time.time() - started) / (n + 1)
                logging.info("%s %d/%d %.1fs/list", item, n + 1, len(qids), rate)


if __name__ == "__main__":
    main()
