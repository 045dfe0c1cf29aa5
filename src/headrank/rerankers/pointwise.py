"""The pointwise baseline (log P("yes") - log P("no") after a judge prompt, one forward per passage)."""

from __future__ import annotations

from headrank.defaults import DEFAULT_MODEL
from headrank.rerankers.base import ScoreReranker


def load(model: str | None = None, device: str = "auto", dtype: str = "auto", max_passage_tokens: int = 100,
         fuse_first_stage: float | None = None) -> ScoreReranker:
    from headrank.baselines.pointwise import PointwiseRanker
    from headrank.models import load_model
    from headrank.presets import base_model_of

    loaded = model if hasattr(model, "tokenizer") else load_model(base_model_of(model or DEFAULT_MODEL), device=device,
                                                                  dtype=dtype)
    judge = PointwiseRanker(loaded, max_passage_tokens=max_passage_tokens)
    return ScoreReranker(f"{loaded.name}, pointwise", judge.score, fuse_first_stage, loaded)
