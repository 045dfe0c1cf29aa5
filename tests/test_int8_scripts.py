"""The int8 quality pairing (scripts/int8_quality.py), its tables (scripts/int8_tables.py) and the CPU benchmark's
helpers (benchmarks/cpu_int8.py), on tiny inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_llama

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import cpu_int8  # noqa: E402
import int8_quality  # noqa: E402
import int8_tables  # noqa: E402


def test_a_scores_file_of_another_run_is_refused_and_a_torn_line_dropped(tmp_path):
    out = tmp_path / "scores.jsonl"
    row = {"set": "cisi", "qid": "1", "docids": ["a", "b"], "float32": [0.1, 0.2], "int8": [0.1, 0.3], "key": "k"}
    out.write_text(json.dumps(row) + "\n" + '{"set": "cisi", "qid": "2", "doc')
    assert list(int8_quality.finished(out, "k")) == [("cisi", "1")]
    assert out.read_text().endswith("}\n")  # the torn tail is gone before a resumed run appends
    with pytest.raises(SystemExit, match="another run"):
        int8_quality.finished(out, "other")


def test_the_run_key_follows_the_preset_files(tmp_path):
    preset = tmp_path / "p"
    preset.mkdir()
    (preset / "headset.json").write_text('{"heads": [[1, 2]]}')
    key = int8_quality.run_key(str(preset))
    (preset / "headset.json").write_text('{"heads": [[1, 3]]}')
    assert int8_quality.run_key(str(preset)) != key


def test_ndcg_per_query_applies_the_rule_to_each_mode():
    bench = SimpleNamespace(qrels={"q1": {"a": 1}, "q2": {"c": 1}})
    rows = [{"qid": "q1", "docids": ["a", "b"], "float32": [0.0, 1.0], "int8": [1.0, 0.0]},
            {"qid": "q2", "docids": ["c", "d"], "float32": [1.0, 0.0], "int8": [1.0, 0.0]}]
    plain = int8_quality.ndcg_per_query(rows, "float32", bench, None, None)
    int8 = int8_quality.ndcg_per_query(rows, "int8", bench, None, None)
    assert int8["q1"] == 1.0 and plain["q1"] < 1.0 and plain["q2"] == int8["q2"] == 1.0
    # fused with the first stage at full weight, both modes rank in input order: equal
    assert int8_quality.ndcg_per_query(rows, "float32", bench, 1.0, None) == \
        int8_quality.ndcg_per_query(rows, "int8", bench, 1.0, None)


def _quality(diff: float, p: float) -> dict:
    row = {"queries": 10, "float32": 0.5, "int8": 0.5 + diff, "diff": diff, "p_value": p, "queries_changed": 3,
           "valve_fired": {"float32": 1, "int8": 2}}
    return {"setting": "s", "quantize": {"format": "f", "parts": ["mlp"]}, "torch": "t",
            "sets": {"dl19": row, "cisi": {**row, "diff": 0.001, "p_value": 0.9}}}


@pytest.mark.parametrize("diff, p, passes", [(0.002, 0.4, True), (-0.004, 0.4, False), (0.001, 0.01, False)])
def test_the_gate_and_the_tables(tmp_path, monkeypatch, diff, p, passes):
    quality = tmp_path / "q.json"
    quality.write_text(json.dumps(_quality(diff, p)))
    monkeypatch.setattr(int8_tables, "QUALITY", quality)
    assert int8_tables.gate(_quality(diff, p)["sets"])[0] is passes
    table = int8_tables.quality_table()
    assert "| DL19 (reporting) | 10 |" in table and "| CISI (validation) |" in table
    assert "is not decided yet: 2 of 9 sets" in table
    monkeypatch.setattr(int8_tables, "SETS", 2)
    table = int8_tables.quality_table()
    assert ("passes on every set" in table) is passes and ("fails on DL19" in table) is not passes


def test_kernel_comparison_names_every_form_and_its_error():
    rows = cpu_int8.kernel_comparison(tokens=8, reps=1)
    assert rows["float32 nn.Linear"]["time_ratio"] == 1.0 and rows["float32 nn.Linear"]["relative_error"] == 0.0
    ours = rows["headrank Int8Linear (per-token activations, torch._int_mm)"]
    assert 0 < ours["relative_error"] < 0.05
    assert any(name.startswith("torch.ao") for name in rows)


def test_gemm_peak_and_operation_counts():
    peak = cpu_int8.gemm_peak([(16, 32, 24)], reps=1)
    assert peak["float32_gflops"] > 0 and peak["int8_gops"] > 0
    config = SimpleNamespace(hidden_size=4, intermediate_size=8)
    assert cpu_int8.mlp_flops(config, layers=2, tokens=3) == 2 * 3 * 2 * 3 * 4 * 8


def test_plain_forward_runs_the_first_layers_and_restores_the_model():
    model = tiny_llama(layers=4)
    seen = []
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda *a, i=i: seen.append(i))
    cpu_int8.plain_forward(SimpleNamespace(model=model), [1, 2, 3], depth=2)
    assert seen == [0, 1] and len(model.model.layers) == 4
    with torch.inference_mode():
        model.model(torch.tensor([[1, 2]]))
    assert seen[2:] == [0, 1, 2, 3]


def test_fidelity_of_identical_and_reordered_scores():
    import int8_parts

    same = int8_parts.fidelity([0.1, 0.5, 0.3], [0.1, 0.5, 0.3])
    assert same == {"relative_error": 0.0, "spearman": pytest.approx(1.0), "top10_overlap": 3}
    flipped = int8_parts.fidelity([0.1, 0.5, 0.3], [0.5, 0.1, 0.3])
    assert flipped["spearman"] < 0 and flipped["relative_error"] > 0


def _speed() -> dict:
    return {"command": "PYTHONPATH=src python benchmarks/cpu_int8.py --out x.json", "ratio_to_float32": {"int8": 0.45}}


@pytest.mark.parametrize("diff, ships", [(0.001, True), (0.01, False)])
def test_the_card_section_and_the_preset_setting_follow_the_gate(tmp_path, monkeypatch, diff, ships):
    from headrank.engine.presets import load_preset

    for name, data in (("q.json", _quality(diff, 0.5)), ("s.json", _speed())):
        (tmp_path / name).write_text(json.dumps(data))
    monkeypatch.setattr(int8_tables, "QUALITY", tmp_path / "q.json")
    monkeypatch.setattr(int8_tables, "SPEED", tmp_path / "s.json")
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "headrank_config.json").write_text(json.dumps({"format": "headrank.checkpoint/1", "base_model": "m",
                                                             "quantize": "int8", "card": {"summary": "s"}}))
    monkeypatch.setattr(sys, "argv", ["int8_tables.py", "--card", str(preset)])
    with pytest.raises(SystemExit, match="fewer than 9 sets"):  # a partial run decides nothing
        int8_tables.main()
    monkeypatch.setattr(int8_tables, "SETS", 2)
    int8_tables.main()
    card = (preset / "README.md").read_text()
    assert "## int8 on CPU (`--quantize int8`)" in card and "0.45x the float32 time" in card
    assert "| DL19 | 0.5000 |" in card and "| CISI (validation) |" in card
    assert load_preset(preset).quantize == ("int8" if ships else None)
    assert ("It is this preset's CPU setting" in card) is ships


def test_the_default_cards_int8_section_is_the_recorded_results():
    """The shipped card's int8 numbers and its CPU setting come from results/, not from a hand edit."""
    from headrank.engine.presets import DEFAULT_PRESET, load_preset

    preset = load_preset(DEFAULT_PRESET)
    entry = int8_tables.card_entry()
    assert preset.card["int8"] == entry
    assert preset.quantize == ("int8" if entry["default"] else None)
