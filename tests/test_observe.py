"""Shared capture: one all-head capture per list scores ICR and head sets like their own rankers do."""

import math

import pytest
import torch
from conftest import tiny_llama

from headrank.engine.heads import HeadSet
from headrank.engine.models import wrap_model
from headrank.engine.observe import SharedCapture
from headrank.engine.ranker import HeadRanker

DOCS = ["alpha beta gamma", "delta epsilon", "   ", "kappa lambda mu", "nu xi omicron pi rho"]


@pytest.fixture(scope="module")
def loaded(request):
    return wrap_model(tiny_llama(), request.getfixturevalue("llama_tokenizer"), name="tiny-llama")


def test_icr_and_head_sets_match_their_own_rankers(loaded, tmp_path):
    shared = SharedCapture(HeadRanker.from_pretrained(loaded, method="icr"), tmp_path)
    icr_scores, info = shared.scorer()("a query", DOCS)
    assert icr_scores == HeadRanker.from_pretrained(loaded, method="icr").score("a query", DOCS)
    assert icr_scores[2] == -math.inf and info["latency_s"] > 0
    plain = HeadSet(heads=((1, 0), (2, 3), (0, 2)), num_layers=4, num_heads=4)
    weighted = HeadSet(heads=((1, 0), (2, 3), (0, 2)), num_layers=4, num_heads=4, weights=(0.2, 3.0, 1.0))
    for heads, calibrate in ((plain, True), (plain, False), (weighted, True)):
        own = HeadRanker.from_pretrained(loaded, heads=heads, calibrate=calibrate).score("a query", DOCS)
        from_shared, _ = shared.scorer(heads, calibrate=calibrate)("a query", DOCS)
        assert from_shared[2] == own[2] == -math.inf
        kept = [0, 1, 3, 4]
        assert torch.allclose(torch.tensor([from_shared[i] for i in kept]), torch.tensor([own[i] for i in kept]),
                              atol=1e-6, rtol=1e-5)


def test_observations_are_cached_per_list(loaded, tmp_path, monkeypatch):
    ranker = HeadRanker.from_pretrained(loaded, method="icr")
    shared = SharedCapture(ranker, tmp_path)
    first, info = shared.scorer()("q", DOCS[:2])
    assert len(list(tmp_path.glob("*.pt"))) == 1 and not list(tmp_path.glob("*.tmp"))

    def no_capture(*args, **kwargs):
        raise AssertionError("the cached list was captured again")

    monkeypatch.setattr(ranker, "capture", no_capture)
    again, info_again = shared.scorer()("q", DOCS[:2])
    assert again == first and info_again["latency_s"] == info["latency_s"]
    with pytest.raises(AssertionError):  # another order is another list
        shared.scorer()("q", DOCS[:2][::-1])


def test_shared_capture_refuses_what_it_cannot_score(loaded, tmp_path):
    heads_ranker = HeadRanker.from_pretrained(loaded, heads=[(1, 0)])
    with pytest.raises(ValueError, match="ICR preset"):
        SharedCapture(heads_ranker, tmp_path)
    shared = SharedCapture(HeadRanker.from_pretrained(loaded, method="icr"), tmp_path)
    with pytest.raises(ValueError, match="not in the captured model"):
        shared.scorer(HeadSet(heads=((9, 0),)))
    with pytest.raises(ValueError, match="calibration"):
        shared.scorer(None, calibrate=False)
    with pytest.raises(ValueError, match="empty"):
        shared.scorer()("q", ["", "  "])


def test_a_capture_through_a_layer_matches_the_full_one_on_its_heads(loaded, tmp_path):
    """adapt captures only the layers a preset reads: same masses for those heads, its own cache key, no ICR."""
    from headrank.engine.observe import all_head_observer

    ranker = HeadRanker.from_pretrained(loaded, heads=HeadSet(heads=((1, 0), (0, 2)), num_layers=4, num_heads=4))
    full = SharedCapture(all_head_observer(ranker), tmp_path / "full")
    capped = SharedCapture(all_head_observer(ranker, through_layer=1), tmp_path / "capped")
    assert capped.heads == [h for h in full.heads if h[0] <= 1] and len(capped.heads) == 8
    assert capped.path_of("a query", DOCS) != full.path_of("a query", DOCS)
    a, b = full.observe("a query", DOCS), capped.observe("a query", DOCS)
    rows = [full.heads.index(h) for h in capped.heads]
    assert torch.allclose(a.calibrated[rows], b.calibrated, atol=1e-6) and torch.allclose(a.raw[rows], b.raw, atol=1e-6)
    with pytest.raises(ValueError, match="ICR reads every layer"):
        capped.scorer()
    with pytest.raises(ValueError, match="through_layer"):
        all_head_observer(ranker, through_layer=4)
