"""The pointwise baseline (log P("yes") - log P("no") after a judge prompt, one forward per passage)."""

from __future__ import annotations

from headrank.rerankers.base import ScoreReranker, check_baseline_options, loaded_base_model


def load(model: str | None = None, device: str = "auto", dtype: str = "auto", max_passage_tokens: int = 100,
         fuse_first_stage: float | None = None) -> ScoreReranker:
    from headrank.baselines.pointwise import PointwiseRanker

    check_baseline_options(max_passage_tokens, fuse_first_stage)
    loaded = loaded_base_model(model, device, dtype)
    judge = PointwiseRanker(loaded, max_passage_tokens=max_passage_tokens)
    return ScoreReranker(f"{loaded.name}, pointwise", judge.score, fuse_first_stage, loaded)
