"""Write a corpus.jsonl from first-stage candidate lists that carry passage text (e.g. ``bm25-top100.json``), for
zero-label adaptation where the collection itself is not at hand (DL21 here: MS MARCO v2 is not in shared/data).

    PYTHONPATH=src python scripts/pseudo_corpus.py ../shared/data/msmarco-passage/dl21/bm25-top100.json \
        --out /work/dl21-pseudo/corpus.jsonl

The result is the union of the lists' passages: unlabeled, but gathered by the collection's own queries, so it is
denser around their topics than the real collection (say so wherever a result on it is reported). Write it outside
the repository: it is a copy of benchmark data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from headrank.data.formats import DataFormatError, RerankInput, read_rankgpt_file


def union_of_candidates(lists: list[RerankInput]) -> dict[str, str]:
    """{docid: text} over every candidate of every list; one docid with two different texts is refused (a file
    whose hits carry no docid gets positional ids, which would collide across lists)."""
    corpus: dict[str, str] = {}
    for entry in lists:
        for cand in entry.candidates:
            if corpus.setdefault(cand.docid, cand.text) != cand.text:
                raise DataFormatError(f"docid {cand.docid!r} stands for two different passages (hits need a 'docid')")
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", type=Path, help="RankGPT JSON: [{query, hits: [{docid, content}]}]")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        corpus = union_of_candidates(read_rankgpt_file(args.candidates))
    except (DataFormatError, OSError) as err:
        sys.exit(f"pseudo_corpus: {err}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for docid, text in corpus.items():
            f.write(json.dumps({"_id": docid, "text": text}, ensure_ascii=False) + "\n")
    print(f"{len(corpus)} passages -> {args.out}")


if __name__ == "__main__":
    main()
