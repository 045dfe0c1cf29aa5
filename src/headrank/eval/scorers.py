"""Score functions for whole benchmarks: what ``evaluate`` (and batch jobs) feed every candidate list through.

A score function takes ``(query, passages in feed order)`` and returns one score per passage in that order,
or ``(scores, info)`` with per-list counters (the generative baseline's windows). ``build_scorer`` makes one
per method and records what produced the scores: the weights' fingerprint (a merged adapter included), a
hash of a probe prompt's token ids (chat template, instructions and tokenizer in one number), and the head
set. Run folders are keyed on those (``evaluate.content_key``), so a changed model, head set or prompt never
reuses an old run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from headrank.methods import BASELINES, Method, names, resolve

METHODS = names()  # headrank evaluate --method

ScoreFn = Callable[[str, Sequence[str]], "list[float] | tuple[list[float], dict]"]


@dataclass
class Scorer:
    score: ScoreFn
    method: str
    model_fingerprint: str | None = None  # None: no model (the first-stage passthrough)
    prompt_hash: str | None = None
    head_set: dict | None = None  # the head set's content (None: ICR's every head, a baseline, or BM25)
    record: dict = field(default_factory=dict)  # what metrics.json records about the scorer


def ranker_scores(ranker) -> ScoreFn:
    """A HeadRanker as a score function (windowed lists get rank-derived scores)."""
    def score(query: str, passages: Sequence[str]) -> list[float]:
        out = [0.0] * len(passages)
        for r in ranker.rank(query, list(passages), return_documents=False):
            out[r.corpus_id] = r.score
        return out

    return score


def build_scorer(method: str, model: str, heads: str | None = None, max_passage_tokens: int | None = 100,
                 device: str = "auto", dtype: str = "auto", calibrate: bool = True, window: int | None = None,
                 shared_capture: bool = False, cache_dir=None, fuse_first_stage: float | None = None,
                 safety_valve=None, quantize: str | None = None) -> Scorer:
    """The score function of ``method`` on ``model``; raises ValueError / ModelUnavailableError on bad input.

    Scores are raw: a preset's fusion and safety valve are off, because evaluate applies them to the records
    (``evaluate.fused_records``). Only windowed runs, whose rank-derived scores cannot be fused afterwards,
    take ``fuse_first_stage`` / ``safety_valve`` here, applied window by window."""
    from headrank.engine.presets import base_model_of

    method = resolve(method).value
    if method == Method.BM25:
        from headrank.rerankers import load_reranker

        return Scorer(load_reranker(method).score, method)
    if quantize not in (None, "none") and (method in names(BASELINES) or shared_capture):
        raise ValueError(f"quantize={quantize!r} applies to icr and heads with their own capture, not to "
                         f"{'a shared capture' if shared_capture else method}")
    if method in names(BASELINES):
        return _baseline_scorer(method, base_model_of(model), device, dtype, max_passage_tokens or 100)
    if shared_capture:
        return _shared_scorer(model, method, heads, max_passage_tokens, device, dtype, calibrate, cache_dir)
    from headrank.engine.heads import HeadSet
    from headrank.rerankers import load_attention_reranker

    if method == "icr" and heads:
        raise ValueError("--method icr reads every head; drop --heads or use --method heads")
    head_set = HeadSet.coerce(heads) if heads else None
    # evaluate applies its order and fusion itself: a preset's own inference settings are switched off
    if (fuse_first_stage is not None or safety_valve is not None) and not window:
        raise ValueError("fusion and the safety valve go into the scorer only for windowed runs")
    ranker = load_attention_reranker(model, method, head_set, device=device, dtype=dtype,
                                     max_passage_tokens=max_passage_tokens, calibrate=calibrate, window=window or 0,
                                     both_orders=False, fuse_first_stage=fuse_first_stage or 0,
                                     safety_valve=safety_valve or False, quantize=quantize or "none")
    return _ranker_scorer(ranker, ranker_scores(ranker), method, ranker.heads.to_dict() if method == "heads" else None)


def _ranker_scorer(ranker, score: ScoreFn, method: str, head_set: dict | None, **record) -> Scorer:
    from headrank.engine.prompt import prompt_hash

    loaded = ranker.model
    return Scorer(score, method, model_fingerprint=loaded.fingerprint,
                  prompt_hash=prompt_hash(loaded.tokenizer, ranker.prompt_settings), head_set=head_set,
                  record={"model_path": loaded.path, "model_fingerprint": loaded.fingerprint,
                          "head_set": head_set or "all heads (ICR preset)",
                          "prompt": dataclasses.asdict(ranker.prompt_settings), **record})


def _shared_scorer(model, method, heads, max_passage_tokens, device, dtype, calibrate, cache_dir) -> Scorer:
    """ICR or an untrained head set read from the shared all-head capture (one cached pass per list)."""
    from headrank.engine.checkpoint import is_checkpoint
    from headrank.engine.heads import HeadSet
    from headrank.engine.observe import SharedCapture
    from headrank.engine.presets import is_preset_name
    from headrank.engine.prompt import PromptSettings
    from headrank.engine.ranker import HeadRanker

    if is_checkpoint(model) or is_preset_name(model):
        return _shared_checkpoint_scorer(model, method, heads, max_passage_tokens, device, dtype, cache_dir)
    if method == "heads" and not heads:
        raise ValueError("--method heads needs --heads (a head set JSON or 'layer:head,...')")
    head_set = HeadSet.coerce(heads) if method == "heads" else None
    ranker = HeadRanker.from_pretrained(model, method="icr", device=device, dtype=dtype,
                                        max_passage_tokens=max_passage_tokens)
    if head_set is not None:
        head_set.check_model(ranker.model.num_layers, ranker.model.num_heads)
        head_set.check_fingerprint(ranker.model)
        wanted = PromptSettings(**{**head_set.prompt, "max_passage_tokens": ranker.prompt_settings.max_passage_tokens})
        if wanted != ranker.prompt_settings:
            raise ValueError("the head set was selected with other prompt settings than the shared capture's; "
                             "evaluate it without --shared-capture")
    score = SharedCapture(ranker, cache_dir).scorer(head_set, calibrate)
    return _ranker_scorer(ranker, score, method, head_set.to_dict() if head_set else None, capture="shared")


def _shared_checkpoint_scorer(model, method, heads, max_passage_tokens, device, dtype, cache_dir) -> Scorer:
    """A checkpoint or preset (its own head set, weights included) read from an all-head capture of its merged
    weights: the cache that ``headrank adapt`` and recipe searches fill serves its evaluation too."""
    from headrank.engine.observe import SharedCapture, all_head_observer
    from headrank.engine.ranker import HeadRanker

    if method != "heads" or heads:
        raise ValueError("a checkpoint or preset brings its own head set: use --method heads without --heads")
    trained = HeadRanker.from_pretrained(model, device=device, dtype=dtype, max_passage_tokens=max_passage_tokens,
                                         window=0, both_orders=False, fuse_first_stage=0, safety_valve=False)
    score = SharedCapture(all_head_observer(trained), cache_dir).scorer(trained.heads, trained.scoring.calibrate)
    return _ranker_scorer(trained, score, method, trained.heads.to_dict(), capture="shared")


def _baseline_scorer(method: str, model: str, device: str, dtype: str, budget: int) -> Scorer:
    """Generative listwise or pointwise through the reranker factory; generative lists report their window
    counters."""
    from headrank.rerankers import load_reranker

    reranker = load_reranker(method, model, device=device, dtype=dtype, max_passage_tokens=budget)
    loaded = reranker.model
    blob = json.dumps([method, budget]).encode()
    return Scorer(reranker.score_with_info, method, model_fingerprint=loaded.fingerprint,
                  prompt_hash=hashlib.sha256(blob).hexdigest()[:16],
                  record={"model_path": loaded.path, "model_fingerprint": loaded.fingerprint})
