"""The HeadRank backend: ``HeadRanker`` itself (a preset, a checkpoint, or a model with a head set)."""

from __future__ import annotations

from headrank.defaults import DEFAULT_PRESET


def load(model: str | None = None, **options):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(model or DEFAULT_PRESET, **options)
