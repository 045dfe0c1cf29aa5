"""Evaluation harness: metrics against hand computation, middle-zone statistic, resume, BM25 numbers."""

import json
import math

import pytest
from conftest import data_path

from headrank.data.benchmarks import Benchmark, load_benchmark
from headrank.data.formats import Candidate
from headrank.eval.evaluate import (
    EvalSettings,
    QueryRecord,
    compute_metrics,
    homogenization,
    load_progress,
    markdown_table,
    middle_zone,
    middle_zone_selectivity,
    rerank_benchmark,
    rerank_both_orders,
    summarize,
)


def test_ndcg_and_mrr_match_hand_computation():
    qrels = {"q": {"d1": 3, "d2": 0, "d3": 2, "d4": 1}}
    # ranking d2, d1, d5 (unjudged), d3, d4: scores in first-stage order d1..d5
    record = QueryRecord("q", ["d1", "d2", "d3", "d4", "d5"], [4.0, 5.0, 2.0, 1.0, 3.0], 0.0)
    aggregate, per_query = compute_metrics([record], qrels, relevant_grade=2, depth=5)
    dcg = 3 / math.log2(3) + 2 / math.log2(5) + 1 / math.log2(6)
    idcg = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert aggregate["nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-6)
    assert aggregate["RR(rel=2)@10"] == pytest.approx(0.5)
    assert aggregate["R(rel=2)@5"] == pytest.approx(1.0)
    assert per_query["q"]["nDCG@10"] == aggregate["nDCG@10"]


def test_ties_are_broken_by_first_stage_position_not_docid():
    qrels = {"q": {"z": 1}}
    record = QueryRecord("q", ["z", "a"], [1.0, 1.0], 0.0)  # tie: z came first in the first stage
    aggregate, _ = compute_metrics([record], qrels, relevant_grade=1, depth=2)
    assert aggregate["nDCG@10"] == pytest.approx(1.0)


def test_middle_zone_positions():
    assert list(middle_zone(20)) == list(range(5, 15))  # 1-based 6..15
    assert list(middle_zone(8)) == [2, 3, 4, 5]


def test_middle_zone_selectivity_on_constructed_list():
    n = 20
    docids = [f"d{i}" for i in range(n)]
    qrels = {"q": {"d6": 2, "d7": 3, "d10": 2, "d12": 1, "d0": 3}}  # d12 grade 1 is not relevant on DL
    # reranker: d7 and d10 to the top quartile (5 slots), with d8, d9 and d0; d6 stays low
    top = ["d7", "d10", "d8", "d9", "d0"]
    scores = [100.0 - top.index(d) if d in top else -float(i) for i, d in enumerate(docids)]
    stats = middle_zone_selectivity([QueryRecord("q", docids, scores, 0.0)], qrels, relevant_grade=2)
    # middle zone d5..d14: relevant d6, d7, d10 (2 of 3 in top quartile); non-relevant 7 (d8, d9 in top)
    assert stats["relevant_middle"] == 3 and stats["nonrelevant_middle"] == 7
    assert stats["relevant_top_quartile_pct"] == pytest.approx(200 / 3)
    assert stats["nonrelevant_top_quartile_pct"] == pytest.approx(200 / 7)
    assert stats["gap_pp"] == pytest.approx(200 / 3 - 200 / 7)


def test_homogenization_ratio():
    flat_middle = [10, 9, 8, 7, 6] + [5.0] * 10 + [4, 3, 2, 1, 0]
    spread = list(range(20, 0, -1))
    assert homogenization([QueryRecord("q", [str(i) for i in range(20)], flat_middle, 0)])["middle_to_ends_std_ratio"] == 0
    assert homogenization([QueryRecord("q", [str(i) for i in range(20)], spread, 0)])["middle_to_ends_std_ratio"] > 0.3


def _toy_benchmark():
    cands = {f"q{i}": [Candidate(f"d{i}-{j}", f"text {j}") for j in range(6)] for i in range(5)}
    qrels = {f"q{i}": {f"d{i}-{(i + 1) % 6}": 2, f"d{i}-0": 1} for i in range(5)}
    return Benchmark("toy", {q: f"query {q}" for q in cands}, cands, qrels, relevant_grade=1)


def test_resume_after_interruption(tmp_path):
    bench = _toy_benchmark()
    settings = EvalSettings(method="toy", depth=6)
    calls = []

    def score(query, passages):
        calls.append(query)
        return [float(len(p) * (i % 3)) for i, p in enumerate(passages)]

    def interrupted(query, passages):
        if len(calls) == 3:
            raise KeyboardInterrupt
        return score(query, passages)

    with pytest.raises(KeyboardInterrupt):
        rerank_benchmark(bench, interrupted, settings, tmp_path / "run")
    assert len(load_progress(tmp_path / "run" / "progress.jsonl")) == 3
    # a torn last line (killed mid-write) is ignored
    with (tmp_path / "run" / "progress.jsonl").open("a") as f:
        f.write('{"qid": "q3", "docids": [')
    calls.clear()
    ticks = []
    resumed = rerank_benchmark(bench, score, settings, tmp_path / "run",
                               on_query=lambda qid, was_resumed: ticks.append((qid, was_resumed)))
    assert calls == ["query q3", "query q4"]  # only the unfinished queries ran
    # every query is reported, those read back as such (a progress bar's ETA must not count them as speed)
    assert ticks == [("q0", True), ("q1", True), ("q2", True), ("q3", False), ("q4", False)]
    assert len(load_progress(tmp_path / "run" / "progress.jsonl")) == 5  # q3 not glued to the torn line
    fresh = rerank_benchmark(bench, score, settings, tmp_path / "fresh")
    first = summarize(bench, resumed, settings, tmp_path / "run", plot=False)
    second = summarize(bench, fresh, settings, tmp_path / "fresh", plot=False)
    assert first.metrics == second.metrics and first.selectivity == second.selectivity
    with pytest.raises(ValueError, match="other settings"):
        rerank_benchmark(bench, score, EvalSettings(method="toy", depth=3), tmp_path / "run")


def test_reversed_order_feeds_reversed_and_maps_back(tmp_path):
    bench = _toy_benchmark()
    seen = []

    def score(query, passages):
        seen.append(list(passages))
        return [float(i) for i in range(len(passages))]  # prefers the last passage fed

    records = rerank_benchmark(bench, score, EvalSettings(method="toy", depth=6, order="reversed"), tmp_path)
    assert seen[0][0] == "text 5"
    assert records[0].ranking()[0][0] == "d0-0"  # last fed = first-stage top


def test_summary_outputs(tmp_path):
    bench = _toy_benchmark()
    settings = EvalSettings(method="toy", depth=6)
    records = rerank_benchmark(bench, lambda q, p: [1.0 / (i + 1) for i in range(len(p))], settings, tmp_path)
    result = summarize(bench, records, settings, tmp_path)
    assert (tmp_path / "run.trec").read_text().splitlines()[0].split()[:4] == ["q0", "Q0", "d0-0", "1"]
    assert json.loads((tmp_path / "metrics.json").read_text())["queries"] == 5
    assert (tmp_path / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"
    assert "| toy | toy | 6 |" in markdown_table([result])


def test_without_the_plots_extra_a_run_goes_on_and_says_so(tmp_path, monkeypatch, caplog):
    """matplotlib is the optional 'plots' extra: evaluate writes everything but the figure and names the extra;
    select-heads skips its heatmap; explain --png refuses before any model loads."""
    import sys

    from typer.testing import CliRunner

    from headrank.cli import app
    from headrank.learn.selection import plot_heatmaps

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    bench = _toy_benchmark()
    settings = EvalSettings(method="toy", depth=6)
    records = rerank_benchmark(bench, lambda q, p: [1.0 / (i + 1) for i in range(len(p))], settings, tmp_path)
    with caplog.at_level("WARNING"):
        summarize(bench, records, settings, tmp_path)
        plot_heatmaps(*[None] * 7, tmp_path / "heat.png")
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / "diagnostics.png").exists()
    assert not (tmp_path / "heat.png").exists()
    assert caplog.text.count("headrank[plots]") == 2
    passages = tmp_path / "p.txt"
    passages.write_text("one passage\n")
    result = CliRunner().invoke(app, ["explain", str(passages), "-q", "x", "--png", str(tmp_path / "f.png"),
                                      "--model", "./no/such/model"])
    assert result.exit_code == 2 and "headrank[plots]" in result.output and "Traceback" not in result.output


def test_window_setting_keys_its_own_run_folder_and_leaves_older_keys_alone(tmp_path):
    plain = EvalSettings(method="heads", depth=50)
    assert "window" not in plain.to_dict()  # run folders made before the setting existed keep their key
    windowed = EvalSettings(method="heads", depth=50, window=20)
    assert windowed.to_dict()["window"] == 20 and windowed.key != plain.key
    assert windowed.slug.startswith("heads-k50-w20-first-stage-")
    bench, toy = _toy_benchmark(), EvalSettings(method="toy", depth=6, window=3)
    records = rerank_benchmark(bench, lambda q, p: [1.0 / (i + 1) for i in range(len(p))], toy, tmp_path)
    result = summarize(bench, records, toy, tmp_path, plot=False)
    assert "| toy | toy | 6 (windows of 3) |" in markdown_table([result])


@pytest.mark.parametrize("bad", [{"depth": 0}, {"order": "random"}, {"window": 1}])
def test_bad_settings(bad):
    with pytest.raises(ValueError):
        EvalSettings(method="x", **bad)


@pytest.mark.parametrize("name, expected", [("dl19", 0.5058), ("dl20", 0.4796)])
def test_bm25_passthrough_equals_pyserini(name, expected, tmp_path):
    data_path("msmarco-passage", name)
    bench = load_benchmark(name, data_root=data_path())
    records = [QueryRecord(q, [c.docid for c in bench.candidates[q][:20]], [20.0 - i for i in range(20)], 0.0)
               for q in bench.queries]
    aggregate, _ = compute_metrics(records, bench.qrels, bench.relevant_grade, 20)
    assert aggregate["nDCG@10"] == pytest.approx(expected, abs=5e-5)


def test_bm25_first_stage_on_nfcorpus_test(tmp_path):
    bench = load_benchmark("nfcorpus", data_root=data_path(), cache_dir=tmp_path)
    assert len(bench.queries) == 323 and len(list(tmp_path.glob("nfcorpus/bm25-*.trec"))) == 1
    records = [QueryRecord(q, [c.docid for c in bench.candidates[q]], [100.0 - i for i in range(len(bench.candidates[q]))], 0)
               for q in bench.queries]
    aggregate, _ = compute_metrics(records, bench.qrels, 1, 100)
    assert aggregate["nDCG@10"] == pytest.approx(0.32, abs=0.02)
    again = load_benchmark("nfcorpus", data_root=data_path(), cache_dir=tmp_path)  # from the cache
    assert again.candidates == bench.candidates


def test_noveleval_lists_are_complete():
    bench = load_benchmark("noveleval", data_root=data_path())
    assert len(bench.queries) == 21 and all(len(c) == 20 for c in bench.candidates.values())


def test_unknown_benchmark_and_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="unknown benchmark"):
        load_benchmark("msmarco-v9", data_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="data-root"):
        load_benchmark("dl19", data_root=tmp_path)


