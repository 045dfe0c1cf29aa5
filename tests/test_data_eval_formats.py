import json
import math

import pytest

from headrank.data.benchmarks import load_benchmark
from headrank.data.formats import DataFormatError, read_beir, read_qrels, read_topics, read_trec_run, write_trec_run


def test_qrels_trec_and_beir(tmp_path):
    trec = tmp_path / "q.txt"
    trec.write_text("1 0 d1 2\n1 0 d2 0\n2 Q0 d3 1\n")
    assert read_qrels(trec) == {"1": {"d1": 2, "d2": 0}, "2": {"d3": 1}}
    beir = tmp_path / "q.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\tdoc1\t1\n")
    assert read_qrels(beir) == {"q1": {"doc1": 1}}


@pytest.mark.parametrize("content, match", [("1 0 d1 2\n1 0 d2 x\n", ":2: relevance grade"),
                                            ("1 2\n", ":1: expected"), ("\n", "no relevance judgments")])
def test_malformed_qrels(tmp_path, content, match):
    p = tmp_path / "bad.txt"
    p.write_text(content)
    with pytest.raises(DataFormatError, match=match):
        read_qrels(p)


def test_topics_and_runs(tmp_path):
    t = tmp_path / "t.tsv"
    t.write_text("1\tfirst query\n2\tsecond\twith tab\n")
    assert read_topics(t) == {"1": "first query", "2": "second\twith tab"}
    t.write_text("only-one-column\n")
    with pytest.raises(DataFormatError, match="t.tsv:1"):
        read_topics(t)
    run = tmp_path / "r.trec"
    write_trec_run(run, {"q": [("a", 3.0), ("b", 1.0)]}, "tag")
    assert read_trec_run(run) == {"q": [("a", 3.0), ("b", 1.0)]}
    run.write_text("q Q0 a 1 notanumber tag\n")
    with pytest.raises(DataFormatError, match="r.trec:1"):
        read_trec_run(run)
    run.write_text("q Q0 a 1\n")
    with pytest.raises(DataFormatError, match="r.trec:1: expected"):
        read_trec_run(run)


def _beir(folder, corpus_lines):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "solar power"}\n{"_id": "q2", "text": "unjudged"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")


def test_beir_folder_as_benchmark(tmp_path):
    folder = tmp_path / "mini"
    _beir(folder, [
        json.dumps({"_id": "d1", "title": "Wind", "text": "wind turbines make electricity"}),
        json.dumps({"_id": "d2", "title": "Solar", "text": "solar panels turn sun into power"}),
        json.dumps({"_id": "d3", "text": "cooking pasta"}),
    ])
    corpus, queries, qrels = read_beir(folder)
    assert corpus["d2"].startswith("Solar solar panels") and qrels == {"q1": {"d2": 1}}
    bench = load_benchmark(str(folder), cache_dir=tmp_path / "cache")
    assert list(bench.queries) == ["q1"]  # only judged queries
    assert bench.candidates["q1"][0].docid == "d2"  # BM25 puts the solar document first


def test_malformed_beir_corpus_names_line(tmp_path):
    folder = tmp_path / "bad"
    _beir(folder, ['{"_id": "d1", "text": "ok"}', "{broken"])
    with pytest.raises(DataFormatError, match="corpus.jsonl:2"):
        read_beir(folder)
    with pytest.raises(FileNotFoundError, match="qrels/dev.tsv"):
        read_beir(folder, split="dev")


def test_ir_datasets_id_needs_package_or_network():
    pytest.importorskip("ir_datasets")
    try:
        load_benchmark("ir_datasets:antique/test")
    except Exception as err:  # offline: the package cannot reach its sources
        pytest.skip(f"ir_datasets sources unreachable: {err}")


def test_trec_runs_keep_the_shown_order_under_ties(tmp_path):
    """trec_eval sorts by score, then docid: tied scores once reordered what was written. Every written run
    now has strictly decreasing scores, so ir-measures (pytrec_eval) sees the order as ranked."""
    import ir_measures

    from headrank.data.formats import strictly_decreasing, write_trec_run

    ranked = [("a", 0.5), ("z", 0.5), ("m", 0.5), ("b", 0.2), ("c", -math.inf), ("d", -math.inf)]
    path = tmp_path / "run.trec"
    write_trec_run(path, {"q1": ranked}, tag="t")
    scores = [float(line.split()[4]) for line in path.read_text().splitlines()]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert [line.split()[2] for line in path.read_text().splitlines()] == [d for d, _ in ranked]
    for relevant, expected in (("z", 1 / 2), ("m", 1 / 3)):  # docid order would put z first, m second
        qrels = [ir_measures.Qrel("q1", relevant, 1)]
        run = list(ir_measures.read_trec_run(str(path)))
        assert ir_measures.calc_aggregate([ir_measures.RR], qrels, run)[ir_measures.RR] == pytest.approx(expected)
    assert strictly_decreasing([0.3, 0.1]) == pytest.approx([0.3, 0.1])  # distinct scores stay as they are
