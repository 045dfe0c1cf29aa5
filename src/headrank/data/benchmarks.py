"""Benchmarks: queries, first-stage candidate lists and graded judgments, by name or path.

Named benchmarks live under a data root (``--data-root``, ``$HEADRANK_DATA``, or ``../shared/data``
from the working directory): ``dl19``, ``dl20``, ``dl21`` (TREC DL passage, BM25 top-100 candidate
files), ``noveleval`` (21 queries x 20 passages, ordered by BM25 within each list), ``nfcorpus``
(BEIR; BM25 over the corpus with bm25s, cached). A path may be a BEIR folder, or a folder with one
RankGPT candidate ``.json`` and a ``qrels.txt``. ``ir_datasets:<id>`` uses that package where it can
reach its sources. Only judged queries that have candidates are evaluated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from headrank.data.bm25 import bm25_search, cached_bm25
from headrank.data.formats import Candidate, Qrels, read_beir, read_qrels, read_rankgpt_file, read_topics

NAMED = ("dl19", "dl20", "dl21", "noveleval", "nfcorpus")


@dataclass
class Benchmark:
    name: str
    queries: dict[str, str]
    candidates: dict[str, list[Candidate]]  # first-stage order, best first
    qrels: Qrels
    relevant_grade: int  # grade from which a passage counts as relevant (2 on TREC DL, 1 elsewhere)

    def __post_init__(self) -> None:
        keep = [q for q in self.queries if q in self.qrels and self.candidates.get(q)]
        if not keep:
            raise ValueError(f"benchmark {self.name}: no judged query has candidates")
        self.queries = {q: self.queries[q] for q in keep}


REPORTING = ("dl19", "dl20", "noveleval", "nfcorpus")  # their test queries are for reporting only


def check_training_set(name: str, split: str) -> None:
    """Refuse a named reporting set as training data: heads, hyperparameters and adapters must not see it."""
    if name in REPORTING and not (name == "nfcorpus" and split != "test"):
        raise ValueError(f"{name} ({split}) is a reporting set and is never used to select heads or train; use dl21, "
                         "nfcorpus with --split train or dev, or your own data")


def default_data_root() -> Path:
    env = os.environ.get("HEADRANK_DATA")
    return Path(env) if env else Path("..") / "shared" / "data"


def load_benchmark(name: str, data_root: Path | None = None, cache_dir: Path | None = None,
                   split: str = "test") -> Benchmark:
    """Load a named benchmark, a path, or an ``ir_datasets:<id>``."""
    root = Path(data_root) if data_root else default_data_root()
    cache = cache_dir or Path("runs") / "cache"
    if name in ("dl19", "dl20", "dl21"):
        return _candidate_folder(root / "msmarco-passage" / name, name, relevant_grade=2)
    if name == "noveleval":
        return _noveleval(root / "noveleval")
    if name == "nfcorpus":
        return _beir(root / "beir" / "nfcorpus", "nfcorpus", split, cache)
    if name.startswith("ir_datasets:"):
        return _ir_datasets(name.split(":", 1)[1])
    path = Path(name)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        return _beir(path, path.name, split, cache)
    if path.is_dir():
        return _candidate_folder(path, path.name, relevant_grade=1)
    raise FileNotFoundError(
        f"unknown benchmark {name!r}: use one of {', '.join(NAMED)}, a BEIR folder, a folder with a candidate "
        f".json and qrels.txt, or ir_datasets:<id> (data root: {root})"
    )


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (set --data-root or HEADRANK_DATA to the benchmark data)")
    return path


def _candidate_folder(folder: Path, name: str, relevant_grade: int) -> Benchmark:
    folder = _need(folder)
    files = sorted(folder.glob("*.json"))
    if len(files) != 1:
        raise FileNotFoundError(f"{folder}: expected exactly one candidate .json file, found {len(files)}")
    entries = read_rankgpt_file(files[0])
    queries, candidates = {}, {}
    for i, entry in enumerate(entries):
        qid = entry.qid or str(i)
        queries[qid] = entry.query
        candidates[qid] = entry.candidates
    return Benchmark(name, queries, candidates, read_qrels(_need(folder / "qrels.txt")), relevant_grade)


def _noveleval(folder: Path) -> Benchmark:
    folder = _need(folder)
    queries = read_topics(folder / "queries.tsv")
    corpus = read_topics(folder / "corpus.tsv")  # same two-column layout: docid<TAB>text
    candidates = {}
    for qid, query in queries.items():
        pool = {d: t for d, t in corpus.items() if d.split("-", 1)[0] == qid}
        run = bm25_search(pool, {qid: query}, depth=len(pool)) if pool else {qid: []}
        candidates[qid] = [Candidate(d, pool[d]) for d, _ in run[qid]]
    return Benchmark("noveleval", queries, candidates, read_qrels(folder / "qrels.txt"), relevant_grade=1)


def _beir(folder: Path, name: str, split: str, cache: Path) -> Benchmark:
    corpus, queries, qrels = read_beir(_need(folder), split)
    judged = {q: t for q, t in queries.items() if q in qrels}
    run = cached_bm25(corpus, judged, cache / name)
    candidates = {q: [Candidate(d, corpus[d]) for d, _ in docs] for q, docs in run.items()}
    return Benchmark(f"{name}" if split == "test" else f"{name}-{split}", judged, candidates, qrels, relevant_grade=1)


def _ir_datasets(dataset_id: str) -> Benchmark:
    try:
        import ir_datasets
    except ImportError:
        raise ImportError("ir_datasets:<id> benchmarks need the 'ir_datasets' package: "
                          "pip install 'headrank[ir-datasets]'") from None
    ds = ir_datasets.load(dataset_id)
    if not ds.has_scoreddocs():
        raise ValueError(f"ir_datasets:{dataset_id} has no first-stage run (scoreddocs) to rerank")
    queries = {q.query_id: q.text for q in ds.queries_iter()}
    qrels: Qrels = {}
    for qrel in ds.qrels_iter():
        qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    ranked: dict[str, list[tuple[float, str]]] = {}
    for sd in ds.scoreddocs_iter():
        if sd.query_id in qrels:
            ranked.setdefault(sd.query_id, []).append((sd.score, sd.doc_id))
    store = ds.docs_store()
    candidates = {}
    for qid, docs in ranked.items():
        docs.sort(key=lambda x: -x[0])
        candidates[qid] = [Candidate(d, getattr(store.get(d), "text", "")) for _, d in docs[:100]]
    grade = 2 if max((g for q in qrels.values() for g in q.values()), default=1) >= 3 else 1
    return Benchmark(dataset_id, queries, candidates, qrels, relevant_grade=grade)


@dataclass
class ExampleList:
    """One real query's first-stage list with its judgments: what the demo and the playground show."""

    source: str  # where it comes from, in words
    qid: str
    query: str
    docids: list[str]  # first-stage order, best first
    texts: list[str]
    grades: dict[str, int]  # every judgment of the query (unjudged passages count as 0)

    def label(self, docid: str) -> str:
        return str(self.grades[docid]) if docid in self.grades else "unjudged"