def test_training_set_guard():
    from headrank.data.benchmarks import check_training_set

    for name, split in (("dl21", "train"), ("nfcorpus", "train"), ("nfcorpus", "dev"), ("/my/beir/folder", "test")):
        check_training_set(name, split)
    for name, split in (("dl19", "train"), ("dl20", "test"), ("noveleval", "train"), ("nfcorpus", "test")):
        with pytest.raises(ValueError, match="reporting set"):
            check_training_set(name, split)


def test_reported_latency_replaces_wall_time(tmp_path):
    bench = _toy_benchmark()
    score = lambda q, p: ([1.0] * len(p), {"latency_s": 123.0, "shared_capture": True})  # noqa: E731
    records = rerank_benchmark(bench, score, EvalSettings(method="toy", depth=3, capture="shared"), tmp_path)
    assert all(r.latency_s == 123.0 and r.info == {"shared_capture": True} for r in records)
    assert "shared" in EvalSettings(method="toy", capture="shared").to_dict().values()
    assert "capture" not in EvalSettings(method="toy").to_dict()  # older run folders keep their keys
    with pytest.raises(ValueError):
        EvalSettings(method="toy", capture="borrowed")


def test_table_averages_each_method_and_counts_decoded_tokens(tmp_path):
    from headrank.eval.evaluate import formatting_success

    bench = _toy_benchmark()
    results = []
    for method, score in (("a", lambda q, p: [1.0 / (i + 1) for i in range(len(p))]),
                          ("b", lambda q, p: ([float(i) for i in range(len(p))],
                                              {"windows_total": 1, "windows_valid": 1, "tokens_generated": 8}))):
        settings = EvalSettings(method=method, depth=6)
        records = rerank_benchmark(bench, score, settings, tmp_path / method)
        results += [summarize(bench, records, settings, tmp_path / method, plot=False)] * 2
    table = markdown_table(results)
    assert "| **average a** |" in table and "| **average b** |" in table and "| **average** |" not in table
    assert formatting_success(records) == {"formatting_success": 1.0, "windows": 5, "tokens_generated_per_window": 8.0}


