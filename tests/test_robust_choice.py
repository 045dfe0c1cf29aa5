"""scripts/robust_choice.py compares the chosen setting with the shipped preset as that preset ranks."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import robust_choice  # noqa: E402

from headrank.rule import SafetyValve  # noqa: E402


def write(folder: Path, inference: dict, weights=None) -> Path:
    folder.mkdir()
    (folder / "headset.json").write_text(json.dumps({"heads": [[1, 2], [0, 1]], "weights": weights}))
    (folder / "headrank_config.json").write_text(json.dumps({"inference": inference}))
    return folder


def test_shipped_config_keeps_the_presets_own_fusion_and_valve(tmp_path):
    heads = [(0, 0), (0, 1), (1, 2)]
    valve = {"signal": "top_z", "threshold": 0.5, "weight": 1.0}
    config = robust_choice.shipped_config(write(tmp_path / "a", {"fuse_first_stage": 0.8, "safety_valve": valve},
                                                [2.0, 0.5]), heads)
    assert config.idx == [2, 1] and config.weights.tolist() == [2.0, 0.5]
    assert config.fuse == 0.8 and config.valve == SafetyValve("top_z", 0.5, 1.0)
    plain = robust_choice.shipped_config(write(tmp_path / "b", {"fuse_first_stage": None}), heads)
    assert plain.fuse == 0.0 and plain.valve is None and plain.weights.tolist() == [1.0, 1.0]


def test_worst_rule_picks_the_largest_worst_domain_gain():
    safe, bold = [0.004, 0.003, 0.005], [0.03, 0.02, -0.001]
    floor = robust_choice.rule_floor("worst", 0.0)
    assert robust_choice.objective(safe, floor) > robust_choice.objective(bold, floor)
    mean_rule = robust_choice.rule_floor("floor-mean", -0.005)  # both meet this floor: the larger mean wins
    assert robust_choice.objective(bold, mean_rule) > robust_choice.objective(safe, mean_rule)


def test_write_preset_keeps_the_adapters_split_one_level_down(tmp_path):
    """Re-choosing on top of a re-chosen preset once nested the split twice, and the DL21 split was not found."""
    from headrank.heads import HeadSet

    base = tmp_path / "base"
    base.mkdir()
    split = {"val_queries": ["q1"], "train_queries": ["q2"]}
    HeadSet(heads=((0, 0),), selection={"recipe": "earlier", "adapter_selection": split}).save(base / "headset.json")
    (base / "headrank_config.json").write_text(json.dumps({"inference": {}}))
    chosen = {"heads": [[1, 2]], "weights": [2.0], "label": "x", "fuse": 0.8, "valve": None}
    robust_choice.write_preset(chosen, tmp_path / "out", base)
    written = HeadSet.load(tmp_path / "out" / "headset.json")
    assert written.selection["adapter_selection"] == split and written.split_queries("val") == ["q1"]
    assert json.loads((tmp_path / "out" / "headrank_config.json").read_text())["inference"]["fuse_first_stage"] == 0.8


def test_a_floor_with_the_worst_rule_is_refused_before_any_work(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "robust_choice.py"
    done = subprocess.run([sys.executable, str(script), "--pool", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                           "--rule", "worst", "--floor", "0.01"], capture_output=True, text=True)
    assert done.returncode == 2 and "--floor applies to --rule floor-mean only" in done.stderr
    assert "Traceback" not in done.stderr