def first_judged_list(name: str = "dl19", depth: int = 20, data_root: Path | None = None) -> ExampleList:
    """The first judged query of a named benchmark (in its candidate file's order) with its first-stage top
    ``depth``: a rule, so that no one picks the query a reranker happens to do well on."""
    bench = load_benchmark(name, data_root)
    qid = next(iter(bench.queries))
    top = bench.candidates[qid][:depth]
    source = f"TREC {name.upper()} query {qid} (the first judged query), BM25 top {len(top)}"
    return ExampleList(source, qid, bench.queries[qid], [c.docid for c in top], [c.text for c in top],
                       dict(bench.qrels[qid]))


CLASSIC = ("cranfield", "cisi", "npl")  # validation domains in BEIR layout under <data root>/classic/


def load_set(set_name: str, data_root: Path | None = None, cache_dir: Path | None = None) -> Benchmark:
    """A set as the choosing and training steps name it: a named benchmark (``dl21``, ...), ``nfcorpus-<split>``,
    or a classic validation domain (``cranfield``, ``cisi``, ``npl`` under ``<data root>/classic``)."""
    root = Path(data_root) if data_root else default_data_root()
    if set_name.startswith("nfcorpus-"):
        return load_benchmark("nfcorpus", root, cache_dir, split=set_name.split("-", 1)[1])
    if set_name in CLASSIC:
        return load_benchmark(str(root / "classic" / set_name), root, cache_dir)
    return load_benchmark(set_name, root, cache_dir)


def data_hash(bench: Benchmark, depth: int) -> str:
    """Hash of what a run reads: each query, its top-``depth`` candidates (ids and texts) and its judgments."""
    h = hashlib.sha256()
    for qid, query in bench.queries.items():
        cands = [(c.docid, c.text) for c in bench.candidates[qid][:depth]]
        judged = sorted(bench.qrels.get(qid, {}).items())
        h.update(json.dumps([qid, query, cands, judged], ensure_ascii=False).encode())
    return h.hexdigest()[:16]
