"""One reranker interface over every backend, behind one factory; a backend of your own is one file."""

import math

import pytest

from headrank.rerankers import Reranker, ScoreReranker, load_reranker

DOCS = ["solar panels on roofs", "", "pasta recipes", "wind farms at sea"]


def test_first_stage_backend_keeps_the_input_order():
    ranker = load_reranker("firststage")
    assert isinstance(ranker, Reranker)
    ranking = ranker.rank("q", DOCS)
    assert [r.corpus_id for r in ranking] == [0, 2, 3, 1]  # the empty passage last
    assert math.isinf(ranking[-1].score) and ranking.settings.fuse_first_stage is None
    assert ranker.score("q", DOCS)[1] == -math.inf
    assert [r.corpus_id for r in load_reranker("bm25").rank("q", DOCS, top_k=2)] == [0, 2]
    with pytest.raises(NotImplementedError, match="attention"):
        ranker.explain("q", DOCS)


def test_score_reranker_fuses_per_call_and_takes_ids():
    by_length = ScoreReranker("length", lambda q, ps: [float(len(p)) for p in ps], fuse_first_stage=1.0)
    assert [r.corpus_id for r in by_length.rank("q", DOCS)] == [0, 2, 3, 1]  # w = 1: the input order
    plain = by_length.rank("q", DOCS, fuse_first_stage=0)
    assert [r.corpus_id for r in plain] == [0, 3, 2, 1] and plain.settings.fuse_first_stage is None
    with_ids = by_length.rank_batch(["q"], [[{"text": "aa", "id": "x"}, {"text": "b", "id": "y"}]],
                                    fuse_first_stage=0)[0]
    assert [r.doc_id for r in with_ids] == ["x", "y"]


def test_headrank_backend_is_the_head_ranker(tiny_base):
    from headrank.ranker import HeadRanker

    ranker = load_reranker("headrank", model=str(tiny_base), heads="1:0,2:3", device="cpu")
    assert isinstance(ranker, HeadRanker) and isinstance(ranker, Reranker)
    assert len(ranker.rank("q", DOCS)) == 4
    icr = load_reranker("icr", model=str(tiny_base), device="cpu")
    assert icr.method == "icr"


def test_a_backend_of_your_own_is_one_file(tmp_path, monkeypatch):
    (tmp_path / "toy_backend.py").write_text(
        "from headrank.rerankers import ScoreReranker\n\n\n"
        "def load(model=None, **options):\n"
        "    return ScoreReranker('toy', lambda query, passages: [float(-len(p)) for p in passages], **options)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    toy = load_reranker("toy_backend")
    assert [r.corpus_id for r in toy.rank("q", DOCS)] == [2, 3, 0, 1]  # shortest first, the empty one last


def test_bad_backends_are_named():
    with pytest.raises(ValueError, match="unknown reranker backend 'nope'.*firststage"):
        load_reranker("nope")
    with pytest.raises(ValueError, match="no load"):
        load_reranker("math")  # importable, but not a backend
    with pytest.raises(ValueError, match="takes no model"):
        load_reranker("firststage", model="x")
