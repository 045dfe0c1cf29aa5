"""Zero-label training lists: the base LLM writes a query for passages sampled from the user's corpus.

InPars / Promptagator style: for each sampled passage, the model reads a versioned prompt
(``query_prompts/synthetic-query-v2.json``: instruction and three worked examples as chat turns) and writes one
search query greedily; BM25 over the same corpus gives that query's candidates, and the source passage is the
one judged relevant. A query whose source passage BM25 does not find (with a positive score in the top
``depth``) is dropped: a consistency filter, as its list would hold no positive. With ``hard_only`` a query
whose source BM25 already ranks first is dropped too, and more passages are written for until ``n`` lists are
kept: with v1 queries about 80% of the lists were such easy ones (the source's own words), which every head set
fused with BM25 gets right and which therefore cannot tell heads apart (docs/research/adaptation.md).
v2 asks for the need in other words than the passage's. The result is an ordinary ``Benchmark`` that
``adapt.adapt_preset`` adapts on, with its own held-out synthetic split; real judgments, where a user has them,
are only for reporting.

Generation is resumable: each written query is appended to a JSONL file keyed by the prompt version, the
model's fingerprint and the passage's text, so a rerun skips what is done and a changed prompt or model starts
over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from headrank.data.benchmarks import Benchmark
from headrank.data.formats import Candidate, appendable_lines
from headrank.engine.prompt import normalize_text

logger = logging.getLogger(__name__)

PROMPT_VERSION = "synthetic-query-v2"
PROMPT_VERSIONS = ("synthetic-query-v1", "synthetic-query-v2")
OVERSAMPLE = 4  # with hard_only: write for at most this many times n passages
MIN_WORDS = 20  # shorter passages make vague queries
MAX_PASSAGE_WORDS = 150  # the prompt reads at most this much of a passage
MAX_QUERY_TOKENS = 24
MAX_QUERY_WORDS = 16  # a longer answer is a copied sentence, not a query: cut


def prompt_template(version: str = PROMPT_VERSION) -> dict:
    """The versioned prompt: ``system``, ``user`` (with ``{passage}``) and worked ``examples``."""
    if version not in PROMPT_VERSIONS:
        raise ValueError(f"unknown prompt version {version!r}; shipped: {', '.join(PROMPT_VERSIONS)}")
    return json.loads(files("headrank.learn").joinpath(f"query_prompts/{version}.json").read_text(encoding="utf-8"))


def query_messages(template: dict, passage: str) -> list[dict]:
    """Chat turns: the instruction, each example as a user/assistant pair, then the passage."""
    messages = [{"role": "system", "content": template["system"]}]
    for example in template["examples"]:
        messages += [{"role": "user", "content": template["user"].format(passage=example["passage"])},
                     {"role": "assistant", "content": example["query"]}]
    return messages + [{"role": "user", "content": template["user"].format(passage=passage)}]


def sample_passages(corpus: dict[str, str], n: int, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` document ids among passages of at least ``MIN_WORDS`` words."""
    if n < 1:
        raise ValueError(f"the number of synthetic queries must be >= 1, got {n}")
    eligible = sorted(d for d, t in corpus.items() if len(t.split()) >= MIN_WORDS)
    if not eligible:
        raise ValueError(f"no passage in the corpus has {MIN_WORDS} words or more; nothing to write queries for")
    random.Random(f"synthetic/{seed}").shuffle(eligible)
    return eligible[:n]


