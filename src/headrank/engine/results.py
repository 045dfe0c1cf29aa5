"""What a ranking call works on and returns: a list's input checked and normalized (``ListJob``), one ranked
passage (``RankResult``), one query's ranking with the settings that made it (``Ranking``) and the interface
every reranker implements (``Reranker``). Below the ranker,
so that explanations and other consumers use the same input rules without importing the ranker."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from headrank.engine.checkpoint import InferenceSettings
from headrank.engine.prompt import normalize_text
from headrank.engine.relevance import RelevanceCalibration
from headrank.engine.rule import SafetyValve, final_scores


class Ranking(list):
    """One query's results, best first (a plain list of ``RankResult``), with what produced them: ``query``,
    ``settings`` (the inference settings this call used, fusion included) and ``prompt_tokens`` (tokens of
    every prompt the call ran: both orders and windows count each prompt), ``valve_fired`` (the safety valve
    moved this list, or one of its windows, toward the first-stage order). Like rerankers' ``RankedResults``:
    ``top_k(k)`` and ``get(doc_id)``."""

    def __init__(self, results: Iterable = (), settings: InferenceSettings | None = None,
                 prompt_tokens: int = 0, valve_fired: bool = False, query: str | None = None) -> None:
        super().__init__(results)
        self.settings = settings or InferenceSettings()
        self.prompt_tokens = prompt_tokens
        self.valve_fired = valve_fired
        self.query = query

    def top_k(self, k: int) -> Ranking:
        """The best ``k`` results, with this ranking's query and settings."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an integer >= 0, got {k!r}")
        return Ranking(self[:k], self.settings, self.prompt_tokens, self.valve_fired, self.query)

    def get(self, doc_id) -> RankResult:
        """The result of one passage: by the caller's id where passages came with ids, else by input index."""
        for result in self:
            if (result.doc_id if result.doc_id is not None else result.corpus_id) == doc_id:
                return result
        raise KeyError(f"no result with id {doc_id!r} in this ranking (top_k may have cut it)")


@dataclass(frozen=True)
class RankResult:
    """One ranked passage; also readable as a dict (``r["corpus_id"]``) like sentence-transformers."""

    corpus_id: int  # index of the passage in the input list
    score: float  # listwise: comparable within one call only; -inf for an empty passage
    rank: int  # 1-based position in the ranking
    text: str | None = None  # the passage, unless return_documents=False
    windowed: bool = False
    doc_id: str | int | None = None  # the caller's id, when documents were given as dicts with an id
    meta: Mapping | None = None  # the caller's metadata, when documents were given as dicts with one
    model_score: float | None = None  # the heads' own score before fusion and valve (windowed: its last window's)
    relevance: float | None = None  # P(relevant) from the checkpoint's calibration (``headrank.engine.relevance``), if any

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_dict(self) -> dict:
        """JSON-safe: an empty passage's ``-inf`` score becomes ``None``; absent text, id and metadata are left out."""
        out = {"corpus_id": self.corpus_id, "rank": self.rank, "score": self.score if math.isfinite(self.score) else None}
        if self.text is not None:
            out["text"] = self.text
        if self.doc_id is not None:
            out["doc_id"] = self.doc_id
        if self.meta is not None:
            out["meta"] = dict(self.meta)
        if self.model_score is not None:
            out["model_score"] = self.model_score if math.isfinite(self.model_score) else None
        if self.relevance is not None:
            out["relevance"] = self.relevance
        return out


