"""scripts/ship_on_base.py: a preset's heads shipped on its base model, with the recorded fusion and valve."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import ship_on_base  # noqa: E402
from conftest import make_tiny_preset  # noqa: E402

from headrank.engine.checkpoint import InferenceSettings  # noqa: E402
from headrank.engine.heads import HeadSet  # noqa: E402
from headrank.engine.presets import load_preset  # noqa: E402
from headrank.engine.ranker import HeadRanker  # noqa: E402
from headrank.engine.rule import SafetyValve  # noqa: E402

DOMAINS = ("dl21-val", "nfcorpus-dev", "cranfield", "cisi", "npl")


def forms_record(form: str = "rrf") -> dict:
    """The shape of fusion_forms.py's record, with made-up numbers (what is tested is where they go)."""
    setting = {"form": form, "fuse": 0.6, "valve": {"signal": "top_z", "threshold": 0.6, "weight": 1.0}}
    return {"queries": {d: [10, 12] for d in DOMAINS}, "bm25": {d: 0.40 for d in DOMAINS},
            "shipped_ndcg": {d: 0.41 for d in DOMAINS},
            "rrf+zscore": {"chosen": f"{form} w 0.6, top_z < 0.6 -> first-stage weight 1",
                           "gain": {d: 0.01 * (i + 1) for i, d in enumerate(DOMAINS)},
                           "lodo": {d: 0.005 for d in DOMAINS}, "setting": setting}}


def test_ship_on_base_drops_the_adapter_and_records_the_choice(tiny_base, tmp_path, monkeypatch):
    preset = make_tiny_preset(tiny_base, tmp_path / "p", InferenceSettings(fuse_first_stage=0.5))
    assert (preset / "adapter").is_dir()
    choice, replaced = tmp_path / "forms.json", tmp_path / "replaced.json"
    choice.write_text(json.dumps(forms_record()))
    replaced.write_text(json.dumps({"chosen": {"ndcg": {d: 0.42 for d in DOMAINS}}}))
    monkeypatch.setattr(sys, "argv", ["ship_on_base.py", "--choice", str(choice), "--replaced", str(replaced),
                                      "--preset", str(preset)])
    ship_on_base.main()
    config = json.loads((preset / "headrank_config.json").read_text())
    assert config["adapter"] is False and "train_config" not in config and not (preset / "adapter").exists()
    loaded = load_preset(preset)
    assert loaded.inference == InferenceSettings(fuse_first_stage=0.6,
                                                 safety_valve=SafetyValve("top_z", threshold=0.6, weight=1.0))
    rows = {r["setting"]: r["ndcg@10"] for r in loaded.card["validation"]}
    mine = next(v for k, v in rows.items() if k.startswith("this preset: 2 heads, 3 layers"))
    assert mine["NPL (12)"] == pytest.approx(0.45) and mine["mean of five"] == pytest.approx(0.43)
    assert rows["leave-one-domain-out estimate (chosen without the domain)"]["CISI (12)"] == pytest.approx(0.405)
    # the replaced row is the replaced preset's own record, not the replaced setting on the new scores (0.41)
    assert rows[ship_on_base.REPLACED]["NPL (12)"] == pytest.approx(0.42)
    assert "runs_on" in HeadSet.load(preset / "headset.json").selection
    card = (preset / "README.md").read_text()
    assert "Adapter: none" in card and "top_z < 0.6" in card
    ranker = HeadRanker.from_pretrained(str(preset), device="cpu")
    assert len(ranker.rank("query about solar", ["solar power", "pasta", "wind"])) == 3
    choice.write_text(json.dumps(forms_record("zscore")))  # a preset cannot run score fusion: refused, untouched
    before = {p.name: p.read_bytes() for p in preset.iterdir() if p.is_file()}
    with pytest.raises(SystemExit, match="RRF only"):
        ship_on_base.main()
    assert {p.name: p.read_bytes() for p in preset.iterdir() if p.is_file()} == before


def test_ship_with_a_checkpoints_adapter(tiny_base, tmp_path, monkeypatch):
    """--adapter-from: the adapter trained for the same heads ships, with its training record; the replaced row
    can come from fusion_forms.py's record of the replaced (adapter-free) preset."""
    preset = make_tiny_preset(tiny_base, tmp_path / "p", InferenceSettings(fuse_first_stage=0.5))
    checkpoint = tmp_path / "p-checkpoint"  # make_tiny_preset's training output, same heads
    choice, replaced = tmp_path / "forms.json", tmp_path / "replaced.json"
    record = forms_record()
    record["rrf"] = record.pop("rrf+zscore")
    choice.write_text(json.dumps(record))
    replaced.write_text(json.dumps(forms_record()))  # the replaced preset's own fusion_forms record
    argv = ["ship_on_base.py", "--choice", str(choice), "--replaced", str(replaced), "--preset", str(preset),
            "--key", "rrf"]
    monkeypatch.setattr(sys, "argv", argv)
    ship_on_base.main()  # first on the base model
    assert not (preset / "adapter").exists()
    monkeypatch.setattr(sys, "argv", argv + ["--adapter-from", str(checkpoint)])
    ship_on_base.main()
    config = json.loads((preset / "headrank_config.json").read_text())
    assert config["adapter"] is True and config["train_config"] == {} and config["history"]
    assert sorted(p.name for p in (preset / "adapter").iterdir()) == ["adapter_config.json",
                                                                     "adapter_model.safetensors"]
    assert "p-checkpoint" in HeadSet.load(preset / "headset.json").selection["runs_on"]
    rows = {r["setting"]: r["ndcg@10"] for r in load_preset(preset).card["validation"]}
    assert rows[ship_on_base.REPLACED]["NPL (12)"] == pytest.approx(0.45)  # 0.40 + the replaced rrf+zscore gain
    ranker = HeadRanker.from_pretrained(str(preset), device="cpu")
    assert len(ranker.rank("query about solar", ["solar power", "pasta", "wind"])) == 3
    other = HeadSet.load(checkpoint / "headset.json")
    other.__class__(**{**other.__dict__, "heads": ((1, 1),)}).save(checkpoint / "headset.json")
    before = {p.name: p.read_bytes() for p in preset.iterdir() if p.is_file()}
    with pytest.raises(SystemExit, match="other heads"):  # an adapter trained for other heads is refused
        ship_on_base.main()
    assert {p.name: p.read_bytes() for p in preset.iterdir() if p.is_file()} == before
