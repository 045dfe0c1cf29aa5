"""scripts/domain_table.py: the per-domain table's paired tests and zero-label column (issue 30)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import domain_table  # noqa: E402


def test_paired_p_refuses_runs_over_different_queries():
    with pytest.raises(ValueError, match="different queries"):
        domain_table.paired_p({"1": 0.5, "2": 0.4}, {"1": 0.3})


def test_paired_p_tells_a_consistent_gain_from_noise():
    mine = {str(q): 0.6 for q in range(30)}
    better = domain_table.paired_p(mine, {str(q): 0.4 for q in range(30)})
    mixed = domain_table.paired_p(mine, {str(q): 0.4 if q % 2 else 0.8 for q in range(30)})
    assert better < 0.01 < mixed


def test_zero_label_cell_reads_the_second_design(tmp_path, monkeypatch):
    monkeypatch.setattr(domain_table, "RESULTS", tmp_path)
    assert domain_table.zero_label_cell("dl21-val") == "no corpus here"
    assert domain_table.zero_label_cell("cisi") == "not run"
    (tmp_path / "adapted2-cisi-qwen.json").write_text(
        json.dumps({"ndcg": 0.37681, "p_vs_against": 1.0, "adapt": {"kept_preset": True}}))
    assert domain_table.zero_label_cell("cisi") == "0.3768 (1.00, kept)"


def test_table_shows_new_minus_previous_on_validation_domains():
    robust = json.loads((domain_table.RESULTS / "robust-choice-qwen.json").read_text())
    row = next(line for line in domain_table.table().splitlines() if line.startswith("| CISI |"))
    gain = robust["chosen"]["ndcg"]["cisi"] - robust["shipped"]["ndcg"]["cisi"]
    assert f"{gain:+.4f} ({robust['p']['cisi']['vs_shipped']:.2f})" in row


def test_macro_p_weights_each_set_equally():
    # a large set that loses 0.06 per query and a small set that gains 0.6: pooled over queries the two cancel
    # (p 1), but the mean of the two sets' means moves by +0.27
    mine = {"big": {str(q): 0.44 for q in range(200)}, "small": {str(q): 0.9 for q in range(20)}}
    other = {"big": {str(q): 0.50 for q in range(200)}, "small": {str(q): 0.3 for q in range(20)}}
    from headrank.eval.compare import sign_flip_p_value

    pooled = [mine[s][q] - other[s][q] for s in mine for q in mine[s]]
    assert sign_flip_p_value(pooled, 2000, 0) > 0.5
    assert domain_table.macro_p(mine, other) < 0.01
    with pytest.raises(ValueError, match="different queries"):
        domain_table.macro_p(mine, {"big": other["big"], "small": {"0": 0.3}})
