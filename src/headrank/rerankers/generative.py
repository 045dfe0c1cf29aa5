"""The generative listwise baseline (RankGPT-style sliding windows, permutation parsing) on a base model; each
list reports its window counters (formatting success, identity answers, generated tokens) to evaluate."""

from __future__ import annotations

from headrank.rerankers.base import ScoreReranker, check_baseline_options, loaded_base_model


def load(model: str | None = None, device: str = "auto", dtype: str = "auto", max_passage_tokens: int = 100,
         fuse_first_stage: float | None = None) -> ScoreReranker:
    from headrank.baselines.generative import GenerativeRanker

    check_baseline_options(max_passage_tokens, fuse_first_stage)
    loaded = loaded_base_model(model, device, dtype)

    def score(query: str, passages: list[str]) -> tuple[list[float], dict]:
        ranker = GenerativeRanker(loaded, max_passage_tokens=max_passage_tokens)
        scores = ranker.score(query, passages)
        return scores, {"windows_total": ranker.windows_total, "windows_valid": ranker.windows_valid,
                        "windows_identity": ranker.windows_identity, "tokens_generated": ranker.tokens_generated}

    return ScoreReranker(f"{loaded.name}, generative", score, fuse_first_stage, loaded)