def test_both_orders_average_the_two_runs_and_reuse_finished_ones(tmp_path):
    bench = _toy_benchmark()
    calls = []

    def last_fed_wins(query, passages):  # pure position bias: the score is the position fed
        calls.append(list(passages))
        return [float(i) for i in range(len(passages))]

    first = EvalSettings(method="toy", depth=6)
    rerank_benchmark(bench, last_fed_wins, first, tmp_path / f"{bench.name}-{first.slug}")
    calls.clear()
    both = EvalSettings(method="toy", depth=6, order="both")
    records = rerank_both_orders(bench, last_fed_wins, both, tmp_path)
    assert len(calls) == len(bench.queries)  # the finished first-stage run is reused: only reversed passes ran
    assert all(c[0] == "text 5" for c in calls)
    # position bias cancels: every passage scores (i + (5 - i)) / 2, ties fall back to first-stage order
    assert all(r.scores == [2.5] * 6 for r in records)
    assert records[0].ranking()[0][0] == "d0-0"
    assert (tmp_path / f"{bench.name}-{both.slug}" / "settings.json").is_file()
    assert {p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()} == {
        f"{bench.name}-toy-k6-first-stage", f"{bench.name}-toy-k6-reversed", f"{bench.name}-toy-k6-both"}
    with pytest.raises(ValueError, match="rerank_both_orders"):
        rerank_benchmark(bench, last_fed_wins, both, tmp_path / "x")