def documents_of(docs, index: int, doc_ids: Sequence | None, metadata: Sequence | None):
    """Texts, caller ids and metadata of one list; docs may be strings or dicts with ``text`` (rerankers-style)."""
    if isinstance(docs, str) or not isinstance(docs, Sequence):
        raise TypeError(f"passages of query {index} must be a list of strings or dicts, got {type(docs).__name__}")
    texts, ids, metas = [], [], []
    for i, doc in enumerate(docs):
        if isinstance(doc, Mapping):
            if not isinstance(doc.get("text"), str):
                raise TypeError(f"passage {i} of query {index} is a dict without a string 'text'")
            texts.append(doc["text"])
            ids.append(doc.get("doc_id", doc.get("id")))
            metas.append(doc.get("meta", doc.get("metadata")))
        else:
            texts.append(doc)
            ids.append(None)
            metas.append(None)
    for name, given in (("doc_ids", doc_ids), ("metadata", metadata)):
        if given is not None and (isinstance(given, (str, bytes)) or len(given) != len(texts)):
            raise ValueError(f"{name} must be a list with one entry per passage ({len(texts)})")
    ids = list(doc_ids) if doc_ids is not None else ids
    metas = list(metadata) if metadata is not None else metas
    for i, key in enumerate(ids):
        if key is not None and (isinstance(key, bool) or not isinstance(key, (str, int))):
            raise TypeError(f"the id of passage {i} of query {index} must be a string or an integer, got "
                            f"{type(key).__name__}")
    for i, meta in enumerate(metas):
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"the metadata of passage {i} of query {index} must be a dict (or None), got "
                            f"{type(meta).__name__}")
    return texts, ids, metas


def list_jobs(queries: Sequence[str], docs: Sequence, doc_ids: Sequence | None,
              metadata: Sequence | None) -> list[ListJob]:
    """One checked ``ListJob`` per query of a batch, carrying the caller's ids and metadata."""
    jobs = []
    for i, (query, passages) in enumerate(zip(queries, docs)):
        texts, ids, metas = documents_of(passages, i, None if doc_ids is None else doc_ids[i],
                                         None if metadata is None else metadata[i])
        job = ListJob.make(query, texts, i)
        job.doc_ids, job.metas = ids, metas
        jobs.append(job)
    return jobs


def visible(text: str) -> bool:
    """Whether a text has a character a reader would see (not only spaces, control or zero-width characters)."""
    return any(ch.isprintable() and not ch.isspace() for ch in text)


