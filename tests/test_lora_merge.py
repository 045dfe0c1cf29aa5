"""A preset's LoRA adapter is merged without peft when it is a plain LoRA on linear layers (W += alpha/r B A),
to the weights peft's own merge gives; anything else goes to peft, or names the extra that installs it."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import tiny_llama

from headrank.engine.checkpoint import ADAPTER_DIR, CONFIG_NAME, FORMAT, merge_adapter, quiet_peft


def _checkpoint(tmp_path, use_rslora: bool = False, use_dora: bool = False):
    """A checkpoint folder whose adapter peft saved, with random (non-zero) A and B on q/k/v/o of layers 0-2."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      layers_to_transform=[0, 1, 2], use_rslora=use_rslora, use_dora=use_dora)
    with quiet_peft():
        model = get_peft_model(tiny_llama(), lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    model.save_pretrained(tmp_path / ADAPTER_DIR)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "base_model": "tiny"}))
    return tmp_path


def _peft_merged(checkpoint):
    from peft import PeftModel

    with quiet_peft():
        return PeftModel.from_pretrained(tiny_llama(), checkpoint / ADAPTER_DIR).merge_and_unload()


@pytest.mark.parametrize("use_rslora", [False, True])
def test_a_plain_lora_merges_to_peft_s_weights_without_peft(tmp_path, monkeypatch, use_rslora):
    checkpoint = _checkpoint(tmp_path, use_rslora=use_rslora)
    expected = _peft_merged(checkpoint).state_dict()
    base = tiny_llama().state_dict()
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    merged = merge_adapter(tiny_llama(), checkpoint).state_dict()
    assert set(merged) == set(expected)
    changed = [k for k in merged if not torch.equal(merged[k], base[k])]
    assert len(changed) == 12  # q, k, v, o of three layers, nothing else
    for key in merged:
        torch.testing.assert_close(merged[key], expected[key], rtol=1e-6, atol=1e-6)


def test_an_adapter_beyond_plain_lora_goes_to_peft_or_names_the_extra(tmp_path, monkeypatch):
    checkpoint = _checkpoint(tmp_path, use_dora=True)
    expected = _peft_merged(checkpoint).state_dict()
    merged = merge_adapter(tiny_llama(), checkpoint).state_dict()
    for key in merged:
        torch.testing.assert_close(merged[key], expected[key], rtol=1e-6, atol=1e-6)
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"headrank\[train\]"):
        merge_adapter(tiny_llama(), checkpoint)


@pytest.mark.parametrize("args", [["train", "--heads", "heads.json", "--out", "ckpt"],
                                  ["build-preset", "--model", "smollm2-135m-instruct", "--out", "p"]])
def test_training_without_peft_names_the_extra(args, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from headrank.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "peft", None)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "headrank[train]" in result.output and "Traceback" not in result.output


def test_an_adapter_config_without_a_rank_is_not_merged_by_hand(tmp_path, monkeypatch):
    checkpoint = _checkpoint(tmp_path)
    config_path = checkpoint / ADAPTER_DIR / "adapter_config.json"
    config = json.loads(config_path.read_text())
    del config["r"]
    config_path.write_text(json.dumps(config))
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"not a plain LoRA"):  # never a KeyError from a config we cannot read
        merge_adapter(tiny_llama(), checkpoint)


def test_ranking_with_an_adapter_only_peft_can_merge_names_the_extra_without_a_traceback(tiny_base, tmp_path,
                                                                                         monkeypatch):
    from conftest import make_tiny_preset
    from typer.testing import CliRunner

    from headrank.cli import app
    from headrank.engine.checkpoint import InferenceSettings

    preset = make_tiny_preset(tiny_base, tmp_path / "preset", InferenceSettings())
    config_path = preset / ADAPTER_DIR / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "use_dora": True}))
    (tmp_path / "c.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    monkeypatch.setitem(sys.modules, "peft", None)
    result = CliRunner().invoke(app, ["rerank", str(tmp_path / "c.jsonl"), "-q", "q", "--model", str(preset)])
    assert result.exit_code == 2 and "headrank[train]" in result.output and "Traceback" not in result.output
