"""HeadRank checkpoints: a directory with the base model's name, a head set and (usually) a LoRA adapter.

    my-checkpoint/headrank_config.json   base model, scoring, training config and history; optionally the
                                         inference settings it should run with ("inference", see below)
    my-checkpoint/headset.json           the head set (with the base weights' fingerprint)
    my-checkpoint/adapter/               LoRA adapter in peft's format (merged into the weights at load time,
                                         without peft for a plain LoRA); absent when
                                         the config says ``"adapter": false`` (heads read the base model)

A shipped preset (``headrank.engine.presets``) is such a directory with inference settings and a model card.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from headrank.engine.heads import HeadSet
from headrank.engine.rule import SafetyValve, fusion_weight

CONFIG_NAME = "headrank_config.json"
HEADSET_NAME = "headset.json"
ADAPTER_DIR = "adapter"
FORMAT = "headrank.checkpoint/1"


@dataclass(frozen=True)
class InferenceSettings:
    """How a checkpoint is meant to be run; chosen on validation data and stored with it.

    ``both_orders``: read each list as given and reversed, average each passage's two scores (less position
    bias, two passes). ``window``: rank lists longer than this in sliding windows of this many passages (None:
    one prompt whenever the list fits). ``fuse_first_stage``: weight of the input (first-stage) order in a
    weighted reciprocal rank fusion with the attention ranking (None: no fusion; see ``headrank.engine.fusion``).
    ``safety_valve``: a list whose reliability signal is below the valve's threshold is fused with the valve's
    larger first-stage weight (None: no valve; see ``headrank.engine.rule``).
    """

    both_orders: bool = False
    window: int | None = None
    fuse_first_stage: float | None = None
    safety_valve: SafetyValve | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.both_orders, bool):
            raise ValueError(f"both_orders must be true or false, got {self.both_orders!r}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or self.window < 2):
            raise ValueError(f"window must be an integer >= 2 or null, got {self.window!r}")
        object.__setattr__(self, "fuse_first_stage", fusion_weight(None, self.fuse_first_stage))  # 0: no fusion
        if self.safety_valve is not None and not isinstance(self.safety_valve, SafetyValve):
            object.__setattr__(self, "safety_valve", SafetyValve.from_dict(self.safety_valve))

    @classmethod
    def from_dict(cls, data: dict | None) -> InferenceSettings:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(f"inference settings must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"both_orders", "window", "fuse_first_stage", "safety_valve"}
        if unknown:
            raise ValueError(f"unknown inference settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def short(self) -> str:
        """A compact form for tables: '1 pass + RRF 0.5', '2 orders', '1 pass, windows of 20'."""
        out = "2 orders" if self.both_orders else "1 pass"
        if self.fuse_first_stage:
            out += f" + RRF {self.fuse_first_stage:g}"
        if self.window:
            out += f", windows of {self.window}"
        if self.safety_valve:
            out += f", valve {self.safety_valve.signal} < {self.safety_valve.threshold:.3g}"
        return out

    def describe(self) -> str:
        parts = ["both orders averaged" if self.both_orders else "one pass in input order"]
        if self.window:
            parts.append(f"windows of {self.window}")
        if self.fuse_first_stage:
            parts.append(f"fused with the first stage (RRF, w={self.fuse_first_stage:g})")
        if self.safety_valve:
            parts.append(f"safety valve ({self.safety_valve.describe()})")
        return ", ".join(parts)


def is_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def write_config(out_dir: Path, heads: HeadSet, train_config: dict, base_model_name: str, history: list[dict]) -> None:
    (out_dir / CONFIG_NAME).write_text(json.dumps({
        "format": FORMAT, "base_model": base_model_name, "method": "heads", "calibrate": True,
        "train_config": train_config, "history": history,
    }, indent=2))
    heads.save(out_dir / HEADSET_NAME)


def save_adapter(peft_model: torch.nn.Module, out_dir: Path) -> None:
    peft_model.save_pretrained(out_dir / ADAPTER_DIR)


def load_checkpoint_config(path: str | Path) -> dict:
    data = json.loads((Path(path) / CONFIG_NAME).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a headrank checkpoint (format {data.get('format')!r})")
    return data


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Hide peft's call of a deprecated transformers property (a FutureWarning users cannot act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def uses_adapter(checkpoint: str | Path, config: dict | None = None) -> bool:
    """Whether a checkpoint's heads read an adapter-merged model (the default) or the base model itself.

    A config saying ``"adapter": false`` means the base model; then an ``adapter/`` folder next to it is an
    error, not something to ignore silently (which of the two was measured would be unknown). Without that
    key a missing ``adapter/`` is an incomplete checkpoint.
    """
    config = load_checkpoint_config(checkpoint) if config is None else config
    flag = config.get("adapter", True)
    if not isinstance(flag, bool):
        raise ValueError(f"{checkpoint}: 'adapter' must be true or false, got {flag!r}")
    present = (Path(checkpoint) / ADAPTER_DIR).is_dir()
    if flag and not present:
        raise FileNotFoundError(f"{checkpoint}: no {ADAPTER_DIR}/ directory (incomplete checkpoint; a head set "
                                "on the base model says \"adapter\": false in its config)")
    if not flag and present:
        raise ValueError(f"{checkpoint}: the config says \"adapter\": false but an {ADAPTER_DIR}/ directory is "
                         "present; remove one of the two")
    return flag


TRAIN_EXTRA = "pip install 'headrank[train]'"
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


def merge_adapter(model: torch.nn.Module, checkpoint: str | Path) -> torch.nn.Module:
    """Apply a checkpoint's LoRA adapter to a loaded base model and merge it (plain weights at inference);
    a checkpoint without adapter (``uses_adapter``) returns the model unchanged.

    A plain LoRA on linear layers (what ``headrank train`` writes) is merged here, W += (alpha / r) B A, so that
    ranking needs no peft; any other adapter peft saved (DoRA, rank patterns, extra modules, ...) goes to peft,
    which the ``train`` extra installs."""
    if not uses_adapter(checkpoint):
        return model
    adapter = Path(checkpoint) / ADAPTER_DIR
    config = json.loads((adapter / "adapter_config.json").read_text())
    pairs = _plain_lora_pairs(model, adapter, config)
    if pairs is None:
        return _merge_with_peft(model, adapter)
    scale = config["lora_alpha"] / (config["r"] ** 0.5 if config.get("use_rslora") else config["r"])
    with torch.no_grad():
        for linear, (down, up) in pairs.items():
            delta = (up.float() @ down.float()) * scale
            linear.weight.copy_((linear.weight.float() + delta.to(linear.weight.device)).to(linear.weight.dtype))
    return model


def _plain_lora_pairs(model: torch.nn.Module, adapter: Path, config: dict) -> dict | None:
    """{linear layer: (A, B)} of a plain LoRA adapter, or None when it uses anything else."""
    from safetensors.torch import load_file

    plain = (config.get("peft_type") == "LORA" and not config.get("use_dora") and not config.get("rank_pattern")
             and not config.get("alpha_pattern") and not config.get("modules_to_save")
             and config.get("bias", "none") == "none" and not config.get("lora_bias")
             and not config.get("fan_in_fan_out") and (adapter / "adapter_model.safetensors").is_file()
             and isinstance(config.get("r"), int) and config["r"] > 0
             and isinstance(config.get("lora_alpha"), int | float))
    if not plain:
        return None
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(adapter / "adapter_model.safetensors").items():
        match = _LORA_KEY.match(key)
        if match is None:
            return None
        parts.setdefault(match["module"], {})[match["part"]] = tensor
    modules = dict(model.named_modules())
    pairs = {}
    for name, ab in parts.items():
        linear = modules.get(name)
        if not isinstance(linear, torch.nn.Linear) or set(ab) != {"A", "B"} or \
                (ab["B"].shape[0], ab["A"].shape[1]) != tuple(linear.weight.shape):
            return None
        pairs[linear] = (ab["A"], ab["B"])
    return pairs


def _merge_with_peft(model: torch.nn.Module, adapter: Path) -> torch.nn.Module:
    try:
        from peft import PeftModel
    except ImportError as err:
        raise ImportError(f"{adapter} is not a plain LoRA on linear layers; merging it needs peft: "
                          f"{TRAIN_EXTRA}") from err
    with quiet_peft():
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
