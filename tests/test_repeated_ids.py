"""One rule for a repeated id or qid in every reader: the first is kept and the repeat is reported with the file
and line (a warning; listed in problems.txt by rerank-batch, or refused there with --on-error fail). Conflicting
judgments keep the first. Ids that are not strings or integers are refused, never printed as Python reprs.
Each case failed before the rule: a later line silently replaced the first."""

import json
import logging

import pytest

from headrank.data import DataFormatError, read_beir, read_qrels, read_rerank_input, read_topics


def test_topics_keep_the_first_query_text_and_say_so(tmp_path, caplog):
    path = tmp_path / "topics.tsv"
    path.write_text("q1\tfirst question\nq2\tother\nq1\tsecond question\n")
    with caplog.at_level(logging.WARNING):
        topics = read_topics(path)
    assert topics == {"q1": "first question", "q2": "other"}
    assert "topics.tsv:3: repeated id 'q1' with another text (first at line 1); the first is kept" in caplog.text
    problems = []
    assert read_topics(path, on_problem=problems.append)["q1"] == "first question" and len(problems) == 1


def test_conflicting_qrels_keep_the_first_judgment(tmp_path, caplog):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 2\nq1 0 d2 0\nq1 0 d1 0\nq1 0 d2 0\n")
    with caplog.at_level(logging.WARNING):
        qrels = read_qrels(path)
    assert qrels == {"q1": {"d1": 2, "d2": 0}}
    assert "qrels.txt:3: a second judgment of document 'd1' for query 'q1' (grade 0; the first said 2)" in caplog.text
    assert "qrels.txt:4" not in caplog.text  # the same judgment twice is no conflict


def _beir(folder, corpus_lines):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(o) + "\n" for o in corpus_lines))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "solar power"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def test_beir_corpus_with_a_repeated_id_keeps_the_first_text(tmp_path, caplog):
    folder = _beir(tmp_path / "beir", [{"_id": "d1", "title": "Solar", "text": "panels make power"},
                                       {"_id": "d2", "text": "pasta"},
                                       {"_id": "d1", "text": "something else entirely"}])
    with caplog.at_level(logging.WARNING):
        corpus, queries, qrels = read_beir(folder)
    assert corpus["d1"] == "Solar panels make power" and len(corpus) == 2
    assert "corpus.jsonl:3: repeated _id 'd1' with another text (first at line 1)" in caplog.text


@pytest.mark.parametrize("bad", [None, [1, 2], {"a": 1}, True, 1.5, "", "  "])
def test_ids_that_are_not_strings_or_integers_are_refused(tmp_path, bad):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"query": "q"}) + "\n" + json.dumps({"docid": bad, "text": "x"}) + "\n")
    with pytest.raises(DataFormatError, match=r"c.jsonl:2: .*'docid'"):
        read_rerank_input(jsonl)
    rankgpt = tmp_path / "c.json"
    rankgpt.write_text(json.dumps({"query": "q", "hits": [{"docid": bad, "content": "x"}]}))
    with pytest.raises(DataFormatError, match="entry 0, hit 0"):
        read_rerank_input(rankgpt)
    folder = _beir(tmp_path / "beir", [{"_id": bad, "text": "x"}])
    with pytest.raises(DataFormatError, match="corpus.jsonl:1"):
        read_beir(folder)


def test_an_empty_tsv_docid_is_refused(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("d1\tsolar\n\tpasta\n")
    with pytest.raises(DataFormatError, match=r"c.tsv:2: empty docid"):
        read_rerank_input(path)


def test_rerank_batch_ranks_the_first_text_of_a_repeated_corpus_id_and_lists_it(tmp_path):
    from headrank.batch import read_run_lists

    (tmp_path / "topics.tsv").write_text("q1\tsolar power\nq1\tpasta recipes\n")
    (tmp_path / "corpus.tsv").write_text("d1\tsolar panels\nd2\tpasta\nd1\ta cat video\n")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 9.0 bm25\nq1 Q0 d2 2 8.0 bm25\n")
    batch = read_run_lists(tmp_path / "run.trec", tmp_path / "topics.tsv", tmp_path / "corpus.tsv")
    (only,) = batch.lists
    assert only.query == "solar power" and only.texts == ["solar panels", "pasta"]
    assert any("topics.tsv:2: repeated id 'q1'" in p for p in batch.problems)
    assert any("corpus.tsv:3: repeated id 'd1'" in p for p in batch.problems)
    with pytest.raises(DataFormatError, match="repeated id"):
        read_run_lists(tmp_path / "run.trec", tmp_path / "topics.tsv", tmp_path / "corpus.tsv", on_error="fail")
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in [{"_id": "d1", "text": "solar panels"},
                                                            {"_id": "d2", "text": "pasta"},
                                                            {"_id": ["d1"], "text": "list id"},
                                                            {"_id": "d1", "text": "a cat video"}]))
    batch = read_run_lists(tmp_path / "run.trec", tmp_path / "topics.tsv", jsonl)
    assert batch.lists[0].texts == ["solar panels", "pasta"]
    assert any("corpus.jsonl:3: document id must be a string or an integer, got list" in p for p in batch.problems)
    assert any("corpus.jsonl:4: repeated document id 'd1'" in p for p in batch.problems)


def test_evaluate_on_a_beir_folder_with_a_repeated_id_uses_the_first_text(tmp_path, caplog):
    from headrank.datasets import load_benchmark

    folder = _beir(tmp_path / "beir", [{"_id": "d1", "text": "solar panels make power"}, {"_id": "d2", "text": "pasta"},
                                       {"_id": "d1", "text": "pasta pasta pasta"}])
    with caplog.at_level(logging.WARNING):
        bench = load_benchmark(str(folder), cache_dir=tmp_path / "cache")
    texts = {c.docid: c.text for c in bench.candidates["q1"]}
    assert texts["d1"] == "solar panels make power"
    assert "repeated _id 'd1'" in caplog.text


def test_adapt_says_when_a_corpus_repeats_ids(tmp_path, caplog):
    """adapt --corpus reads with the same rule and says how many rows became how many documents."""
    from headrank.synthetic import corpus_benchmark

    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"d{i}\tpassage number {i} about solar panels and wind farms\n" for i in range(19))
                      + "d3\tanother text for d3\n")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="19 documents"):
        corpus_benchmark(corpus, "smollm2-135m-instruct", 8, tmp_path / "cache", depth=20)
    assert "20 rows, 19 documents: 1 repeated id (the first text kept)" in caplog.text
    assert "corpus.tsv:20: repeated id 'd3'" in caplog.text
