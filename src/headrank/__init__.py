"""HeadRank: decoding-free passage reranking from a decoder LLM's attention heads."""

from headrank.checkpoint import InferenceSettings
from headrank.heads import HeadSet, HeadSetMismatchError
from headrank.models import DEFAULT_MODEL, ModelUnavailableError, load_model
from headrank.presets import DEFAULT_PRESET, FAST_PRESET, available_presets, load_preset
from headrank.prompt import PromptSettings
from headrank.ranker import HeadRanker, RankResult
from headrank.scoring import ScoringConfig

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRESET",
    "FAST_PRESET",
    "InferenceSettings",
    "available_presets",
    "load_preset",
    "HeadRanker",
    "HeadSet",
    "HeadSetMismatchError",
    "ModelUnavailableError",
    "PromptSettings",
    "RankResult",
    "ScoringConfig",
    "load_model",
]
__version__ = "0.1.0"
