"""headrank bench: every method measured in its own process on a tiny model (behaviour, not speed)."""

import pytest
from conftest import tiny_llama

from headrank.eval.bench import BenchRow, markdown, measure, passage_budget, prefill_flops


def test_passage_budget_fits_the_context():
    assert passage_budget(20, 8192) == 100
    assert 100 * (passage_budget(100, 8192) + 6) + 400 <= 8192
    assert passage_budget(10_000, 2048) == 8


def test_prefill_flops_grows_with_depth_and_tokens():
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
    assert prefill_flops(config, 2, 100) == pytest.approx(2 * prefill_flops(config, 1, 100))
    assert prefill_flops(config, 1, 200) > 2 * prefill_flops(config, 1, 100)


def test_measure_every_method_on_a_tiny_model(tmp_path, llama_tokenizer):
    path = tmp_path / "tiny"
    tiny_llama().save_pretrained(path)
    llama_tokenizer.save_pretrained(path)
    lists = [("first query", ["alpha", "beta gamma", "delta"]), ("second", ["x y", "z", "w v u"])]
    rows = [measure(m, str(path), [[1, 0], [2, 3]], lists, budget=8, device="cpu")
            for m in ("headrank", "icr", "generative", "pointwise")]  # "headrank": an alias of "heads"
    assert [r.method for r in rows] == ["heads", "icr", "generative", "pointwise"]
    assert all(r.n == 3 and r.latency_s > 0 and r.tokens > 0 for r in rows)
    assert rows[0].prefill_gflop < rows[1].prefill_gflop  # truncated at layer 2 of 4
    assert rows[2].prefill_gflop is None
    table = markdown(rows, "cmd", "note")
    assert "| 3 | heads | 8 |" in table and "1.00x" in table and "Command: `cmd`" in table


def test_markdown_without_headrank_row():
    row = BenchRow("icr", 5, 10, 100, 0.5, 10.0, 1.0, 2.0)
    assert "n/a" in markdown([row], "c", "n")


def test_peak_memory_counts_work_after_loading_only():
    from headrank.eval.bench import reset_peak_rss, rss_mib

    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs on this system")
    import mmap

    base = rss_mib()
    # A fresh anonymous mapping, written, so every page becomes resident: a bytes object could reuse heap memory
    # that is already resident (it did in the full suite), which raises no peak.
    block = mmap.mmap(-1, 64 * 2**20)
    for _ in range(64):
        block.write(b"\x01" * 2**20)
    block.close()
    peak = rss_mib("VmHWM") - base
    assert 60 <= peak < 200
    reset_peak_rss()
    assert rss_mib("VmHWM") - rss_mib() < 60  # the counter starts again from the current size


def test_alternate_and_paths_summary_time_two_paths_in_turn():
    """The capture benchmarks' helpers (benchmarks/one_pass_bench.py, batch_layout_bench.py): each path's median
    seconds per list, timed in turn, and the one-line ratio."""
    from headrank.eval.bench import alternate, paths_summary

    calls: list[str] = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, per=2)
    assert calls == ["a", "b"] * 3 and set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    rows = [{"new": 1.0, "old": 2.0, "max_abs_diff": 1e-7}, {"new": 3.0, "old": 4.0, "max_abs_diff": 3e-7}]
    line = paths_summary(rows, "m", "new", "old", ("one pass", "two-step"))
    assert "one pass 2.000 s per list" in line and "two-step 3.000 s" in line and "ratio 0.667" in line
    assert "3.0e-07" in line
