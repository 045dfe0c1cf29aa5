"""HeadRank: decoding-free passage reranking from a decoder LLM's attention heads.

Names are imported on first use (PEP 562), so ``import headrank`` and the ``headrank`` command start
without loading torch and transformers.
"""

from __future__ import annotations

import importlib

from headrank.defaults import DEFAULT_MODEL, DEFAULT_PRESET, FAST_PRESET, ModelUnavailableError

_LAZY = {
    "InferenceSettings": "headrank.checkpoint",
    "HeadSet": "headrank.heads",
    "HeadSetMismatchError": "headrank.heads",
    "load_model": "headrank.models",
    "available_presets": "headrank.presets",
    "load_preset": "headrank.presets",
    "PromptSettings": "headrank.prompt",
    "HeadRanker": "headrank.ranker",
    "RankResult": "headrank.ranker",
    "Ranking": "headrank.ranker",
    "ScoringConfig": "headrank.scoring",
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
