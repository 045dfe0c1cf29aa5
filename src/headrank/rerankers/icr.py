"""The ICR baseline (every head, full depth, N/A calibration; Chen et al., ICLR 2025) on a model, by default the
default preset's base model."""

from __future__ import annotations

from headrank.defaults import DEFAULT_PRESET


def load(model: str | None = None, **options):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(model or DEFAULT_PRESET, method="icr", **options)
