"""A preset's own attention scores (no fusion, no valve) on the validation lists of issue 30, resumably.

Fusion forms and valves only recombine a list's attention scores with its first-stage order, so one pass of
the shipped heads per list serves every form: ``scripts/fusion_forms.py`` compares them on these lists.
The lists are those of issue 30's pool (``headrank pool``'s plan, same seeded samples), BM25 top 20
in first-stage order; one JSON line per list: set, qid, docids (input order), scores (input order), and the
ranker's key (the digest of the preset's files and ``--on-base``): a rerun resumes only lines with this ranker's
key and the same docids, and stops with a message on a file written by another ranker.

    PYTHONPATH=src python scripts/validation_scores.py --preset headrank-qwen2.5-coder-0.5b \
        --out runs/val-scores-qwen.jsonl [--on-base]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from headrank.batch import RankerSpec
from headrank.data.formats import appendable_lines
from headrank.engine.checkpoint import HEADSET_NAME
from headrank.engine.heads import HeadSet
from headrank.engine.presets import load_preset
from headrank.engine.ranker import HeadRanker
from headrank.learn.pool import VALIDATION_PLAN, PlanItem, plan_lists


def ranker_key(preset: str, on_base: bool) -> str:
    """What decides the scores: the preset's name and files (a retrained checkpoint changes it) and --on-base."""
    spec = json.dumps({**RankerSpec(preset, dtype="float32").fingerprint(), "on_base": on_base}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def finished_lists(path: Path, key: str) -> dict[tuple[str, str], list[str]]:
    """(set, qid) -> docids of the lists already in ``path`` (the last line wins); refuses a file that another
    ranker wrote, so that a reused --out never mixes two rankers' scores. A last line cut short by a kill is
    dropped from the file, so that the resumed run appends after whole lines."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in appendable_lines(path)]
    others = {row.get("ranker") for row in rows} - {key}
    if others:
        raise SystemExit(f"{path} holds scores of another ranker (key {sorted(map(str, others))[0]}, this one {key}); "
                         "pass a new --out")
    return {(row["set"], row["qid"]): row["docids"] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plan", nargs="+", default=list(VALIDATION_PLAN), help="SET:WHICH as in headrank pool")
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
    key = ranker_key(args.preset, args.on_base)
    done = finished_lists(args.out, key)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        for item in args.plan:
            plan_item = PlanItem.parse(f"{item}:first-stage")
            set_name, lists = plan_item.set_name, plan_lists(plan_item, ranker.heads, args.seed)
            started, ran = time.time(), 0
            for n, (qid, query, docs) in enumerate(lists):
                docids = [d for d, _ in docs]
                if done.get((set_name, qid)) == docids:
                    continue
                scores = ranker.score(query, [t for _, t in docs], fuse_first_stage=0, safety_valve=False)
                out.write(json.dumps({"set": set_name, "qid": qid, "docids": docids, "scores": scores,
                                      "ranker": key}) + "\n")
                out.flush()
                ran += 1
                per_list = (time.time() - started) / ran
                logging.info("%s %d/%d %.1fs/list, eta for this set %.0f min", item, n + 1, len(lists), per_list,
                             per_list * (len(lists) - n - 1) / 60)


if __name__ == "__main__":
    main()