def clean_query(text: str) -> str:
    """The first line of the model's answer without a 'Query:' label, quotes or a trailing period."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    for label in ("query:", "search query:"):
        if line.lower().startswith(label):
            line = line[len(label):].strip()
    return " ".join(normalize_text(line.strip().rstrip(".").strip("\"'` ")).split()[:MAX_QUERY_WORDS])


class QueryWriter:
    """Writes one query per passage with a causal LM (a ``models.LoadedModel``), greedily, cached on disk."""

    def __init__(self, model, cache: Path, version: str = PROMPT_VERSION) -> None:
        self.model, self.version, self.cache = model, version, Path(cache)
        self.template = prompt_template(version)
        self.done: dict[str, str] = {}
        if self.cache.is_file():
            for line in appendable_lines(self.cache):
                row = json.loads(line)
                self.done[row["key"]] = row["query"]

    def key(self, text: str) -> str:
        h = hashlib.sha256(f"{self.version}|{self.model.fingerprint}|{MAX_PASSAGE_WORDS}|".encode())
        h.update(text.encode("utf-8"))
        return h.hexdigest()[:24]

    def write(self, passage: str) -> str:
        import torch

        from headrank.engine.models import pad_token_id

        key = self.key(passage)
        if key in self.done:
            return self.done[key]
        tok = self.model.tokenizer
        words = normalize_text(passage).split()[:MAX_PASSAGE_WORDS]
        messages = query_messages(self.template, " ".join(words))
        inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.model.generate(**inputs, max_new_tokens=MAX_QUERY_TOKENS, do_sample=False,
                                            pad_token_id=pad_token_id(tok))
        query = clean_query(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
        self.done[key] = query
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        with self.cache.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "query": query}, ensure_ascii=False) + "\n")
        return query


def synthetic_benchmark(corpus: dict[str, str], writer: QueryWriter, n: int, depth: int = 20, seed: int = 0,
                        name: str = "synthetic", cache_dir: Path | None = None,
                        on_query: Callable[[int, int], None] | None = None, hard_only: bool = False) -> Benchmark:
    """Written queries over ``corpus`` with BM25 candidates and their source passage judged relevant: one per
    sampled passage, or with ``hard_only`` up to ``n`` lists whose source BM25 finds but not first, writing for at
    most ``OVERSAMPLE * n`` passages (in the seeded sample's order, so a rerun resumes from the writer's cache)."""
    from headrank.data.bm25 import bm25_search, cached_bm25

    budget = OVERSAMPLE * n if hard_only else n
    docids = sample_passages(corpus, budget, seed)
    queries: dict[str, str] = {}
    kept: dict[str, list[str]] = {}
    written = 0
    for start in range(0, len(docids), n):
        round_ids = docids[start:start + n]
        for docid in round_ids:
            query = writer.write(corpus[docid])
            written += 1
            if query:
                queries[f"syn-{docid}"] = query
            if on_query:
                on_query(written, len(docids))  # with hard_only an upper bound: it stops once n lists are kept
        batch = {f"syn-{d}": queries[f"syn-{d}"] for d in round_ids if f"syn-{d}" in queries}
        if batch:
            run = cached_bm25(corpus, batch, cache_dir, depth) if cache_dir else bm25_search(corpus, batch, depth)
            for qid, hits in run.items():
                found = [d for d, score in hits[:depth] if score > 0]  # found by the query's words, not by a tie
                source = qid[len("syn-"):]
                if source in found and not (hard_only and found[0] == source):
                    kept[qid] = [d for d, _ in hits[:depth]]
        if not hard_only or len(kept) >= n:
            break
    if not queries:
        raise ValueError("the model wrote no usable query")
    kept = dict(list(kept.items())[:n])
    what = "find their passage, not first," if hard_only else "find their passage"
    logger.info("%d of %d written queries %s in the BM25 top %d", len(kept), len(queries), what, depth)
    if not kept:
        raise ValueError(f"no written query finds its own passage in the BM25 top {depth}"
                         + (" below rank 1 (every list was one BM25 already solves)" if hard_only else ""))
    if hard_only and len(kept) < n:
        logger.warning("only %d of the %d lists asked for: %d passages written, %d of them were found first by BM25 "
                       "or not at all", len(kept), n, written, written - len(kept))
    candidates = {q: [Candidate(d, corpus[d]) for d in docs] for q, docs in kept.items()}
    qrels = {q: {q[len("syn-"):]: 1} for q in kept}
    return Benchmark(name=name, queries={q: queries[q] for q in kept}, candidates=candidates, qrels=qrels,
                     relevant_grade=1)


def corpus_benchmark(corpus_path: str | Path, base_model: str, n: int, cache_dir: Path, depth: int = 20,
                     seed: int = 0, device: str = "auto", dtype: str = "auto",
                     on_query: Callable[[int, int], None] | None = None, hard_only: bool = True,
                     version: str = PROMPT_VERSION) -> Benchmark:
    """Read a corpus (BEIR folder, corpus.jsonl or docid<TAB>text TSV), write ``n`` queries with ``base_model``
    (the preset's base LLM), and return the synthetic benchmark (generation cached under ``cache_dir``);
    ``n`` is the number of lists with ``hard_only``, else of passages written for."""
    import gc

    from headrank.data.formats import read_corpus
    from headrank.engine.models import load_model

    prompt_template(version)  # an unknown version fails before the corpus is read or the model loads
    problems: list[str] = []
    corpus = read_corpus(corpus_path, "skip", problems)
    repeats = getattr(corpus, "repeats", 0)
    if repeats:
        rows = len(corpus) + len(problems)
        logger.warning("%s: %d rows, %d documents: %d repeated id%s (the first text kept), e.g. %s", corpus_path, rows,
                       len(corpus), repeats, "s" * (repeats > 1), next(p for p in problems if "repeated" in p))
    skipped = [p for p in problems if "repeated" not in p]
    if skipped:
        logger.warning("%d corpus rows skipped, e.g. %s", len(skipped), skipped[0])
    if len(corpus) < depth:
        raise ValueError(f"{corpus_path}: {len(corpus)} documents; a corpus for adaptation needs at least {depth}")
    writer = QueryWriter(load_model(base_model, device=device, dtype=dtype), Path(cache_dir) / "synthetic-queries.jsonl",
                         version)
    try:
        return synthetic_benchmark(corpus, writer, n, depth, seed, name=f"synthetic-{Path(corpus_path).name}",
                                   cache_dir=Path(cache_dir) / "bm25", on_query=on_query, hard_only=hard_only)
    finally:
        del writer
        gc.collect()  # the writer's copy of the base model goes before adapt loads the preset
