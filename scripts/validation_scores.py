"""A preset's own attention scores (no fusion, no valve) on the validation lists of issue 30, resumably.

Fusion forms and valves only recombine a list's attention scores with its first-stage order, so one pass of
the shipped heads per list serves every form: ``scripts/fusion_forms.py`` compares them on these lists.
The lists are those of issue 30's pool (``scripts/observe_pool.py``'s plan, same seeded samples), BM25 top 20
in first-stage order; one JSON line per list: set, qid, docids (input order), scores (input order).

    PYTHONPATH=src python scripts/validation_scores.py --preset headrank-qwen2.5-coder-0.5b \
        --out runs/val-scores-qwen.jsonl [--on-base]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from observe_pool import DEPTH, pick_queries  # noqa: E402
from pool import load_set  # noqa: E402

from headrank.checkpoint import HEADSET_NAME
from headrank.heads import HeadSet
from headrank.presets import load_preset
from headrank.ranker import HeadRanker

VALIDATION_PLAN = ("dl21:val", "nfcorpus-dev:60", "cranfield:80", "cisi:judged", "npl:judged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plan", nargs="+", default=list(VALIDATION_PLAN), help="SET:WHICH as in observe_pool.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--on-base", action="store_true", help="the preset's heads (and weights) on its base model, "
                                                                "without its adapter: what the adapter adds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    heads = None
    if args.on_base:  # the head set without the fingerprint of the adapter-merged weights it was chosen on
        heads = dataclasses.replace(HeadSet.load(load_preset(args.preset).path / HEADSET_NAME), fingerprint=None)
    ranker = HeadRanker.from_pretrained(args.preset, heads=heads, device="cpu", dtype="float32")
    logging.info("%r", ranker)
    done = set()
    if args.out.is_file():
        done = {(r["set"], r["qid"]) for r in map(json.loads, args.out.read_text().splitlines()) if r}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        for item in args.plan:
            set_name, which = item.split(":")
            bench = load_set(set_name)
            qids = pick_queries(bench, which, ranker.heads, args.seed)
            started, ran = time.time(), 0
            for n, qid in enumerate(qids):
                if (set_name, qid) in done:
                    continue
                cands = bench.candidates[qid][:DEPTH]
                scores = ranker.score(bench.queries[qid], [c.text for c in cands], fuse_first_stage=0,
                                      safety_valve=False)
                out.write(json.dumps({"set": set_name, "qid": qid, "docids": [c.docid for c in cands],
                                      "scores": scores}) + "\n")
                out.flush()
                ran += 1
                logging.info("%s %d/%d %.1fs/list", item, n + 1, len(qids), (time.time() - started) / ran)


if __name__ == "__main__":
    main()
