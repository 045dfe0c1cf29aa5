"""HeadRanker: the public API. ``rank(query, docs, top_k)`` like sentence-transformers and rerankers.

One prefill of the listwise prompt (truncated at the deepest head-set layer), plus the short
calibration tail over the cached passages; no token is generated.

Lists that do not fit ``max_length`` tokens, or hold more than ``window`` passages when a window is
set, are ranked with sliding windows (RankGPT-style): windows of as many passages as fit (at most
``window``), from the bottom of the list to the top, each half overlapping the next, so the best
passages of every window move up. No passage is dropped. Small models read long prompts poorly
(docs/research/depth.md, "K = 50"); ``window=20`` keeps every prompt at the length the head sets were chosen on.
With windowing, the returned ``score`` is rank-derived (``n - position``) because attention scores of
different windows are not comparable; ``RankResult.windowed`` says so. Fusion and the safety valve then act
in each window (``rule.window_order``), which is a list of the length they were chosen on.

``both_orders=True`` reads every list (or window) twice, as given and reversed, and scores each passage
by the mean of its two scores: attention favours passages by position, reversal swaps which passages
that helps, and the mean cancels much of it (docs/research/position.md, "Both orders") at twice the cost.

``fuse_first_stage=w`` fuses the attention ranking with the input order by weighted reciprocal rank fusion
(``headrank.engine.fusion``); the returned score is then the fused score. Fusion assumes the input order IS a
first-stage ranking (best first): documents in arbitrary order get an arbitrary boost. The shipped presets
fuse by default; pass ``fuse_first_stage=0`` to ``rank`` / ``rank_batch`` / ``score`` (or to
``from_pretrained``) when your documents are not in first-stage order.

Each call returns a ``Ranking`` per query: a list of ``RankResult`` (best first) that also says which
inference settings ranked it and how many prompt tokens it cost.

Thread safety: prompt building never changes shared tokenizer state (``headrank.engine.prompt``), and a forward
reads the model without changing it, so one ranker may be called from several threads. Forwards of
concurrent calls then share the machine's cores; a service runs them one at a time (``headrank.serve``).

``safety_valve`` (``headrank.engine.rule``): a list whose own attention scores look unreliable (a signal below the
valve's threshold) is fused with the valve's larger first-stage weight, so that query stays near the first
stage; ``Ranking.valve_fired`` says when it did. Switch it per call with ``safety_valve=False``.

Presets and checkpoints carry the inference settings they were validated with (``both_orders``,
``window``, ``fuse_first_stage``, ``safety_valve``); arguments left at ``None`` take them, ``False`` / ``0``
switch them off.

Scores are listwise: they compare passages within one call, not across calls or queries.

Empty or whitespace-only passages never reach the model: they are ranked last, in input order, with
score ``-inf`` (``RankResult.to_dict`` writes ``None``, so JSON stays valid).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from headrank.engine.capture import ListAttention, capture_lists, enable_capture
from headrank.engine.checkpoint import (
    ADAPTER_DIR,
    HEADSET_NAME,
    InferenceSettings,
    is_checkpoint,
    load_checkpoint_config,
    merge_adapter,
)
from headrank.engine.heads import HeadSet
from headrank.engine.mass import ScoringConfig
from headrank.engine.models import NAMED_MODELS, LoadedModel, load_model, pad_token_id, resolve_device, resolve_dtype
from headrank.engine.presets import DEFAULT_PRESET, is_preset_name, load_preset
from headrank.engine.prompt import CALIBRATION_QUERY, ListwisePrompt, PromptBuilder, PromptSettings
from headrank.engine.quantize import (
    cache_key,
    check_quantize,
    check_quantize_device,
    files_content_digest,
    quantize_model,
    weights_identity,
)
from headrank.engine.relevance import RelevanceCalibration
from headrank.engine.results import ListJob, Ranking, RankResult, Reranker, list_jobs
from headrank.engine.rule import SafetyValve, ScoringRule, final_scores, fusion_weight, valve_setting, window_order
from headrank.methods import ATTENTION, Method, resolve

__all__ = ["HeadRanker", "RankResult", "Ranking", "METHODS"]
METHODS = tuple(m.value for m in ATTENTION)
logger = logging.getLogger(__name__)


def _check_load_options(overrides: dict, max_passage_tokens: int | None) -> None:
    """The inference settings and prompt limits of a load, checked by their own rules before a model loads."""
    if max_passage_tokens is not None:
        PromptSettings(max_passage_tokens=max_passage_tokens)
    _settings(InferenceSettings(), overrides)  # the overrides' own rules (0 / False switch off)


class HeadRanker(Reranker):
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
        fuse_first_stage: float | None = None,
        preset: str | None = None,
        safety_valve: SafetyValve | None = None,
        relevance: RelevanceCalibration | None = None,
    ) -> None:
        heads.check_model(model.num_layers, model.num_heads)
        fuse_first_stage = fusion_weight(None, fuse_first_stage)  # 0 / False: no fusion, as in every call
        safety_valve = valve_setting(None, safety_valve)  # validates; True / False / None: no valve here
        if window is not None and window < 2:
            raise ValueError(f"window must be >= 2 passages (or None: one prompt when it fits), got {window}")
        if heads.fingerprint and verify_fingerprint:
            heads.check_fingerprint(model)
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
        self.fuse_first_stage = fuse_first_stage
        self.safety_valve = safety_valve
        self.preset = preset
        # P(relevant) per passage, fitted for this checkpoint's scores (headrank.engine.relevance); None: not calibrated
        self.relevance = relevance
        self.quantize: str | None = None  # "int8" once ``quantized`` switched the model
        tok = model.tokenizer
        self._pad_id = pad_token_id(tok)
        self._calibration_tail = self.builder.tail_ids(CALIBRATION_QUERY)
        # On a GPU every new sequence length costs new kernel choices (a first call of a new length took ~3x
        # a repeat, BENCHMARKS.md "GPU"): lengths are padded to a few buckets there (capture.bucket_length).
        self.length_buckets = next(model.model.parameters()).device.type == "cuda"

    def __repr__(self) -> str:
        what = f"preset={self.preset!r}, " if self.preset else ""
        return (f"HeadRanker({what}method={self.method!r}, model={self.model.name!r}, heads={len(self.heads.heads)}, "
                f"L*={self.heads.deepest_layer}, {self.inference_settings.describe()}"
                f"{', int8' if self.quantize else ''})")

    @property
    def scoring_rule(self) -> ScoringRule:
        """The head set's rule (heads, weights, calibration, ICR masking) with the ranker's fusion and valve."""
        return ScoringRule.of(self.heads, self.scoring.calibrate, self.scoring.token_mask, self.fuse_first_stage,
                              self.safety_valve, self.scoring.combine)

    @property
    def inference_settings(self) -> InferenceSettings:
        return InferenceSettings(both_orders=self.both_orders, window=self.window,
                                 fuse_first_stage=self.fuse_first_stage, safety_valve=self.safety_valve)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | LoadedModel = DEFAULT_PRESET,
        heads: HeadSet | str | Path | Iterable | None = None,
        method: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_passage_tokens: int | None = None,
        calibrate: bool = True,
        max_length: int | None = None,
        truncate: bool = True,
        window: int | None = None,
        both_orders: bool | None = None,
        fuse_first_stage: float | None = None,
        safety_valve: bool | SafetyValve | None = None,
        quantize: str | None = None,
    ) -> HeadRanker:
        """Load a preset (default: the default HeadRank preset), a checkpoint, or a model with a head set.

        ``model``: a shipped preset name (``headrank.engine.presets.available_presets()``), a HeadRank checkpoint
        or preset directory (base model + merged adapter + head set + inference settings), or a base model
        (named, hub id, local dir, .gguf). With a preset, ``method="icr"`` or an explicit ``heads`` runs on
        the preset's base model instead. ``method="icr"`` is the ICR baseline: every head, full depth, N/A
        calibration and ICR's token masking; ``method="heads"`` reads the given head set. ``window``,
        ``both_orders``, ``fuse_first_stage``, ``safety_valve``: see the module docstring; ``None`` keeps a
        preset's setting. ``quantize``: "int8" (CPU, ``headrank.engine.quantize``; a passed ``LoadedModel`` changes in
        place), "none" (float), None (a preset's CPU setting).
        """
        quantize = check_quantize_request(quantize, device, dtype)
        model = _check_model_argument(model)
        overrides = dict(window=window, both_orders=both_orders, fuse_first_stage=fuse_first_stage,
                         safety_valve=safety_valve)
        _check_load_options(overrides, max_passage_tokens)  # before any model loads
        if isinstance(model, str) and (is_preset_name(model) or is_checkpoint(model)):
            preset = load_preset(model)
            base_model = preset.base_model
            if heads is None and (method is None or resolve(method, ATTENTION) is Method.HEADS):
                return cls._from_checkpoint(preset.path, device, dtype, max_passage_tokens, max_length, truncate,
                                            overrides, quantize)
            if not is_preset_name(model):
                raise ValueError("a HeadRank checkpoint brings its own head set; do not pass heads or method "
                                 f"(for another head set or ICR, pass its base model {base_model!r})")
            model = _model_for_head_set(heads, base_model) if heads is not None else base_model
            logger.info("running %s on %s instead of the trained preset", method or "heads", model)
        method = _check_method(method, heads)
        loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        if method == "icr":
            head_set = HeadSet.all_heads(loaded.num_layers, loaded.num_heads, model=loaded.name)
            scoring = ScoringConfig(calibrate=True, token_mask=True)
        else:
            head_set = HeadSet.coerce(heads)
            scoring = ScoringConfig(calibrate=calibrate, token_mask=False)
        prompt_args = {**head_set.prompt, **({} if max_passage_tokens is None else {"max_passage_tokens": max_passage_tokens})}
        settings = _settings(InferenceSettings(), overrides)
        ranker = cls(loaded, head_set, scoring=scoring, prompt=PromptSettings(**prompt_args), truncate=truncate,
                     max_length=max_length, method=method, window=settings.window, both_orders=settings.both_orders,
                     fuse_first_stage=settings.fuse_first_stage, safety_valve=settings.safety_valve)
        # A model loaded here has the identity of its files; one passed in may have been changed in memory: no cache.
        identity = None if isinstance(model, LoadedModel) else weights_identity(loaded.path)
        return ranker.quantized(quantize, identity) if quantize not in (None, "none") else ranker

    @classmethod
    def _from_checkpoint(cls, path: Path, device: str, dtype: str, max_passage_tokens: int | None,
                         max_length: int | None, truncate: bool, overrides: dict | None = None,
                         quantize: str | None = None) -> HeadRanker:
        config = load_checkpoint_config(path)
        head_set = HeadSet.load(path / HEADSET_NAME)
        settings = _settings(InferenceSettings.from_dict(config.get("inference")), overrides or {})
        relevance = relevance_for(config, path, max_passage_tokens, head_set.prompt)  # checked before loading
        loaded = load_model(config["base_model"], device=device, dtype=dtype)
        head_set.check_model(loaded.num_layers, loaded.num_heads)
        head_set.check_fingerprint(loaded)  # the adapter was trained on these base weights
        identity = weights_identity(loaded.path)
        if identity is not None and (path / ADAPTER_DIR).is_dir():
            identity = {**identity, "adapter": files_content_digest(path / ADAPTER_DIR)}
        merged = merge_adapter(loaded.model, path)
        enable_capture(merged)
        preset = config.get("preset")
        model = LoadedModel(model=merged, tokenizer=loaded.tokenizer, name=preset or str(path), path=str(path))
        prompt_args = {**head_set.prompt, **({} if max_passage_tokens is None else {"max_passage_tokens": max_passage_tokens})}
        ranker = cls(model, head_set, scoring=ScoringConfig(calibrate=config.get("calibrate", True)),
                     prompt=PromptSettings(**prompt_args), truncate=truncate, max_length=max_length,
                     method=Method.HEADS.value, verify_fingerprint=False, window=settings.window,
                     both_orders=settings.both_orders, fuse_first_stage=settings.fuse_first_stage, preset=preset,
                     safety_valve=settings.safety_valve,
                     relevance=relevance)
        if quantize is None and ranker.device_type == "cpu":  # a preset's int8 setting is a CPU setting
            quantize = check_quantize(config.get("quantize"))
        return ranker.quantized(quantize, identity) if quantize not in (None, "none") else ranker

    @property
    def device_type(self) -> str:
        return next(self.model.model.parameters()).device.type

    def quantized(self, mode: str, identity: dict | None = None) -> HeadRanker:
        """Switch this ranker's model to int8 linear layers (``headrank.engine.quantize``) in the layers it runs, in
        place; ``identity`` names the weights for the cache (None: quantized without caching)."""
        from headrank.engine.models import headrank_home

        mode = check_quantize(mode)
        if mode is None:
            return self
        check_quantize_device(mode, next(self.model.model.parameters()).device, self.model.dtype)
        layers = range(self.heads.deepest_layer + 1 if self.truncate else self.model.num_layers)
        self._quantize_report = quantize_model(self.model.model, layers, cache_key(identity, layers),
                                               headrank_home() / "int8")
        self.quantize = mode
        return self

    # ------------------------------------------------------------------ scoring of whole lists

    def score_prompts(self, prompts: Sequence[ListwisePrompt]) -> list[torch.Tensor]:
        """Scores (input order) for prompts that fit the context, in one batched forward."""
        rule = self.scoring_rule  # built once per batch, not per prompt
        return [rule.from_attention(att, p.passage_spans, cal) for p, (att, cal) in zip(prompts, self.capture(prompts))]

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
                bucket=self.length_buckets,
            )
        calibration = out[1] if self.scoring.calibrate else [None] * len(prompts)
        return list(zip(out[0], calibration))

    def warm_up(self, max_tokens: int | None = None, max_batch: int = 1, seconds: float | None = None) -> int:
        """Run one forward at every bucket length up to ``max_tokens`` (default: the context) and every batch
        bucket up to ``max_batch`` lists (``rank_batch``'s ``batch_size``; with ``both_orders`` a list is two
        prompts), so that no request pays for a new kernel shape later; returns how many forwards ran. Smaller
        batches and shorter lengths run first; with ``seconds`` it stops starting forwards after that long (the
        rest is met by the first request that needs it). Only with length buckets (on a GPU); elsewhere nothing
        runs and 0 is returned."""
        from headrank.engine.capture import batch_buckets, bucket_lengths

        if not self.length_buckets:
            return 0
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"seconds must be >= 0 (or None for no limit), got {seconds!r}")
        tail = self.builder.tail_ids(CALIBRATION_QUERY)
        lengths = [n for n in bucket_lengths(min(max_tokens or self.max_length, self.max_length)) if n > len(tail) + 1]
        shapes = [(b, n) for b in batch_buckets(max_batch * (2 if self.both_orders else 1)) for n in lengths]
        started, runs, too_big = time.perf_counter(), 0, math.inf
        for batch, n in shapes:  # the prefix and first tail fill bucket n; the second tail takes its usual width
            if seconds is not None and time.perf_counter() - started >= seconds:
                logger.info("warm-up stopped after %.0f s: %d of %d shapes ran", seconds, runs, len(shapes))
                break
            if batch * n >= too_big:
                continue
            try:
                with torch.inference_mode():
                    capture_lists(self.model.model, [[self._pad_id] * (n - len(tail))] * batch,
                                  [[tail] * batch, [tail] * batch], list(self.heads.heads), truncate=self.truncate,
                                  pad_id=self._pad_id, bucket=True)
            except torch.cuda.OutOfMemoryError:
                # A shape the device cannot hold is not a reason to fail the start: such a request fails alone
                # (the service retries a failed batch list by list); shapes at least as large are skipped.
                too_big = batch * n
                logger.warning("warm-up: %d lists of %d tokens do not fit in the device's memory; larger shapes "
                               "skipped", batch, n)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            runs += 1
        return runs

    # ------------------------------------------------------------------ public API

    def rank(
        self,
        query: str,
        docs: Sequence[str | Mapping],
        top_k: int | None = None,
        return_documents: bool = True,
        doc_ids: Sequence | None = None,
        metadata: Sequence | None = None,
        fuse_first_stage: float | None = None,
        safety_valve: bool | SafetyValve | None = None,
    ) -> Ranking:
        """Rank ``docs`` for ``query``; results sorted best first, each with its input index and score.

        ``docs`` are strings, or dicts with ``text`` and optionally ``id``/``doc_id`` and ``meta``/``metadata``;
        ``doc_ids`` / ``metadata`` (one per passage) do the same for strings. Both come back on the results.
        ``fuse_first_stage``: this call's fusion weight with the input order (``None``: the ranker's setting,
        ``0``: off). Fusion treats the input order as a first-stage ranking; switch it off for unordered input.
        ``safety_valve``: ``None`` / ``True`` the ranker's valve, ``False`` off (the valve also fuses with the
        input order, so switch both off for unordered input).
        """
        return self.rank_batch([query], [docs], top_k=top_k, return_documents=return_documents,
                               doc_ids=None if doc_ids is None else [doc_ids],
                               metadata=None if metadata is None else [metadata],
                               fuse_first_stage=fuse_first_stage, safety_valve=safety_valve)[0]

    def rank_batch(
        self,
        queries: Sequence[str],
        docs: Sequence[Sequence[str]],
        top_k: int | None = None,
        return_documents: bool = True,
        batch_size: int = 4,
        doc_ids: Sequence[Sequence] | None = None,
        metadata: Sequence[Sequence] | None = None,
        fuse_first_stage: float | None = None,
        safety_valve: bool | SafetyValve | None = None,
    ) -> list[Ranking]:
        """Rank several (query, docs) lists; lists that fit the context share batched forwards.

        ``fuse_first_stage``, ``safety_valve`` as in ``rank`` (one setting for every list of the call)."""
        if isinstance(queries, str):
            raise TypeError("rank_batch takes a list of queries; use rank() for a single query")
        if not isinstance(queries, Sequence) or not isinstance(docs, Sequence):
            raise TypeError("rank_batch takes lists (not iterators) of queries and of passage lists")
        if len(queries) != len(docs):
            raise ValueError(f"got {len(queries)} queries but {len(docs)} passage lists")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 (or None for all), got {top_k!r}")
        settings = self.settings_for(fuse_first_stage, safety_valve)
        jobs = list_jobs(queries, docs, doc_ids, metadata)
        fitting: list[tuple[ListJob, list[ListwisePrompt]]] = []
        for job in jobs:
            if not job.kept:
                continue
            docs_kept = [job.docs[i] for i in job.kept]
            over_window = self.window is not None and len(docs_kept) > self.window
            prompt = None if over_window else self.builder.build(job.query, docs_kept)  # no tokenizing twice
            if prompt is not None and len(prompt) <= self.max_length:
                twins = self._twins(job.query, docs_kept, prompt)
                job.prompt_tokens = sum(len(p) for p in twins)
                fitting.append((job, twins))
            else:
                job.order, job.prompt_tokens, job.valve_windows, job.window_scores = self._rank_windowed(
                    job.query, docs_kept, settings)
                job.windowed = True
        for start in range(0, len(fitting), batch_size):
            chunk = fitting[start : start + batch_size]
            for (job, _), scores in zip(chunk, self._score_twins([group for _, group in chunk])):
                job.scores = scores.tolist()
        return [job.ranking(top_k, return_documents, settings, self.relevance) for job in jobs]

    def settings_for(self, fuse_first_stage: float | None = None,
                     safety_valve: bool | SafetyValve | None = None) -> InferenceSettings:
        """The inference settings of one call: the ranker's, with this call's fusion weight and valve (None
        keeps the ranker's)."""
        return InferenceSettings(both_orders=self.both_orders, window=self.window,
                                 fuse_first_stage=fusion_weight(self.fuse_first_stage, fuse_first_stage),
                                 safety_valve=valve_setting(self.safety_valve, safety_valve))

    def explain(self, query: str, docs: Sequence[str], per_head: bool = False,
                fuse_first_stage: float | None = None, safety_valve: bool | SafetyValve | None = None):
        """Per-token contributions to every passage's score, from the same pass (``headrank.engine.explain``);
        ``fuse_first_stage``, ``safety_valve`` as in ``rank``."""
        from headrank.engine.explain import explain

        return explain(self, query, docs, per_head=per_head, fuse_first_stage=fuse_first_stage,
                       safety_valve=safety_valve)

    def score(self, query: str, docs: Sequence[str], fuse_first_stage: float | None = None,
              safety_valve: bool | SafetyValve | None = None) -> list[float]:
        """Scores in input order (the list must fit the context and the window; empty passages score -inf).

        ``fuse_first_stage``, ``safety_valve`` as in ``rank``."""
        settings = self.settings_for(fuse_first_stage, safety_valve)
        job = ListJob.make(query, docs, 0)
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
        scores = final_scores(job.scores or [], settings.fuse_first_stage, settings.safety_valve).scores
        for i, s in zip(job.kept, scores):
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
            need = self.builder.overhead(query) + sum(costs[:2])
            what = "its one passage" if len(docs) == 1 else "two of its passages"
            raise ValueError(
                f"the list needs {need} tokens for {what} (passages are cut to "
                f"{self.prompt_settings.max_passage_tokens} tokens) but max_length is {self.max_length}; "
                "raise max_length or lower max_passage_tokens"
            )
        return min(size, self.window) if self.window is not None else size

    def _rank_windowed(self, query: str, docs: list[str], settings: InferenceSettings | None = None
                       ) -> tuple[list[int], int, int, list[tuple[float, int]]]:
        """Sliding windows from the bottom of the list up, stride half a window, each ordered by the rule
        (fusion and valve of ``settings``, per window); the final order, the prompt tokens it took, in how
        many windows the valve fired, and each passage's heads' score in the last window that read it (with
        that window's size)."""
        fuse = settings.fuse_first_stage if settings else None
        valve = settings.safety_valve if settings else None
        size = self.window_size(query, docs)
        stride = max(1, size // 2)
        order = list(range(len(docs)))
        end, tokens, fired = len(docs), 0, 0
        last: list[tuple[float, int]] = [(-math.inf, 0)] * len(docs)
        progress = _WindowProgress(1 + max(0, math.ceil((len(docs) - size) / stride)), len(docs))
        while True:
            progress.step()
            start = max(0, end - size)
            window = order[start:end]
            window_docs = [docs[i] for i in window]
            twins = self._twins(query, window_docs, self.builder.build(query, window_docs))
            tokens += sum(len(p) for p in twins)
            scores = self._score_twins([twins])[0].tolist()
            for i, score in zip(window, scores):
                last[i] = (score, len(window))
            ranked, valve_fired = window_order(scores, window, fuse, valve)  # window: first-stage positions
            fired += valve_fired
            order[start:end] = [window[j] for j in ranked]
            if start == 0:
                return order, tokens, fired, last
            end -= stride


class _WindowProgress:
    """Logs a long windowed ranking's progress with an ETA: at every tenth of the windows from 20 windows on,
    and after any window once ``every`` seconds passed without a word, so neither thousands of short windows
    nor a few long ones run silently."""

    def __init__(self, total: int, passages: int, every: float = 5.0) -> None:
        self.total, self.passages, self.done, self.every, self.tenths = total, passages, 0, every, 0
        self.started = self.last = time.perf_counter()

    def step(self) -> None:
        now = time.perf_counter()
        tenth = 10 * self.done // self.total
        due = (self.total >= 20 and tenth > self.tenths) or now - self.last >= self.every
        if self.done and self.done < self.total and due:
            self.last, self.tenths = now, tenth
            elapsed = now - self.started
            logger.info("ranking %d passages in windows: %d/%d windows, about %.0f s left", self.passages,
                        self.done, self.total, elapsed / self.done * (self.total - self.done))
        self.done += 1


def relevance_for(config: dict, path: Path, max_passage_tokens: int | None,
                  prompt: dict) -> RelevanceCalibration | None:
    """The checkpoint's relevance calibration, unless this load reads passages differently from the lists it
    was fitted on (another passage budget changes the scores' scale)."""
    try:
        calibration = RelevanceCalibration.from_dict(config.get("relevance"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    fitted_budget = prompt.get("max_passage_tokens")
    if calibration is not None and max_passage_tokens not in (None, fitted_budget):
        logger.warning("max_passage_tokens=%s differs from the %s the relevance calibration was fitted with: "
                       "results carry no relevance probability", max_passage_tokens, fitted_budget)
        return None
    return calibration


def _check_model_argument(model) -> str | LoadedModel:
    """``from_pretrained``'s model as a string or a loaded model; anything else refused by name."""
    if isinstance(model, Path):
        model = str(model)
    if not isinstance(model, (str, LoadedModel)):
        raise TypeError(f"model must be a preset name, a path, a model name or a LoadedModel, got {type(model).__name__}")
    if isinstance(model, str) and not model.strip():
        raise ValueError("model is an empty string; pass a preset name, a model name or a path")
    return model


def _check_method(method: str | None, heads) -> str:
    """The method a head set or its absence implies (heads / ICR), checked against what was asked."""
    method = resolve(method or ("heads" if heads is not None else "icr"), ATTENTION).value
    if method == "heads" and heads is None:
        raise ValueError("method 'heads' needs a head set (list of (layer, head) pairs or a JSON file)")
    if method == "icr" and heads is not None:
        raise ValueError("method 'icr' reads every head; drop heads=... or use method='heads'")
    return method


def _model_for_head_set(heads, fallback: str) -> str:
    """The model an explicit head set records (a named model or an existing path), else ``fallback``."""
    recorded = HeadSet.coerce(heads).model if isinstance(heads, (str, Path, HeadSet)) else None
    if recorded and (recorded in NAMED_MODELS or Path(recorded).exists()):
        return recorded
    return fallback


def _settings(base: InferenceSettings, overrides: dict) -> InferenceSettings:
    """A preset's settings with the caller's overrides: None keeps the preset's, False / 0 switches off."""
    window, both, fuse, valve = (overrides.get(k) for k in ("window", "both_orders", "fuse_first_stage",
                                                            "safety_valve"))
    if both is not None and not isinstance(both, bool):
        raise ValueError(f"both_orders must be True, False or None (the preset's setting), got {both!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        raise ValueError(f"window must be an integer >= 2, 0 (no window) or None (the preset's setting), "
                         f"got {window!r}")
    return InferenceSettings(
        both_orders=base.both_orders if both is None else both,
        window=base.window if window is None else (window or None),
        fuse_first_stage=fusion_weight(base.fuse_first_stage, fuse),
        safety_valve=valve_setting(base.safety_valve, valve),
    )


def check_quantize_request(quantize, device: str, dtype: str) -> str | None:
    """Validate ``quantize`` against the device and dtype asked for, before any model loads. An explicit
    ``"int8"`` on a GPU is refused; ``None`` (a preset's CPU setting, if any) and ``"none"`` pass through."""

    mode = check_quantize(quantize)
    if mode is not None:
        dev = resolve_device(device)
        check_quantize_device(mode, dev, resolve_dtype(dtype, dev))
    return "none" if quantize == "none" else mode


def cpu_quantize(model, device: str) -> str | None:
    """The quantization a preset or checkpoint runs with on ``device``: its CPU setting on a CPU, else None."""

    if not isinstance(model, (str, Path)) or not (is_preset_name(model) or is_checkpoint(model)):
        return None
    return load_preset(model).quantize if resolve_device(device).type == "cpu" else None
