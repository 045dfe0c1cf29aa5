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
    assert ranking.query == "q" and ranking.get(2).rank == 2 and len(ranking.top_k(2)) == 2  # every backend's Ranking
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
    from headrank.engine.ranker import HeadRanker

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


@pytest.fixture
def factory_spy(monkeypatch):
    """The backend names load_reranker is asked for, in order."""
    import headrank.rerankers as rerankers

    seen = []
    real = rerankers.load_reranker

    def spy(backend="headrank", model=None, **options):
        seen.append(backend)
        return real(backend, model, **options)

    monkeypatch.setattr(rerankers, "load_reranker", spy)
    return seen


def test_the_service_batch_jobs_and_cli_load_through_the_factory(tiny_base, factory_spy):
    """serve, rerank-batch and the CLI name a ranker by (model, method, heads); all go through load_reranker, so a
    backend module is the one place that decides what loads."""
    import headrank.rerankers as rerankers
    from headrank.batch import RankerSpec
    from headrank.cli.common import load_ranker

    seen = factory_spy
    assert RankerSpec(model=str(tiny_base), method="icr", device="cpu").load().method == "icr"
    assert load_ranker(str(tiny_base), "icr", device="cpu").method == "icr"
    heads = load_ranker(str(tiny_base), None, "1:0,2:3", device="cpu")
    assert heads.method == "heads" and seen == ["icr", "icr", "headrank"]
    with pytest.raises(ValueError, match="needs a head set"):
        rerankers.load_attention_reranker(str(tiny_base), "heads", device="cpu")


def test_evaluate_scores_its_baselines_through_the_factory(tiny_base, factory_spy):
    """evaluate's bm25, generative and pointwise scorers are the factory's backends (one place decides what a
    baseline is); the generative backend still reports its window counters per list."""
    from headrank.eval.scorers import build_scorer

    seen = factory_spy
    passages = ["cats purr", "dogs bark loudly", "fish swim"]
    generative = build_scorer("generative", str(tiny_base), device="cpu", dtype="float32")
    scores, info = generative.score("which animal barks?", passages)
    assert sorted(scores) == [1.0, 2.0, 3.0] and info["windows_total"] == 1 and "windows_identity" in info
    assert generative.model_fingerprint and generative.record["model_fingerprint"] == generative.model_fingerprint
    pointwise = build_scorer("pointwise", str(tiny_base), device="cpu", dtype="float32")
    scores, info = pointwise.score("which animal barks?", passages)
    assert len(scores) == 3 and info == {}
    first = build_scorer("bm25", str(tiny_base))
    assert first.score("q", passages) == [3.0, 2.0, 1.0] and first.model_fingerprint is None
    assert seen == ["generative", "pointwise", "bm25"]


def test_every_backend_takes_the_same_keywords_and_refuses_what_it_cannot_do(tiny_base):
    """One signature for rank / rank_batch / score: ids, metadata, batch_size, fusion per call work on a backend
    without attention (ScoreReranker) as on HeadRanker; a safety valve it cannot run is refused by name."""
    from headrank.engine.ranker import HeadRanker
    from headrank.engine.results import Reranker as Base

    first = load_reranker("firststage")
    heads = HeadRanker.from_pretrained(str(tiny_base), heads=[(1, 0)], device="cpu", dtype="float32")
    texts = ["alpha", "beta gamma", "delta"]
    for backend in (first, heads):
        assert isinstance(backend, Base)
        ranking = backend.rank("q", texts, top_k=2, doc_ids=["a", "b", "c"], metadata=[{"n": 1}, {"n": 2}, {"n": 3}],
                               fuse_first_stage=0, safety_valve=False)
        assert len(ranking) == 2 and {r.doc_id for r in ranking} <= {"a", "b", "c"} and ranking[0].meta["n"] >= 1
        batch = backend.rank_batch(["q", "r"], [texts, texts], batch_size=2, doc_ids=[["a", "b", "c"]] * 2)
        assert [b.query for b in batch] == ["q", "r"]
        assert len(backend.score("q", texts, fuse_first_stage=0.5)) == 3
    with pytest.raises(ValueError, match="no safety valve"):
        first.rank("q", texts, safety_valve=True)
    with pytest.raises(ValueError, match="one list per query"):
        first.rank_batch(["q", "r"], [texts, texts], doc_ids=[["a", "b", "c"]])
    fused = first.score("q", ["x", "y", "z"], fuse_first_stage=1.0)
    assert fused == sorted(fused, reverse=True)  # weight 1: the input order's scores

    class Incomplete(Base):
        def rank_batch(self, *args, **kwargs):
            return []

    with pytest.raises(TypeError, match="score"):
        Incomplete()
