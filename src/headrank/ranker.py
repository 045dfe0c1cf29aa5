"""HeadRanker: the public API. ``rank(query, docs, top_k)`` like sentence-transformers and rerankers.

One prefill of the listwise prompt (truncated at the deepest head-set layer), plus the short
calibration tail over the cached passages; no token is generated.

Lists that do not fit ``max_length`` tokens, or hold more than ``window`` passages when a window is
set, are ranked with sliding windows (RankGPT-style): windows of as many passages as fit (at most
``window``), from the bottom of the list to the top, each half overlapping the next, so the best
passages of every window move up. No passage is dropped. Small models read long prompts poorly
(RESULTS.md, K = 50); ``window=20`` keeps every prompt at the length the head sets were chosen on.
With windowing, the returned ``score`` is rank-derived (``n - position``) because attention scores of
different windows are not comparable; ``RankResult.windowed`` says so.

``both_orders=True`` reads every list (or window) twice, as given and reversed, and scores each passage
by the mean of its two scores: attention favours passages by position, reversal swaps which passages
that helps, and the mean cancels much of it (RESULTS.md, "Both orders") at twice the cost.

Empty or whitespace-only passages never reach the model: they are ranked last, in input order, with
score ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from headrank.capture import ListAttention, capture_lists, enable_capture
from headrank.checkpoint import HEADSET_NAME, is_checkpoint, load_checkpoint_config, merge_adapter
from headrank.heads import HeadSet
from headrank.models import DEFAULT_MODEL, LoadedModel, load_model
from headrank.prompt import CALIBRATION_QUERY, ListwisePrompt, PromptBuilder, PromptSettings, normalize_text
from headrank.scoring import ScoringConfig, score_passages

METHODS = ("heads", "icr")


@dataclass(frozen=True)
class RankResult:
    """One ranked passage; also readable as a dict (``r["corpus_id"]``) like sentence-transformers."""

    corpus_id: int  # index of the passage in the input list
    score: float
    rank: int  # 1-based position in the ranking
    text: str | None = None
    windowed: bool = False

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_dict(self) -> dict:
        out = {"corpus_id": self.corpus_id, "rank": self.rank, "score": self.score}
        if self.text is not None:
            out["text"] = self.text
        return out


class HeadRanker:
    """Rerank passages by the attention mass that chosen heads give them."""

    def __init__(
        self,
        model: LoadedModel,
        heads: HeadSet,
        scoring: ScoringConfig | None = None,
        prompt: PromptSettings | None = None,
        truncate: bool = True,
        max_length: int | None = None,
        method: str = "heads",
        verify_fingerprint: bool = True,
        window: int | None = None,
        both_orders: bool = False,
    ) -> None:
        heads.check_model(model.num_layers, model.num_heads)
        if window is not None and window < 2:
            raise ValueError(f"window must be >= 2 passages (or None: one prompt when it fits), got {window}")
        if heads.fingerprint and verify_fingerprint:
            heads.check_fingerprint(model.fingerprint)
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.model = model
        self.heads = heads
        self.scoring = scoring or ScoringConfig()
        # A head set remembers the prompt it was chosen with; an explicit prompt overrides it.
        self.prompt_settings = prompt or PromptSettings(**heads.prompt)
        self.builder = PromptBuilder(model.tokenizer, self.prompt_settings)
        self.truncate = truncate
        self.max_length = min(max_length or model.max_context, model.max_context)
        self.method = method
        self.window = window
        self.both_orders = both_orders
        tok = model.tokenizer
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self._calibration_tail = self.builder.tail_ids(CALIBRATION_QUERY)

    @classmethod
    def from_pretrained(
        cls,
        model: str | LoadedModel = DEFAULT_MODEL,
        heads: HeadSet | str | Path | Iterable | None = None,
        method: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_passage_tokens: int | None = None,
        calibrate: bool = True,
        max_length: int | None = None,
        truncate: bool = True,
        window: int | None = None,
        both_orders: bool = False,
    ) -> HeadRanker:
        """Load a model (named, hub id, local dir, .gguf, or a trained HeadRank checkpoint) and a head set.

        ``method="icr"`` is the ICR preset: every head, full depth, N/A calibration and ICR's token
        masking. ``method="heads"`` reads the given head set (default when ``heads`` is given). A
        checkpoint directory brings its base model, adapter (merged) and head set. ``window``: rank lists
        of more passages in sliding windows of that many; ``both_orders``: average each passage's scores
        over the list as given and reversed (see the module docstring).
        """
        if isinstance(model, (str, Path)) and is_checkpoint(model):
            if heads is not None or method not in (None, "heads"):
                raise ValueError("a HeadRank checkpoint brings its own head set; do not pass heads or method")
            return cls._from_checkpoint(Path(model), device, dtype, max_passage_tokens, max_length, truncate, window,
                                        both_orders)
        method = method or ("heads" if heads is not None else "icr")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "heads" and heads is None:
            raise ValueError("method 'heads' needs a head set (list of (layer, head) pairs or a JSON file)")
        loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        if method == "icr":
            head_set = HeadSet.all_heads(loaded.num_layers, loaded.num_heads, model=loaded.name)
            scoring = ScoringConfig(calibrate=True, token_mask=True)
        else:
            head_set = HeadSet.coerce(heads)
            scoring = ScoringConfig(calibrate=calibrate, token_mask=False)
        prompt_args = dict(head_set.prompt)
        if max_passage_tokens is not None:
            prompt_args["max_passage_tokens"] = max_passage_tokens
        return cls(
            loaded,
            head_set,
            scoring=scoring,
            prompt=PromptSettings(**prompt_args),
            truncate=truncate,
            max_length=max_length,
            method=method,
            window=window,
            both_orders=both_orders,
        )

    @classmethod
    def _from_checkpoint(cls, path: Path, device: str, dtype: str, max_passage_tokens: int | None,
                         max_length: int | None, truncate: bool, window: int | None = None,
                         both_orders: bool = False) -> HeadRanker:
        config = load_checkpoint_config(path)
        head_set = HeadSet.load(path / HEADSET_NAME)
        loaded = load_model(config["base_model"], device=device, dtype=dtype)
        head_set.check_model(loaded.num_layers, loaded.num_heads)
        if head_set.fingerprint:
            head_set.check_fingerprint(loaded.fingerprint)  # the adapter was trained on these base weights
        merged = merge_adapter(loaded.model, path)
        enable_capture(merged)
        model = LoadedModel(model=merged, tokenizer=loaded.tokenizer, name=str(path), path=str(path))
        prompt_args = dict(head_set.prompt)
        if max_passage_tokens is not None:
            prompt_args["max_passage_tokens"] = max_passage_tokens
        return cls(model, head_set, scoring=ScoringConfig(calibrate=config.get("calibrate", True)),
                   prompt=PromptSettings(**prompt_args), truncate=truncate, max_length=max_length,
                   method="headrank", verify_fingerprint=False, window=window, both_orders=both_orders)

    # ------------------------------------------------------------------ scoring of whole lists

    def score_prompts(self, prompts: Sequence[ListwisePrompt]) -> list[torch.Tensor]:
        """Scores (input order) for prompts that fit the context, in one batched forward."""
        return [
            score_passages(att, p.passage_spans, self.scoring, cal)
            for p, (att, cal) in zip(prompts, self.capture(prompts))
        ]

    def _twins(self, query: str, docs: Sequence[str], prompt: ListwisePrompt) -> list[ListwisePrompt]:
        """The prompt of a list, and with ``both_orders`` the prompt of the same list reversed."""
        return [prompt, self.builder.build(query, list(docs)[::-1])] if self.both_orders else [prompt]

    def _score_twins(self, groups: Sequence[list[ListwisePrompt]]) -> list[torch.Tensor]:
        """One batched forward over every prompt of the groups; a reversed twin's scores are mapped back and averaged."""
        flat = self.score_prompts([p for group in groups for p in group])
        out, at = [], 0
        for group in groups:
            scores = flat[at] if len(group) == 1 else (flat[at] + flat[at + 1].flip(0)) / 2
            out.append(scores)
            at += len(group)
        return out

    def capture(self, prompts: Sequence[ListwisePrompt]) -> list[tuple[ListAttention, ListAttention | None]]:
        """Captured attention of the head set for each prompt, and for its N/A tail if calibrating."""
        tails = [[p.tail_ids for p in prompts]]
        if self.scoring.calibrate:
            tails.append([self._calibration_tail for _ in prompts])
        with torch.inference_mode():
            out = capture_lists(
                self.model.model,
                [p.prefix_ids for p in prompts],
                tails,
                list(self.heads.heads),
                truncate=self.truncate,
                pad_id=self._pad_id,
            )
        calibration = out[1] if self.scoring.calibrate else [None] * len(prompts)
        return list(zip(out[0], calibration))

    # ------------------------------------------------------------------ public API

    def rank(
        self, query: str, docs: Sequence[str], top_k: int | None = None, return_documents: bool = True
    ) -> list[RankResult]:
        """Rank ``docs`` for ``query``; results sorted best first, each with its input index and score."""
        return self.rank_batch([query], [docs], top_k=top_k, return_documents=return_documents)[0]

    def rank_batch(
        self,
        queries: Sequence[str],
        docs: Sequence[Sequence[str]],
        top_k: int | None = None,
        return_documents: bool = True,
        batch_size: int = 4,
    ) -> list[list[RankResult]]:
        """Rank several (query, docs) lists; lists that fit the context share batched forwards."""
        if isinstance(queries, str):
            raise TypeError("rank_batch takes a list of queries; use rank() for a single query")
        if len(queries) != len(docs):
            raise ValueError(f"got {len(queries)} queries but {len(docs)} passage lists")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1 (or None for all)")
        jobs = [_Job.make(q, d, i) for i, (q, d) in enumerate(zip(queries, docs))]
        fitting: list[tuple[_Job, list[ListwisePrompt]]] = []
        for job in jobs:
            if not job.kept:
                continue
            docs_kept = [job.docs[i] for i in job.kept]
            over_window = self.window is not None and len(docs_kept) > self.window
            prompt = None if over_window else self.builder.build(job.query, docs_kept)  # no tokenizing twice
            if prompt is not None and len(prompt) <= self.max_length:
                fitting.append((job, self._twins(job.query, docs_kept, prompt)))
            else:
                job.order = self._rank_windowed(job.query, docs_kept)
                job.windowed = True
        for start in range(0, len(fitting), batch_size):
            chunk = fitting[start : start + batch_size]
            for (job, _), scores in zip(chunk, self._score_twins([group for _, group in chunk])):
                job.scores = scores.tolist()
        return [job.results(top_k, return_documents) for job in jobs]

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        """Scores in input order (the list must fit the context and the window; empty passages score -inf)."""
        job = _Job.make(query, docs, 0)
        if job.kept:
            kept_docs = [job.docs[i] for i in job.kept]
            prompt = self.builder.build(job.query, kept_docs)
            if len(prompt) > self.max_length:
                raise ValueError(
                    f"the list needs {len(prompt)} tokens but max_length is {self.max_length}; use rank() (windowed)"
                )
            if self.window is not None and len(job.kept) > self.window:
                raise ValueError(f"{len(job.kept)} passages exceed the window of {self.window}; use rank() (windowed)")
            job.scores = self._score_twins([self._twins(job.query, kept_docs, prompt)])[0].tolist()
        out = [-math.inf] * len(docs)
        for i, s in zip(job.kept, job.scores or []):
            out[i] = s
        return out

    # ------------------------------------------------------------------ windowing

    def window_size(self, query: str, docs: Sequence[str]) -> int:
        """How many passages fit one prompt (at most ``window``), assuming the longest passages of the list."""
        costs = sorted((self.builder.segment_cost(s) + 2 for s in self.builder.passage_segments(docs)), reverse=True)
        budget = self.max_length - self.builder.overhead(query)
        size, used = 0, 0
        for cost in costs:
            if used + cost > budget:
                break
            size, used = size + 1, used + cost
        if size < 2:
            raise ValueError(
                f"max_length {self.max_length} cannot hold two passages of this list; "
                "raise max_length or lower max_passage_tokens"
            )
        return min(size, self.window) if self.window is not None else size

    def _rank_windowed(self, query: str, docs: list[str]) -> list[int]:
        """Sliding windows from the bottom of the list up, stride half a window; returns the final order."""
        size = self.window_size(query, docs)
        stride = max(1, size // 2)
        order = list(range(len(docs)))
        end = len(docs)
        while True:
            start = max(0, end - size)
            window = order[start:end]
            window_docs = [docs[i] for i in window]
            scores = self._score_twins([self._twins(query, window_docs, self.builder.build(query, window_docs))])[0]
            ranked = sorted(range(len(window)), key=lambda j: (-scores[j].item(), j))
            order[start:end] = [window[j] for j in ranked]
            if start == 0:
                return order
            end -= stride


@dataclass
class _Job:
    """One (query, docs) list on its way through rank_batch."""

    query: str
    docs: list[str]
    kept: list[int]  # indices of non-empty passages, the ones the model sees
    scores: list[float] | None = None  # per kept passage (unwindowed)
    order: list[int] | None = None  # positions into kept (windowed)
    windowed: bool = False

    @classmethod
    def make(cls, query: str, docs: Sequence[str], index: int) -> _Job:
        if not isinstance(query, str):
            raise TypeError(f"query {index} is {type(query).__name__}, expected str")
        if not normalize_text(query):
            raise ValueError(f"query {index} is empty")
        if isinstance(docs, str) or not isinstance(docs, Sequence):
            raise TypeError(f"passages of query {index} must be a list of strings, got {type(docs).__name__}")
        if len(docs) == 0:
            raise ValueError(f"query {index} has no passages to rank")
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                raise TypeError(f"passage {i} of query {index} is {type(doc).__name__}, expected str")
        kept = [i for i, d in enumerate(docs) if normalize_text(d)]
        return cls(query=query, docs=list(docs), kept=kept)

    def results(self, top_k: int | None, return_documents: bool) -> list[RankResult]:
        n = len(self.kept)
        if self.windowed:
            ranked = [(self.kept[j], float(n - pos)) for pos, j in enumerate(self.order or [])]
        else:
            pairs = list(zip(self.kept, self.scores or []))
            ranked = sorted(pairs, key=lambda p: (-p[1], p[0]))
        kept = set(self.kept)
        empty = [i for i in range(len(self.docs)) if i not in kept]
        ranked += [(i, -math.inf) for i in empty]
        ranked = ranked[:top_k] if top_k else ranked
        return [
            RankResult(
                corpus_id=i,
                score=s,
                rank=pos + 1,
                text=self.docs[i] if return_documents else None,
                windowed=self.windowed,
            )
            for pos, (i, s) in enumerate(ranked)
        ]
