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
import time
from pathlib import Path

import torch

from headrank.data.benchmarks import load_set
from headrank.data.formats import appendable_lines
from headrank.engine.observe import SharedCapture, all_head_observer
from headrank.engine.ranker import HeadRanker
from headrank.learn.pool import DEPTH, pick_queries


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