def check_encodable(text: str, what: str) -> None:
    """Lone surrogates (e.g. from a bad decode upstream) cannot be tokenized; say where, not deep in the tokenizer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate at character {err.start})") from None


@dataclass
class ListJob:
    """One (query, docs) list on its way through rank_batch."""

    query: str
    docs: list[str]
    kept: list[int]  # indices of non-empty passages, the ones the model sees
    scores: list[float] | None = None  # per kept passage (unwindowed)
    order: list[int] | None = None  # positions into kept (windowed)
    windowed: bool = False
    doc_ids: list | None = None  # the caller's ids and metadata, per input passage
    metas: list | None = None
    prompt_tokens: int = 0  # tokens of every prompt this list ran
    valve_windows: int = 0  # windowed: in how many windows the safety valve fired
    window_scores: list[tuple[float, int]] | None = None  # windowed: per kept passage, (score, window size)

    @classmethod
    def make(cls, query: str, docs: Sequence[str], index: int) -> ListJob:
        if not isinstance(query, str):
            raise TypeError(f"query {index} is {type(query).__name__}, expected str")
        check_encodable(query, f"query {index}")
        if not normalize_text(query):
            raise ValueError(f"query {index} is empty")
        if not visible(query):
            raise ValueError(f"query {index} has no visible characters (only control or zero-width ones)")
        if isinstance(docs, str) or not isinstance(docs, Sequence):
            raise TypeError(f"passages of query {index} must be a list of strings, got {type(docs).__name__}")
        if len(docs) == 0:
            raise ValueError(f"query {index} has no passages to rank")
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                raise TypeError(f"passage {i} of query {index} is {type(doc).__name__}, expected str")
            check_encodable(doc, f"passage {i} of query {index}")
        kept = [i for i, d in enumerate(docs) if normalize_text(d) and visible(d)]  # others rank last, unread
        return cls(query=query, docs=list(docs), kept=kept)

    def ranking(self, top_k: int | None, return_documents: bool, settings: InferenceSettings,
                relevance: RelevanceCalibration | None = None) -> Ranking:
        """This list's ``Ranking`` under one call's settings (fusion and safety valve); ``relevance`` adds each
        passage's calibrated probability."""
        fired: list[bool] = []
        results = self.results(top_k, return_documents, settings.fuse_first_stage, settings.safety_valve, fired,
                               relevance)
        return Ranking(results, settings, self.prompt_tokens,
                       valve_fired=bool(fired and fired[0]) or self.valve_windows > 0, query=self.query)

    def model_scores(self) -> dict[int, tuple[float, int]]:
        """Per input index of a read passage: the heads' score and how many passages its prompt held."""
        if self.windowed:
            return dict(zip(self.kept, self.window_scores or []))
        n = len(self.kept)
        return {i: (s, n) for i, s in zip(self.kept, self.scores or [])}

    def results(self, top_k: int | None, return_documents: bool, fuse: float | None = None,
                valve: SafetyValve | None = None, fired: list | None = None,
                relevance: RelevanceCalibration | None = None) -> list[RankResult]:
        """Ranked results; ``fired`` (a list) receives whether the valve fired. A windowed list was fused and
        valved window by window (``rule.window_order``); its rank-derived scores are not fused again."""
        n = len(self.kept)
        if self.windowed:
            scores = [0.0] * n
            for pos, j in enumerate(self.order or []):
                scores[j] = float(n - pos)
            fuse, valve = None, None
        else:
            scores = list(self.scores or [])
        final = final_scores(scores, fuse, valve)  # kept is in input order: position = first-stage rank
        scores = final.scores
        if fired is not None:
            fired.append(final.valve_fired)
        ranked = sorted(zip(self.kept, scores), key=lambda p: (-p[1], p[0]))
        kept = set(self.kept)
        empty = [i for i in range(len(self.docs)) if i not in kept]
        ranked += [(i, -math.inf) for i in empty]
        ranked = ranked[:top_k] if top_k else ranked
        model = self.model_scores()
        return [
            RankResult(
                corpus_id=i,
                score=s,
                rank=pos + 1,
                text=self.docs[i] if return_documents else None,
                windowed=self.windowed,
                doc_id=self.doc_ids[i] if self.doc_ids else None,
                meta=self.metas[i] if self.metas else None,
                model_score=model[i][0] if i in model else None,
                relevance=relevance.probability(*model.get(i, (-math.inf, 0))) if relevance else None,
            )
            for pos, (i, s) in enumerate(ranked)
        ]


class Reranker(ABC):
    """What every backend offers, with one signature: ``rank`` / ``rank_batch`` / ``score`` take the same options
    in every backend, which either honours an option or refuses it by name (never a TypeError for a keyword
    another backend accepts). Scores are listwise: they order one call's passages."""

    def rank(self, query: str, docs: Sequence[str | Mapping], top_k: int | None = None, return_documents: bool = True,
             doc_ids: Sequence | None = None, metadata: Sequence | None = None, fuse_first_stage: float | None = None,
             safety_valve=None) -> Ranking:
        """One query's ranking, best first (``rank_batch`` of one list)."""
        return self.rank_batch([query], [docs], top_k=top_k, return_documents=return_documents,
                               doc_ids=None if doc_ids is None else [doc_ids],
                               metadata=None if metadata is None else [metadata],
                               fuse_first_stage=fuse_first_stage, safety_valve=safety_valve)[0]

    @abstractmethod
    def rank_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str | Mapping]], top_k: int | None = None,
                   return_documents: bool = True, batch_size: int = 4, doc_ids: Sequence[Sequence] | None = None,
                   metadata: Sequence[Sequence] | None = None, fuse_first_stage: float | None = None,
                   safety_valve=None) -> list[Ranking]:
        """Several queries' rankings; ``fuse_first_stage`` / ``safety_valve`` as in ``HeadRanker.rank``."""

    @abstractmethod
    def score(self, query: str, docs: Sequence[str], fuse_first_stage: float | None = None,
              safety_valve=None) -> list[float]:
        """Scores in input order (an empty passage gets -inf)."""

    def explain(self, query: str, docs: Sequence[str], **options):
        raise NotImplementedError(f"{type(self).__name__} does not read attention; explanations need headrank")
