"""Which presets ship with the package, and what a preset or checkpoint directory says about itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headrank.defaults import DEFAULT_PRESET, FAST_PRESET  # noqa: F401 (re-exported)
from headrank.engine.checkpoint import CONFIG_NAME, InferenceSettings, load_checkpoint_config
from headrank.engine.quantize import check_quantize

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"  # package data: one folder per preset
CARD_NAME = "README.md"


@dataclass(frozen=True)
class Preset:
    """A preset directory and what its config says about it."""

    name: str
    path: Path
    base_model: str
    inference: InferenceSettings
    card: dict = field(default_factory=dict)
    quantize: str | None = None  # "int8": the preset runs int8 MLP layers when it runs on a CPU

    @property
    def headline(self) -> dict:
        """Four-set nDCG@10 of the preset (its settings), BM25 and ICR, as recorded in the card."""
        return self.card.get("four_set_ndcg@10", {})


def available_presets() -> list[str]:
    """Names of the presets shipped in this package."""
    return sorted(p.name for p in PRESETS_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def is_preset_name(name: object) -> bool:
    return isinstance(name, str) and "/" not in name and (PRESETS_DIR / name / CONFIG_NAME).is_file()


def load_preset(name_or_path: str | Path) -> Preset:
    """A shipped preset by name, or a preset / checkpoint directory by path."""
    path = PRESETS_DIR / str(name_or_path) if is_preset_name(name_or_path) else Path(name_or_path)
    if not (path / CONFIG_NAME).is_file():
        raise ValueError(f"unknown preset {str(name_or_path)!r}; shipped presets: {', '.join(available_presets())}")
    config = load_checkpoint_config(path)
    return Preset(name=config.get("preset", path.name), path=path, base_model=config["base_model"],
                  inference=InferenceSettings.from_dict(config.get("inference")), card=config.get("card", {}),
                  quantize=check_quantize(config.get("quantize")))


def base_model_of(model: str) -> str:
    """The base model a preset or checkpoint runs on; any other model name is returned as it is."""
    if is_preset_name(model) or (Path(model) / CONFIG_NAME).is_file():
        return load_preset(model).base_model
    return model


def list_presets() -> list[Preset]:
    return [load_preset(name) for name in available_presets()]
