"""Fusion with the first stage: weighted reciprocal rank fusion of a reranker's scores and the input order.

Small attention rerankers are strong at some queries and weak at others where BM25 is strong (RESULTS.md and
docs/research/baselines.md, per-benchmark rows); a hybrid of the two is what many search stacks deploy. Fusion works on ranks, not
scores, so it needs no score calibration: each passage gets

    fused = (1 - w) / (k + rank_by_reranker) + w / (k + first_stage_rank)

with 1-based ranks and k = 60 (Cormack et al., 2009). ``w = 0.5`` ranks exactly like plain RRF of the two
rankings. The input order is taken to be the first-stage order, as everywhere in HeadRank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

RRF_K = 60


def rank_positions(scores: Sequence[float]) -> list[int]:
    """1-based rank of each item by descending score; ties keep input order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for position, i in enumerate(order):
        ranks[i] = position + 1
    return ranks


def fuse_with_first_stage(scores: Sequence[float], weight: float, k: int = RRF_K) -> list[float]:
    """Fused scores (input order = first-stage order); ``-inf`` scores (empty passages) stay ``-inf``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be between 0 and 1, got {weight}")
    if k < 1:
        raise ValueError("the RRF constant k must be >= 1")
    ranks = rank_positions(scores)
    # exact arithmetic: two passages whose fused scores are equal in theory (at w 0.6, positions 6 and 10 ranked
    # 17th and 10th by the heads) got floats one ulp apart, the later one higher, so the tie was broken by
    # rounding instead of by the input order as everywhere else (rank_positions, the validation scripts)
    w = Fraction(float(weight)).limit_denominator(10**6)  # float(): a numpy float32 weight is not a float
    return [
        -math.inf if scores[i] == -math.inf else float((1 - w) / (k + ranks[i]) + w / (k + i + 1))
        for i in range(len(scores))
    ]
