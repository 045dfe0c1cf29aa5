"""First stage: BM25 over a corpus with bm25s (English Snowball stemming, English stopwords).

k1 = 0.9 and b = 0.4 are Pyserini's defaults, so the candidates resemble the BM25 runs the field
publishes. Results are cached as a TREC run plus a RankGPT-style candidate JSON, keyed by a hash of
the corpus, the queries and the settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from headrank.data.formats import Run, read_trec_run, write_trec_run

K1, B = 0.9, 0.4


def _key(corpus: dict[str, str], queries: dict[str, str], depth: int) -> str:
    h = hashlib.sha256()
    for mapping in (corpus, queries):
        for k in sorted(mapping):
            h.update(k.encode())
            h.update(b"\0")
            h.update(mapping[k].encode())
            h.update(b"\1")
    h.update(f"bm25s k1={K1} b={B} depth={depth} stem=english stop=en".encode())
    return h.hexdigest()[:16]


def bm25_search(corpus: dict[str, str], queries: dict[str, str], depth: int = 100) -> Run:
    """Top-``depth`` BM25 documents per query, best first."""
    import bm25s
    import Stemmer

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG when imported
    if not corpus:
        raise ValueError("BM25 needs a non-empty corpus")
    stemmer = Stemmer.Stemmer("english")
    doc_ids = list(corpus)
    retriever = bm25s.BM25(k1=K1, b=B)
    retriever.index(bm25s.tokenize([corpus[d] for d in doc_ids], stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    qids = list(queries)
    k = min(depth, len(doc_ids))
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    results, scores = retriever.retrieve(tokens, k=k, show_progress=False)
    return {
        qid: [(doc_ids[results[i, j]], float(scores[i, j])) for j in range(k)]
        for i, qid in enumerate(qids)
    }


def cached_bm25(corpus: dict[str, str], queries: dict[str, str], cache_dir: Path, depth: int = 100) -> Run:
    """bm25_search, cached in ``cache_dir`` as ``bm25-<key>.trec`` plus ``bm25-<key>.json`` candidates."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _key(corpus, queries, depth)
    run_path = cache_dir / f"bm25-{key}.trec"
    if run_path.is_file():
        return read_trec_run(run_path)
    run = bm25_search(corpus, queries, depth)
    candidates = [
        {"query": queries[qid], "hits": [
            {"qid": qid, "docid": d, "rank": r + 1, "score": s, "content": corpus[d]} for r, (d, s) in enumerate(docs)
        ]}
        for qid, docs in run.items()
    ]
    (cache_dir / f"bm25-{key}.json").write_text(json.dumps(candidates, ensure_ascii=False))
    tmp = run_path.with_suffix(".partial")
    write_trec_run(tmp, run, "bm25s")
    tmp.rename(run_path)
    return run
