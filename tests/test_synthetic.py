"""Zero-label adaptation data (headrank.learn.synthetic): written queries, BM25 lists, the consistency filter, caching."""

import json

import pytest
from conftest import tiny_llama
from typer.testing import CliRunner

from headrank.cli import app
from headrank.learn.synthetic import (
    MIN_WORDS,
    QueryWriter,
    clean_query,
    prompt_template,
    query_messages,
    sample_passages,
    synthetic_benchmark,
)

TOPICS = ["solar panels convert sunlight into electricity on house roofs",
          "pasta dough needs flour eggs and a little olive oil",
          "wind turbines at sea produce power from strong steady winds",
          "chess openings control the centre of the board early",
          "river valleys form where water erodes soft rock over time",
          "vaccines train the immune system to recognise a virus",
          "jazz musicians improvise over chord changes in a tune",
          "glaciers move slowly downhill under their own weight"]
CORPUS = {f"d{i}": (t + " ") * 3 for i, t in enumerate(TOPICS)}  # 30 words or more each
CORPUS["short"] = "too short to ask about"


class FirstWords(QueryWriter):
    """A writer that asks for a passage by its first five words (the model part is tested separately)."""

    def __init__(self):
        self.calls = 0

    def write(self, passage: str) -> str:
        self.calls += 1
        return " ".join(passage.split()[:5])


def test_the_prompt_is_versioned_package_data():
    template = prompt_template()
    assert template["version"] == "synthetic-query-v2" and "{passage}" in template["user"]
    assert prompt_template("synthetic-query-v1")["version"] == "synthetic-query-v1"  # kept: recorded runs used it
    with pytest.raises(ValueError, match="unknown prompt version"):
        prompt_template("synthetic-query-v9")
    messages = query_messages(template, "some passage")
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": "Passage: some passage"}
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * len(template["examples"])


def test_clean_query_keeps_the_query_only():
    assert clean_query('Query: "solar roof panels".\nExplanation: ...') == "solar roof panels"
    assert clean_query("\n\n  best pasta dough  \n") == "best pasta dough"
    assert clean_query("") == ""


def test_sampling_is_seeded_and_skips_short_passages():
    a = sample_passages(CORPUS, 5, seed=1)
    assert a == sample_passages(CORPUS, 5, seed=1) and "short" not in a and len(a) == 5
    assert sorted(sample_passages(CORPUS, 100)) == sorted(d for d in CORPUS if d != "short")
    with pytest.raises(ValueError, match=f"{MIN_WORDS} words"):
        sample_passages({"a": "few words"}, 3)


def test_synthetic_lists_judge_the_source_passage_and_drop_lists_without_it():
    writer = FirstWords()
    bench = synthetic_benchmark(CORPUS, writer, n=8, depth=3)
    assert writer.calls == 8 and len(bench.queries) == 8
    for qid, judged in bench.qrels.items():
        (source,) = judged
        assert qid == f"syn-{source}" and source in [c.docid for c in bench.candidates[qid]]
        assert len(bench.candidates[qid]) == 3

    class Vague(FirstWords):
        def write(self, passage):
            return "zebra"  # a word of no passage finds nothing: no list keeps its source

    with pytest.raises(ValueError, match="finds its own passage"):
        synthetic_benchmark(CORPUS, Vague(), n=4, depth=3)


def test_hard_only_keeps_lists_whose_source_bm25_does_not_rank_first_and_writes_more_to_get_them():
    """A list BM25 already solves cannot tell heads apart under fusion: with hard_only it is dropped and more
    passages are written for, in the seeded sample's order, up to OVERSAMPLE * n."""
    from headrank.learn.synthetic import OVERSAMPLE

    corpus = {f"d{i}": (t + " ") * 3 for i, t in enumerate(TOPICS)}
    corpus["x0"] = "solar panels " * 3 + "and many other words about something else entirely " * 3

    class Shared(FirstWords):
        def write(self, passage):
            self.calls += 1
            return "solar panels" if passage.startswith("solar panels and") else " ".join(passage.split()[:5])

    writer = Shared()
    easy = synthetic_benchmark(corpus, writer, n=9, depth=3)
    assert len(easy.queries) == 9  # every source found (first for most)
    writer = Shared()
    hard = synthetic_benchmark(corpus, writer, n=2, depth=3, hard_only=True)
    # only the passage that shares its words with a denser one is not first: one list, after writing them all
    assert list(hard.qrels) == ["syn-x0"]  # its query is d0's first words too; d0 says them denser
    for qid, judged in hard.qrels.items():
        assert hard.candidates[qid][0].docid not in judged and next(iter(judged)) in [c.docid for c in hard.candidates[qid]]
    assert writer.calls == min(len(corpus), OVERSAMPLE * 2)

    with pytest.raises(ValueError, match="below rank 1"):
        synthetic_benchmark(CORPUS, FirstWords(), n=2, depth=3, hard_only=True)


