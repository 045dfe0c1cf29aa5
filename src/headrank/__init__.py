"""HeadRank: decoding-free passage reranking from a decoder LLM's attention heads.

Names are imported on first use (PEP 562), so ``import headrank`` and the ``headrank`` command start
without loading torch and transformers.
"""

from __future__ import annotations

import importlib

from headrank.defaults import DEFAULT_MODEL, DEFAULT_PRESET, FAST_PRESET, ModelUnavailableError

_LAZY = {
    "InferenceSettings": "headrank.engine.checkpoint",
    "HeadSet": "headrank.engine.heads",
    "HeadSetMismatchError": "headrank.engine.heads",
    "load_model": "headrank.engine.models",
    "available_presets": "headrank.engine.presets",
    "load_preset": "headrank.engine.presets",
    "PromptSettings": "headrank.engine.prompt",
    "HeadRanker": "headrank.engine.ranker",
    "RankResult": "headrank.engine.ranker",
    "Ranking": "headrank.engine.ranker",
    "ScoringConfig": "headrank.engine.mass",
    "Method": "headrank.methods",
    "Reranker": "headrank.rerankers",
    "load_reranker": "headrank.rerankers",
}

__all__ = ["DEFAULT_MODEL", "DEFAULT_PRESET", "FAST_PRESET", "ModelUnavailableError", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'headrank' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
