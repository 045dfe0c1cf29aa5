import json

import pytest
from conftest import data_path

from headrank.data.formats import DataFormatError, read_rerank_input


def test_rankgpt_file_from_shared_data():
    path = data_path("msmarco-passage", "dl19", "bm25-top100.json")
    data = read_rerank_input(path)
    assert data.query and data.qid and len(data.candidates) == 100
    second = read_rerank_input(path, entry=1)
    assert second.query != data.query
    with pytest.raises(DataFormatError, match="entry 999"):
        read_rerank_input(path, entry=999)


def test_jsonl_with_query_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"query": "q?", "qid": "7"}\n{"docid": "d1", "text": "one"}\n\n{"content": "two"}\n')
    data = read_rerank_input(p)
    assert (data.query, data.qid) == ("q?", "7")
    assert [(c.docid, c.text) for c in data.candidates] == [("d1", "one"), ("1", "two")]


def test_jsonl_whose_passage_lines_carry_the_query(tmp_path):
    """qid/query/docid/text lines (the shape of a flattened run) once read as 'no query' for the CLI."""
    p = tmp_path / "c.jsonl"
    p.write_text('{"qid": "3", "query": "q?", "docid": "a", "text": "one"}\n'
                 '{"qid": "3", "query": "q?", "docid": "b", "text": "two"}\n')
    data = read_rerank_input(p)
    assert (data.query, data.qid) == ("q?", "3") and [c.docid for c in data.candidates] == ["a", "b"]
    p.write_text('{"query": "q?", "docid": "a", "text": "one"}\n{"query": "other", "docid": "b", "text": "two"}\n')
    with pytest.raises(DataFormatError, match="c.jsonl:2: the query differs"):
        read_rerank_input(p)
    p.write_text('{"query": "q?", "docid": "a", "text": "one"}\n{"query": "other"}\n')
    with pytest.raises(DataFormatError, match="c.jsonl:2: the query differs"):
        read_rerank_input(p)


def test_tsv(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("first passage\nsecond passage\n")
    data = read_rerank_input(p)
    assert data.query is None
    assert [(c.docid, c.text) for c in data.candidates] == [("0", "first passage"), ("1", "second passage")]
    p.write_text("d1\tfirst passage\nsecond passage without id\n")  # a position id could collide with an explicit one
    with pytest.raises(DataFormatError, match="c.tsv:2: lines with a docid .line 1. and lines with only a text"):
        read_rerank_input(p)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("a.jsonl", '{"text": "ok"}\n{"text": broken}\n', r"a.jsonl:2: invalid JSON"),
        ("b.jsonl", '{"text": "ok"}\n[1, 2]\n', r"b.jsonl:2: expected a JSON object"),
        ("c.jsonl", '{"title": "no text"}\n', r"c.jsonl:1: no passage text"),
        ("d.jsonl", '{"text": 5}\n', r"d.jsonl:1: 'text' must be a string"),
        ("e.tsv", "a\tb\tc\n", r"e.tsv:1: expected"),
        ("f.json", '[{"query": "q", "hits": [{"docid": 1}]}]', r"hit 0: needs a string 'content'"),
        ("g.json", '[{"hits": []}]', r"needs a string 'query'"),
        ("h.json", "[]", "no query entries"),
        ("i.json", '[{"query": "q", "hits": [}', r"i.json:1: invalid JSON"),
        ("j.json", "not json at all", r"j.json:1: invalid JSON"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(DataFormatError, match=match):
        read_rerank_input(p)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_rerank_input(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="unknown input format"):
        read_rerank_input(tmp_path / "x", fmt="xml")
    p = tmp_path / "bin.tsv"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataFormatError, match="UTF-8"):
        read_rerank_input(p)


def test_single_rankgpt_object(tmp_path):
    p = tmp_path / "one.json"
    p.write_text(json.dumps({"query": "q", "hits": [{"content": "c", "docid": "x", "qid": 3}]}, indent=2))
    data = read_rerank_input(p)
    assert (data.query, data.qid, data.candidates[0].docid) == ("q", "3", "x")


def test_only_newlines_end_records(tmp_path):
    """Form feeds, \\x1c-\\x1e, \\x85 and U+2028/2029 are text inside a record, not line breaks."""
    p = tmp_path / "c.tsv"
    p.write_text("d1\tpage one\fpage two \x1c\x1d\x1e\x85 \u2028 \u2029end\r\nd2\tsecond\n", encoding="utf-8")
    data = read_rerank_input(p)
    assert [c.docid for c in data.candidates] == ["d1", "d2"]
    assert data.candidates[0].text.startswith("page one\fpage two") and data.candidates[0].text.endswith("end")
    j = tmp_path / "c.jsonl"
    j.write_text(json.dumps({"docid": "a", "text": "x\u2028y"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_rerank_input(j).candidates[0].text == "x\u2028y"


def test_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    from headrank.data.formats import read_qrels, read_topics

    p = tmp_path / "c.tsv"
    p.write_bytes("\ufeffd1\tfirst\n".encode("utf-8"))
    assert read_rerank_input(p).candidates[0].docid == "d1"
    q = tmp_path / "qrels.txt"
    q.write_bytes("\ufeffq1 0 d1 2\n".encode("utf-8"))
    assert read_qrels(q) == {"q1": {"d1": 2}}
    t = tmp_path / "topics.tsv"
    t.write_bytes("\ufeffq1\tmy query\n".encode("utf-8"))
    assert read_topics(t) == {"q1": "my query"}


def test_unreadable_inputs_are_clear_errors(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes(b"d1\tcaf\xe9\n")
    with pytest.raises(DataFormatError, match="not UTF-8"):
        read_rerank_input(p)
    with pytest.raises(DataFormatError, match="is a directory"):
        read_rerank_input(tmp_path)


def test_ci_turns_missing_data_into_a_failure(monkeypatch):
    monkeypatch.setenv("HEADRANK_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="HEADRANK_REQUIRE_DATA"):
        data_path("no-such-benchmark")
    monkeypatch.setenv("HEADRANK_REQUIRE_DATA", "0")
    with pytest.raises(pytest.skip.Exception):
        data_path("no-such-benchmark")


def test_appendable_lines_drop_a_torn_last_line_from_the_file(tmp_path):
    from headrank.data.formats import appendable_lines

    path = tmp_path / "progress.jsonl"
    path.write_text('{"a": 1}\n{"b": "x\\u2028y"}\n{"c": ', encoding="utf-8")
    assert appendable_lines(path) == ['{"a": 1}', '{"b": "x\\u2028y"}']
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "x\\u2028y"}\n'
    path.write_text('{"c": ', encoding="utf-8")  # the first record itself was cut short
    assert appendable_lines(path) == [] and path.read_text() == ""