def test_writer_generates_once_per_passage_and_resumes_from_its_cache(tmp_path, llama_tokenizer):
    from headrank.engine.models import wrap_model

    model = wrap_model(tiny_llama(), llama_tokenizer, name="tiny")
    cache = tmp_path / "queries.jsonl"
    first = QueryWriter(model, cache).write(CORPUS["d0"])
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["query"] == first

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached passage must not be generated again")

    model.model.generate = no_generation
    assert QueryWriter(model, cache).write(CORPUS["d0"]) == first  # a new writer reads the cache
    with cache.open("a", encoding="utf-8") as f:  # killed in the middle of writing the next query
        f.write('{"key": "abc", "que')
    assert QueryWriter(model, cache).write(CORPUS["d0"]) == first  # resumes instead of a JSON error
    assert cache.read_text().count("\n") == 1 and cache.read_text().endswith("\n")
    with pytest.raises(AssertionError, match="generated again"):
        QueryWriter(model, cache).write(CORPUS["d1"])  # another passage is new work
    other = QueryWriter(model, cache, version="synthetic-query-v1")
    assert other.key(CORPUS["d0"]) != rows[0]["key"]  # another prompt version starts over


def test_adapt_takes_judged_queries_or_a_corpus(tmp_path):
    runner = CliRunner()
    both = runner.invoke(app, ["adapt", "--out", str(tmp_path / "o"), "--data", "dl21", "--corpus", str(tmp_path)])
    assert both.exit_code == 2 and "one of the two" in both.output
    neither = runner.invoke(app, ["adapt", "--out", str(tmp_path / "o")])
    assert neither.exit_code == 2 and "one of the two" in neither.output
    missing = runner.invoke(app, ["adapt", "--out", str(tmp_path / "o"), "--corpus", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not found" in missing.output
    mixed = runner.invoke(app, ["adapt", "--out", str(tmp_path / "o"), "--corpus", str(tmp_path), "--max-queries", "9"])
    assert mixed.exit_code == 2 and "--synthetic-queries" in mixed.output
    prompt = runner.invoke(app, ["adapt", "--out", str(tmp_path / "o"), "--corpus", str(tmp_path), "--prompt-version",
                                 "v9"])  # fails before the corpus is read or a model loads
    assert prompt.exit_code == 2 and "unknown prompt version 'v9'" in prompt.output


def test_adapt_corpus_end_to_end_on_a_tiny_preset(tiny_base, tmp_path):
    """adapt --corpus from one command on a tiny random preset: the written queries are noise, so the command
    must end with a clear message, never a traceback; the query cache is kept for a rerun. (The real model on a
    real corpus: docs/research/adaptation.md.)"""
    from conftest import make_tiny_preset

    from headrank.engine.checkpoint import InferenceSettings

    preset = make_tiny_preset(tiny_base, tmp_path / "tiny-preset", InferenceSettings(fuse_first_stage=0.5))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with (corpus / "corpus.jsonl").open("w") as f:
        for i in range(30):
            f.write(json.dumps({"_id": f"d{i}", "text": (TOPICS[i % len(TOPICS)] + f" item {i} ") * 3}) + "\n")
    cache = tmp_path / "cache"
    args = ["adapt", "--from", str(preset), "--corpus", str(corpus), "--synthetic-queries", "8", "--out",
            str(tmp_path / "adapted"), "--cache", str(cache), "--device", "cpu", "--dtype", "float32"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, SystemExit), result.exception
    written = cache / "synthetic" / "corpus" / "synthetic-queries.jsonl"
    # hard lists only (the default): it writes for more passages, up to 4 x 8, to find 8 usable lists
    assert len(written.read_text().splitlines()) == 30
    # random weights write noise: no query finds its passage, and the command says so (exit 2, no traceback)
    assert result.exit_code == 2 and "finds its own passage" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "adapted").exists()


def test_adapt_corpus_tells_users_what_zero_label_adaptation_did_on_real_judgments(tmp_path, monkeypatch):
    """On Cranfield, CISI, NPL and NFCorpus dev the adapted preset never beat the preset it started from; the
    command says so after its report."""
    from types import SimpleNamespace

    import headrank.learn.adapt
    import headrank.learn.synthetic

    candidate = SimpleNamespace(label="x", heads=[(0, 0)], weights=None, fuse=0.6, val_ndcg=0.9)
    fake = SimpleNamespace(train_queries=["a"], val_queries=["b"], before=candidate, after=candidate, warning=None,
                           kept_preset=None, p_value=None,
                           to_dict=dict)
    monkeypatch.setattr(headrank.learn.synthetic, "corpus_benchmark", lambda *a, **k: SimpleNamespace(name="mine"))
    monkeypatch.setattr(headrank.learn.adapt, "adapt_preset", lambda *a, **k: fake)
    result = CliRunner().invoke(app, ["adapt", "--corpus", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "did not help on real judgments" in " ".join(result.output.split())
    fake.kept_preset = "top-4 heads scored 0.95 against the preset's 0.90, p 0.200 >= 0.05"
    result = CliRunner().invoke(app, ["adapt", "--corpus", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "kept the preset: top-4 heads scored 0.95" in " ".join(result.output.split())
    seen = {}
    monkeypatch.setattr(headrank.learn.adapt, "adapt_preset", lambda *a, **k: seen.setdefault("config", a[3]) and fake)
    CliRunner().invoke(app, ["adapt", "--corpus", str(tmp_path), "--out", str(tmp_path / "o")])
    assert seen["config"].require_p == 0.05 and seen["config"].keep_fusion  # the guards are on with --corpus


def test_adapt_requires_a_clear_win_with_written_queries_and_not_with_judged_ones():
    from headrank.cli.adapt import adoption_bar

    assert adoption_bar(None, zero_label=True) == 0.05
    assert adoption_bar(None, zero_label=False) is None
    assert adoption_bar(1.0, zero_label=True) is None  # 1 = adopt the best, as before
    assert adoption_bar(0.1, zero_label=False) == 0.1