def _folder(path, texts_by_query, grades):
    """A RankGPT candidate folder: one .json and qrels.txt."""
    path.mkdir(parents=True)
    entries = [{"query": f"query {q}", "hits": [{"qid": q, "docid": f"{q}-{i}", "content": t}
                                                for i, t in enumerate(texts)]} for q, texts in texts_by_query.items()]
    (path / "c.json").write_text(json.dumps(entries))
    (path / "qrels.txt").write_text("".join(f"{q} 0 {q}-{i} {g}\n" for q in texts_by_query for i, g in
                                            enumerate(grades)))
    return path


def test_runs_are_keyed_on_content_not_on_names(tmp_path, tiny_base):
    """Different data under the same name, or an edited head set file, must never resume an old run."""
    from typer.testing import CliRunner

    from headrank.cli import app

    runner = CliRunner()
    out = tmp_path / "runs"
    first = _folder(tmp_path / "a" / "mini", {"q1": ["solar", "wind", "pasta"]}, [2, 1, 0])
    second = _folder(tmp_path / "b" / "mini", {"q1": ["pasta", "wind", "solar"]}, [0, 1, 2])  # same name, new data
    args = ["evaluate", "--method", "bm25", "-K", "3", "--out", str(out), "--no-plot"]
    a = runner.invoke(app, [*args, "-b", str(first)])
    b = runner.invoke(app, [*args, "-b", str(second)])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "| mini | bm25 | 3 | first-stage | 1 | 1.0000 |" in a.stdout
    assert "| mini | bm25 | 3 | first-stage | 1 | 1.0000 |" not in b.stdout  # recomputed, not the old run
    assert len(list(out.glob("mini-bm25-*"))) == 2
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({"heads": [[1, 0]]}))
    hargs = ["evaluate", "--method", "heads", "--heads", str(heads), "--model", str(tiny_base), "-K", "3",
             "--out", str(out), "--no-plot", "-b", str(first), "--device", "cpu"]
    assert runner.invoke(app, hargs).exit_code == 0
    heads.write_text(json.dumps({"heads": [[2, 3]]}))  # the same file, edited
    assert runner.invoke(app, hargs).exit_code == 0
    runs = sorted(out.glob("mini-heads-*"))
    assert len(runs) == 2
    recorded = {tuple(map(tuple, json.loads((r / "metrics.json").read_text())["extra"]["head_set"]["heads"]))
                for r in runs}
    assert recorded == {((1, 0),), ((2, 3),)}


