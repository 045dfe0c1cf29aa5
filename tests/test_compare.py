"""Paired comparison of two runs: wins/losses, the sign-flip test, and the `compare` command."""

import json

import pytest
from typer.testing import CliRunner

from headrank.cli import app
from headrank.eval.compare import compare_runs, load_run_metrics, sign_flip_p_value


def _run(path, benchmark, values):
    path.mkdir(parents=True)
    per_query = {f"q{i}": {"nDCG@10": v} for i, v in enumerate(values)}
    (path / "metrics.json").write_text(json.dumps({"benchmark": benchmark, "per_query": per_query, "metrics": {}}))
    return path


def test_sign_flip_test():
    assert sign_flip_p_value([0.0] * 10) == 1.0  # no difference: every flip is as extreme
    assert sign_flip_p_value([0.1] * 30, flips=2000) < 0.001  # always better: only the all-positive flip ties
    mixed = [0.2, -0.2, 0.1, -0.1, 0.05, -0.05]
    assert sign_flip_p_value(mixed, flips=2000) > 0.9
    assert sign_flip_p_value(mixed, seed=1) == sign_flip_p_value(mixed, seed=1)  # seeded
    with pytest.raises(ValueError):
        sign_flip_p_value([])


def test_compare_runs_per_benchmark_and_pooled(tmp_path):
    a = [load_run_metrics(_run(tmp_path / "a1", "dl19", [0.5, 0.7, 0.2])), load_run_metrics(_run(tmp_path / "a2", "dl20", [0.4]))]
    b = [load_run_metrics(_run(tmp_path / "b1", "dl19", [0.5, 0.6, 0.3])), load_run_metrics(_run(tmp_path / "b2", "dl20", [0.1]))]
    rows = compare_runs(a, b, flips=500)
    assert [r.label for r in rows] == ["dl19", "dl20", "all"]
    assert (rows[0].wins, rows[0].losses, rows[0].ties) == (1, 1, 1)
    assert rows[0].mean_diff == pytest.approx(0.0) and rows[1].mean_diff == pytest.approx(0.3)
    assert rows[2].queries == 4 and rows[2].mean_diff == pytest.approx(0.3 / 4)
    with pytest.raises(ValueError, match="different benchmarks"):
        compare_runs(a, list(reversed(b)))
    with pytest.raises(ValueError, match="different queries"):
        compare_runs(a[:1], [load_run_metrics(_run(tmp_path / "b3", "dl19", [0.5, 0.6]))])
    with pytest.raises(ValueError, match="measure 'MAP'"):
        compare_runs(a, b, measure="MAP")


def test_compare_command(tmp_path):
    a = _run(tmp_path / "a", "dl19", [0.9] * 30)
    b = _run(tmp_path / "b", "dl19", [0.1] * 30)
    # 30 wins of 30: only the all-same-sign flips (chance 2^-29) reach the observed mean, so p = 1 / (flips + 1)
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--flips", "100"])
    assert result.exit_code == 0, result.output
    assert "+0.8000" in result.output and "0.010" in result.output
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--flips", "1000"])
    assert "<0.001" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    for args in ([str(a), str(tmp_path / "missing")], [str(a), str(tmp_path / "bad")]):
        result = CliRunner().invoke(app, ["compare", *args])
        assert result.exit_code == 2 and "error" in result.output
