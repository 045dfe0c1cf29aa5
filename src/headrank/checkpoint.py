"""HeadRank checkpoints: a directory with the base model's name, a head set and a LoRA adapter.

    my-checkpoint/headrank_config.json   base model, scoring, training config and history
    my-checkpoint/headset.json           the head set (with the base weights' fingerprint)
    my-checkpoint/adapter/               peft LoRA adapter (merged into the weights at load time)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from headrank.heads import HeadSet

CONFIG_NAME = "headrank_config.json"
HEADSET_NAME = "headset.json"
ADAPTER_DIR = "adapter"
FORMAT = "headrank.checkpoint/1"


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


def merge_adapter(model: torch.nn.Module, checkpoint: str | Path) -> torch.nn.Module:
    """Apply a checkpoint's LoRA adapter to a loaded base model and merge it (plain weights at inference)."""
    from peft import PeftModel

    adapter = Path(checkpoint) / ADAPTER_DIR
    if not adapter.is_dir():
        raise FileNotFoundError(f"{checkpoint}: no {ADAPTER_DIR}/ directory (incomplete checkpoint)")
    with quiet_peft():
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