def test_interrupted_evaluation_says_how_to_resume(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import headrank.eval.evaluate
    from headrank.cli import app

    folder = _folder(tmp_path / "mini", {"q1": ["solar", "pasta"]}, [1, 0])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(headrank.eval.evaluate, "run_evaluation", interrupted)
    result = CliRunner().invoke(app, ["evaluate", "--method", "bm25", "-b", str(folder), "--out", str(tmp_path / "r")])
    assert result.exit_code == 130 and "rerun the same command to resume" in result.output


def test_a_presets_valve_stays_out_of_raw_runs_and_acts_per_window(tmp_path, tiny_base, toy_folder):
    """evaluate once scored a preset through a ranker that kept the preset's safety valve, so the 'unfused' run
    was valved; and a windowed run's rank-derived scores looked flat to the valve, which then fired on every
    list. Raw runs are now raw, and a windowed run takes fusion and valve inside each window."""
    from conftest import make_tiny_preset
    from typer.testing import CliRunner

    from headrank.cli import app
    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.rule import SafetyValve
    from headrank.eval.scorers import build_scorer

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)  # fires on every list
    preset = make_tiny_preset(tiny_base, tmp_path / "valved", InferenceSettings(safety_valve=always))
    bench = load_benchmark(str(toy_folder))
    lists = [[c.text for c in bench.candidates[q]] for q in bench.queries]
    scorer = build_scorer("heads", str(preset), device="cpu", dtype="float32")
    orders = [sorted(range(6), key=lambda i, s=scorer.score(q, d): (-s[i], i)) for q, d in zip(bench.queries.values(), lists)]
    assert any(order != list(range(6)) for order in orders)  # raw attention, not the valve's first-stage order

    out = tmp_path / "runs"
    args = ["evaluate", "-b", str(toy_folder), "--model", str(preset), "--device", "cpu", "--dtype", "float32",
            "--out", str(out), "--no-plot", "--safety-valve"]
    result = CliRunner().invoke(app, [*args, "--window", "4", "-K", "6"])
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "cache")
    assert len(runs) == 1 and runs[0].startswith("toy-heads+valve-k6-w4")  # only the valved run, named so
    metrics = json.loads((out / runs[0] / "metrics.json").read_text())
    first_stage = [QueryRecord(q, [c.docid for c in bench.candidates[q]], [6.0 - i for i in range(6)], 0.0)
                   for q in bench.queries]
    expected, _ = compute_metrics(first_stage, bench.qrels, bench.relevant_grade, 6)
    assert metrics["metrics"]["nDCG@10"] == pytest.approx(expected["nDCG@10"])
    fused = CliRunner().invoke(app, [*args, "--window", "4", "-K", "6", "--fuse-first-stage", "0.5"])
    assert fused.exit_code == 0, fused.output  # the summary keeps the whole slug, '.' of 'rrf0.5' included
    assert [p.name for p in out.glob("summary-heads+rrf0.5+valve-k6-w4-*.json")]


def test_windowed_fusion_refuses_a_reversed_feed():
    """Inside the ranker the input order is the first stage; a reversed feed would fuse with BM25 upside down."""
    from headrank.engine.rule import SafetyValve
    from headrank.eval.evaluate import place_rule

    for order in ("reversed", "both"):
        with pytest.raises(ValueError, match="use --order first-stage"):
            place_rule(EvalSettings("heads", depth=100, order=order, window=20), 0.6, None)
    assert place_rule(EvalSettings("heads", order="both"), 0.6, None).afterwards == (0.6, None)  # no window: afterwards
    placed = place_rule(EvalSettings("heads", window=20), None, SafetyValve("top_z", 0.5))
    assert placed.in_ranker[1] is not None and placed.settings.method == "heads+valve"
