"""Ship a preset's head set on its base model, without its adapter, or (``--adapter-from``) with the adapter of a
checkpoint trained for the same heads: the fusion and valve chosen by issue 30's rule on that model's validation
scores (``scripts/fusion_forms.py`` on ``validation_scores.py --on-base`` or ``--preset CHECKPOINT``).

Writes ``"adapter": false`` into the config and removes ``adapter/`` and the training record that described it,
or copies the checkpoint's adapter and training record in; sets the inference settings to the recorded choice,
adds the choice to the head set's selection record, and fills the card's validation table (BM25, the replaced
setting, this one, leave-one-domain-out). Quality rows come from ``scripts/card_quality.py``, latency rows from
``scripts/preset_card_numbers.py``.

    PYTHONPATH=src python scripts/ship_on_base.py --choice results/fusion-forms-qwen-on-base.json \
        --replaced results/robust-choice-qwen.json --preset src/headrank/presets/headrank-qwen2.5-coder-0.5b \
        --card scripts/cards/headrank-qwen2.5-coder-0.5b.json
    PYTHONPATH=src python scripts/ship_on_base.py --choice results/fusion-forms-qwen-qkvo-2dom.json --key rrf \
        --replaced results/fusion-forms-qwen-on-base.json --adapter-from runs/ckpt/qwen-default16-qkvo-2dom \
        --preset src/headrank/presets/headrank-qwen2.5-coder-0.5b --card CARD.json --replaced-label LABEL
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from headrank.engine.checkpoint import ADAPTER_DIR, CONFIG_NAME, HEADSET_NAME, InferenceSettings
from headrank.engine.heads import HeadSet
from headrank.engine.rule import SafetyValve
from headrank.learn.card import validation_rows, write_card

REPLACED = "replaced default: same 16 heads on the adapter, fused (RRF 0.6) + safety valve"


def choice_of(forms: dict, head_set: HeadSet, replaced: dict, key: str = "rrf+zscore") -> dict:
    """fusion_forms.py's record in the shape learn.card.validation_rows reads; ``replaced``: the replaced
    preset's validation nDCG@10 per domain (its own scores: fusion_forms' "shipped_ndcg" is the replaced
    setting on *these* scores, not the replaced preset)."""
    chosen = forms[key]
    if chosen["setting"]["form"] != "rrf":
        raise SystemExit(f"the recorded choice is {chosen['chosen']}; a preset fuses by RRF only")
    if set(replaced) != set(forms["bm25"]):
        raise SystemExit(f"the replaced preset's record covers {sorted(replaced)}, not {sorted(forms['bm25'])}")
    return {"queries": forms["queries"], "bm25": forms["bm25"], "shipped": {"ndcg": replaced},
            "chosen": {"heads": head_set.heads, "deepest": head_set.deepest_layer + 1,
                       "fuse": chosen["setting"]["fuse"],
                       "ndcg": {d: forms["bm25"][d] + g for d, g in chosen["gain"].items()}},
            "lodo": {d: {"gain": g} for d, g in chosen["lodo"].items()}}


def replaced_ndcg(record: dict, key: str = "rrf+zscore") -> dict:
    """The replaced preset's validation nDCG@10 per domain from its record: robust_choice.py's ("chosen") or
    fusion_forms.py's (BM25 plus the gain of the setting it shipped, ``key``)."""
    if "chosen" in record:
        return record["chosen"]["ndcg"]
    return {d: record["bm25"][d] + g for d, g in record[key]["gain"].items()}


def with_adapter(preset: Path, config: dict, head_set: HeadSet, checkpoint: Path) -> None:
    """Copy a trained checkpoint's adapter and training record into the preset; the checkpoint must have been
    trained for this very head set on this base model (an adapter shapes the heads it was trained with)."""
    trained = json.loads((checkpoint / CONFIG_NAME).read_text())
    if HeadSet.load(checkpoint / HEADSET_NAME).heads != head_set.heads:
        raise SystemExit(f"{checkpoint} was trained for other heads than {preset}'s")
    if trained["base_model"] != config["base_model"]:
        raise SystemExit(f"{checkpoint} is on {trained['base_model']}, the preset on {config['base_model']}")
    shutil.rmtree(preset / ADAPTER_DIR, ignore_errors=True)
    (preset / ADAPTER_DIR).mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):  # not peft's generated README
        shutil.copy2(checkpoint / ADAPTER_DIR / name, preset / ADAPTER_DIR / name)
    config.update(adapter=True, train_config=trained["train_config"], history=trained.get("history"))


def settings_of(forms: dict, key: str = "rrf+zscore") -> InferenceSettings:
    setting = forms[key]["setting"]
    valve = setting["valve"] and SafetyValve.from_dict(setting["valve"])
    return InferenceSettings(fuse_first_stage=setting["fuse"], safety_valve=valve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choice", type=Path, required=True, help="fusion_forms.py's record on the base scores")
    parser.add_argument("--replaced", type=Path, required=True,
                        help="the replaced preset's choice record (robust_choice.py: its validation nDCG@10)")
    parser.add_argument("--preset", type=Path, required=True)
    parser.add_argument("--card", type=Path, help="card fields (JSON) to merge: summary, training data, weaknesses")
    parser.add_argument("--replaced-label", default=REPLACED, help="the validation table's label of the replaced one")
    parser.add_argument("--adapter-from", type=Path,
                        help="a checkpoint trained for the preset's heads: its adapter ships (default: none)")
    parser.add_argument("--key", default="rrf+zscore", help="the record's setting to ship (fusion_forms.py key)")
    args = parser.parse_args()
    forms = json.loads(args.choice.read_text())
    head_set = HeadSet.load(args.preset / HEADSET_NAME)
    config = json.loads((args.preset / CONFIG_NAME).read_text())
    replaced = replaced_ndcg(json.loads(args.replaced.read_text()))
    # checked before anything is written
    inference, choice = settings_of(forms, args.key), choice_of(forms, head_set, replaced, args.key)
    for key in ("train_config", "history"):  # they described the adapter that no longer ships
        config.pop(key, None)
    if args.adapter_from:
        with_adapter(args.preset, config, head_set, args.adapter_from)
    else:
        config.update(adapter=False)
        shutil.rmtree(args.preset / ADAPTER_DIR, ignore_errors=True)
    config.update(inference=inference.to_dict())
    (args.preset / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    runs_on = (f"the base model with the adapter of {args.adapter_from.name}" if args.adapter_from
               else "the base model, without an adapter")
    selection = {**(head_set.selection or {}), "runs_on": runs_on,
                 "settings_chosen_by": f"scripts/fusion_forms.py ({args.choice.name}): {forms[args.key]['chosen']}"}
    dataclasses.replace(head_set, selection=selection).save(args.preset / HEADSET_NAME)
    write_card(args.preset, head_set, validation_rows(choice, args.replaced_label), args.card)
    print(f"{args.preset}: {len(head_set.heads)} heads (L* {head_set.deepest_layer}) on {runs_on}, "
          f"{inference.describe()}")


if __name__ == "__main__":
    main()
