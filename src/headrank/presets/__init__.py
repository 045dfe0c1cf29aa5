"""Shipped HeadRank presets: trained head sets and adapters with their inference settings and model cards.

A preset is a HeadRank checkpoint directory (``headrank.checkpoint``) that ships as package data:

    presets/<name>/headrank_config.json   base model, inference settings, training recipe and history, "card"
    presets/<name>/headset.json           the head set (with the base weights' fingerprint)
    presets/<name>/adapter/               peft LoRA adapter (safetensors, well under 5 MB)
    presets/<name>/README.md              the model card, rendered from "card" (``presets.card``)

Base weights are never shipped: a preset names its base model, fetched and cached like any named model.
Three modules: ``registry`` (which presets exist and what they say; imported by the ranker and the model
loader, so it imports nothing above ``checkpoint``), ``card`` (the model card) and ``build`` (turning a
trained checkpoint into a preset, and ``headrank build-preset``'s whole recipe; it sits above the ranker).
"""

from headrank.presets.registry import (
                                       CARD_NAME,
                                       DEFAULT_PRESET,
                                       FAST_PRESET,
                                       PRESETS_DIR,
                                       Preset,
                                       available_presets,
                                       base_model_of,
                                       is_preset_name,
                                       list_presets,
                                       load_preset,
)

__all__ = ["CARD_NAME", "DEFAULT_PRESET", "FAST_PRESET", "PRESETS_DIR", "Preset", "available_presets", "base_model_of",
           "is_preset_name", "list_presets", "load_preset"]
