"""HeadRanker behaviour on tiny random models (fast) and the real default model (integration)."""

import json
import math

import pytest
import torch
from conftest import data_path, tiny_llama, tiny_qwen3

from headrank.engine.heads import HeadSet, HeadSetMismatchError
from headrank.engine.mass import ScoringConfig
from headrank.engine.models import wrap_model
from headrank.engine.prompt import PromptSettings
from headrank.engine.ranker import HeadRanker

DOCS = ["alpha beta gamma", "delta epsilon", "zeta eta theta iota", "kappa lambda mu", "nu xi omicron pi rho"]


@pytest.fixture(scope="module")
def tiny_ranker(request):
    tok = request.getfixturevalue("llama_tokenizer")
    loaded = wrap_model(tiny_llama(), tok, name="tiny-llama")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4)
    return HeadRanker(loaded, heads, scoring=ScoringConfig(calibrate=True))


def test_rank_shape_and_order(tiny_ranker):
    results = tiny_ranker.rank("a query", DOCS)
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    assert sorted(r.corpus_id for r in results) == list(range(5))
    assert all(results[i].score >= results[i + 1].score for i in range(4))
    assert all(r.text == DOCS[r.corpus_id] for r in results)
    assert results[0]["corpus_id"] == results[0].corpus_id  # dict-style access, like sentence-transformers
    scores = tiny_ranker.score("a query", DOCS)
    assert [r.corpus_id for r in results] == sorted(range(5), key=lambda i: (-scores[i], i))


def test_top_k_and_return_documents(tiny_ranker):
    results = tiny_ranker.rank("a query", DOCS, top_k=2, return_documents=False)
    assert len(results) == 2 and results[0].text is None and "text" not in results[0].to_dict()


def test_rank_batch_equals_single(tiny_ranker):
    queries = ["first query", "a much longer second query with more tokens"]
    lists = [DOCS, DOCS[:3] + ["another passage that is longer than the others by a margin"]]
    batched = tiny_ranker.rank_batch(queries, lists, batch_size=2)
    for q, docs, got in zip(queries, lists, batched):
        single = tiny_ranker.rank(q, docs)
        assert [r.corpus_id for r in got] == [r.corpus_id for r in single]
        assert all(abs(a.score - b.score) < 1e-5 for a, b in zip(got, single))


def test_empty_passages_rank_last_without_the_model(tiny_ranker):
    docs = ["", DOCS[0], "   ", DOCS[1]]
    results = tiny_ranker.rank("q", docs)
    assert [r.corpus_id for r in results[-2:]] == [0, 2]
    assert all(math.isinf(r.score) and r.score < 0 for r in results[-2:])
    all_empty = tiny_ranker.rank("q", ["", " "])
    assert [r.corpus_id for r in all_empty] == [0, 1]


@pytest.mark.parametrize(
    "query, docs, error, match",
    [
        ("", DOCS, ValueError, "query 0 is empty"),
        ("  ", DOCS, ValueError, "query 0 is empty"),
        ("q", [], ValueError, "no passages"),
        ("q", ["ok", 3], TypeError, "passage 1 of query 0 is int"),
        ("q", "a single string", TypeError, "list of strings"),
        (None, DOCS, TypeError, "query 0 is NoneType"),
    ],
)
def test_bad_input(tiny_ranker, query, docs, error, match):
    with pytest.raises(error, match=match):
        tiny_ranker.rank(query, docs)


def test_bad_arguments(tiny_ranker):
    with pytest.raises(ValueError, match="top_k"):
        tiny_ranker.rank("q", DOCS, top_k=0)
    with pytest.raises(ValueError, match="2 queries but 1"):
        tiny_ranker.rank_batch(["a", "b"], [DOCS])
    with pytest.raises(TypeError, match="list of queries"):
        tiny_ranker.rank_batch("a", [DOCS])


def test_head_set_for_another_model_is_rejected(llama_tokenizer):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    with pytest.raises(HeadSetMismatchError, match="do not exist"):
        HeadRanker(loaded, HeadSet(heads=((7, 0),)))
    with pytest.raises(HeadSetMismatchError, match="do not exist"):
        HeadRanker(loaded, HeadSet(heads=((1, 4),)))
    with pytest.raises(HeadSetMismatchError, match="30 layers x 9 heads"):
        HeadRanker(loaded, HeadSet(heads=((1, 0),), num_layers=30, num_heads=9, model="smollm2"))


def test_windowing_ranks_every_passage(llama_tokenizer):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    heads = HeadSet(heads=((1, 0),))
    docs = [f"passage number {i} about topic {i % 3}" for i in range(12)]
    full = HeadRanker(loaded, heads)
    prompt_len = len(full.builder.build("q", docs))
    windowed = HeadRanker(loaded, heads, max_length=prompt_len // 2)
    results = windowed.rank("q", docs)
    assert sorted(r.corpus_id for r in results) == list(range(12))
    assert all(r.windowed for r in results)
    assert [r.score for r in results] == [float(12 - i) for i in range(12)]
    assert windowed.window_size("q", docs) < 12
    with pytest.raises(ValueError, match="use rank"):
        windowed.score("q", docs)
    with pytest.raises(ValueError, match="for two of its passages"):
        HeadRanker(loaded, heads, max_length=60).rank("q", docs)


def test_a_fixed_window_splits_lists_that_would_fit_the_context(llama_tokenizer):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    heads = HeadSet(heads=((1, 0),))
    docs = [f"passage number {i} about topic {i % 3}" for i in range(12)]
    ranker = HeadRanker(loaded, heads, window=5)
    assert ranker.window_size("q", docs) == 5
    seen = []
    original = ranker.score_prompts
    ranker.score_prompts = lambda prompts: seen.append(len(prompts[0].passage_spans)) or original(prompts)
    results = ranker.rank("q", docs)
    assert sorted(r.corpus_id for r in results) == list(range(12)) and all(r.windowed for r in results)
    assert seen == [5, 5, 5, 5, 4]  # windows [7:12], [5:10], [3:8], [1:6], [0:4]; stride 2
    assert not any(r.windowed for r in ranker.rank("q", docs[:5]))  # a list that fits one window: one prompt
    with pytest.raises(ValueError, match="exceed the window of 5"):
        ranker.score("q", docs)
    with pytest.raises(ValueError, match="window must be >= 2"):
        HeadRanker(loaded, heads, window=1)


def test_window_order_follows_scores_when_one_window_suffices(llama_tokenizer):
    """With a window as large as the list, windowing reduces to plain scoring."""
    loaded = wrap_model(tiny_qwen3(vocab_size=49152), llama_tokenizer)
    ranker = HeadRanker(loaded, HeadSet(heads=((0, 0), (3, 2))))
    docs = DOCS
    plain = [r.corpus_id for r in ranker.rank("q", docs)]
    assert ranker._rank_windowed("q", docs)[0] == plain


def test_both_orders_average_the_list_and_its_reverse(tiny_ranker):
    """both_orders = the mean of the list's scores and the reversed list's scores mapped back."""
    both = HeadRanker(tiny_ranker.model, tiny_ranker.heads, scoring=tiny_ranker.scoring, both_orders=True)
    docs = ["", *DOCS]  # an empty passage stays out of both prompts and ranks last
    forward = tiny_ranker.score("a query", DOCS)
    backward = tiny_ranker.score("a query", DOCS[::-1])[::-1]
    expected = [(a + b) / 2 for a, b in zip(forward, backward)]
    got = both.score("a query", docs)
    assert math.isinf(got[0]) and got[0] < 0
    assert all(abs(a - b) < 1e-5 for a, b in zip(got[1:], expected))
    assert max(abs(a - b) for a, b in zip(forward, expected)) > 1e-4  # the reversed pass changed something
    batched = both.rank_batch(["a query", "another"], [docs, DOCS[:3]], batch_size=2)
    assert [r.corpus_id for r in batched[0]] == sorted(range(1, 6), key=lambda i: (-expected[i - 1], i)) + [0]
    assert [r.corpus_id for r in batched[1]] == [r.corpus_id for r in both.rank("another", DOCS[:3])]
    windowed = HeadRanker(tiny_ranker.model, tiny_ranker.heads, window=3, both_orders=True).rank("q", DOCS * 2)
    assert sorted(r.corpus_id for r in windowed) == list(range(10)) and windowed[0].windowed


def test_icr_preset_on_tiny_model(llama_tokenizer):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    ranker = HeadRanker.from_pretrained(loaded, method="icr")
    assert len(ranker.heads.heads) == 16 and ranker.heads.deepest_layer == 3
    assert ranker.scoring == ScoringConfig(calibrate=True, token_mask=True)
    assert len(ranker.rank("q", DOCS)) == 5


def test_from_pretrained_argument_errors(llama_tokenizer):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    with pytest.raises(ValueError, match="unknown method"):
        HeadRanker.from_pretrained(loaded, method="bm25")
    with pytest.raises(ValueError, match="needs a head set"):
        HeadRanker.from_pretrained(loaded, method="heads")


def test_head_set_prompt_settings_are_used(llama_tokenizer, tmp_path):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    path = tmp_path / "heads.json"
    HeadSet(heads=((1, 2),), prompt={"max_passage_tokens": 7}).save(path)
    ranker = HeadRanker.from_pretrained(loaded, heads=path)
    assert ranker.prompt_settings == PromptSettings(max_passage_tokens=7)
    assert HeadRanker.from_pretrained(loaded, heads=path, max_passage_tokens=9).prompt_settings.max_passage_tokens == 9


@pytest.mark.integration
def test_real_model_ranks_relevant_passages_first(real_ranker):
    docs = [
        "The Great Wall of China is a series of fortifications in northern China.",
        "Paris is the capital and most populous city of France.",
        "Bananas are a good source of potassium.",
        "France's capital city, Paris, lies on the Seine river.",
        "The Pacific is the largest ocean on Earth.",
    ]
    results = real_ranker.rank("What is the capital of France?", docs)
    assert {r.corpus_id for r in results[:2]} == {1, 3}


@pytest.mark.integration
def test_real_model_icr_on_dl19_list(real_ranker):
    entry = json.loads(data_path("msmarco-passage", "dl19", "bm25-top100.json").read_text())[0]
    docs = [h["content"] for h in entry["hits"][:20]]
    results = real_ranker.rank(entry["query"], docs)
    assert len(results) == 20 and all(math.isfinite(r.score) for r in results)
    truncated_equals_full = HeadRanker(
        real_ranker.model, HeadSet(heads=((14, 3), (16, 0), (18, 5))), truncate=True
    ).score(entry["query"], docs[:10])
    full = HeadRanker(
        real_ranker.model, HeadSet(heads=((14, 3), (16, 0), (18, 5))), truncate=False
    ).score(entry["query"], docs[:10])
    assert truncated_equals_full == full


def test_max_length_must_be_positive(llama_tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        HeadRanker(wrap_model(tiny_llama(), llama_tokenizer), HeadSet(heads=((0, 0),)), max_length=0)


def test_weighted_head_set_scores_are_the_weighted_sum_of_its_heads(tiny_ranker):
    """A weighted set scores sum_h w_h * (calibrated mass of h): linear in the one-head scores."""
    loaded = tiny_ranker.model
    weights = {(1, 0): 0.5, (2, 3): 2.0, (3, 1): 0.0}
    weighted = HeadRanker(loaded, HeadSet(heads=tuple(weights), weights=tuple(weights.values()), num_layers=4,
                                          num_heads=4))
    expected = torch.zeros(len(DOCS))
    for head, w in weights.items():
        expected += w * torch.tensor(HeadRanker(loaded, HeadSet(heads=(head,), num_layers=4, num_heads=4)).score("q", DOCS))
    assert torch.allclose(torch.tensor(weighted.score("q", DOCS)), expected, atol=1e-6)
    assert weighted.heads.deepest_layer == 3  # a zero-weight head still sets the depth it is read at


def test_fusion_is_a_per_call_choice(tiny_ranker):
    """A ranker that fuses by default ranks unordered input without fusion when the call says so, and each
    Ranking reports the settings that ranked it (rank() did not take the argument before)."""
    from headrank.engine.fusion import fuse_with_first_stage

    fused_ranker = HeadRanker(tiny_ranker.model, tiny_ranker.heads, scoring=tiny_ranker.scoring, fuse_first_stage=0.9)
    raw = tiny_ranker.score("a query", DOCS)
    plain = fused_ranker.rank("a query", DOCS, fuse_first_stage=0)
    assert [r.corpus_id for r in plain] == sorted(range(5), key=lambda i: (-raw[i], i))
    assert plain.settings.fuse_first_stage is None
    default = fused_ranker.rank("a query", DOCS)
    assert default.settings.fuse_first_stage == 0.9
    fused = fuse_with_first_stage(raw, 0.9)
    assert [r.corpus_id for r in default] == sorted(range(5), key=lambda i: (-fused[i], i))
    assert fused_ranker.score("a query", DOCS, fuse_first_stage=0) == pytest.approx(raw)
    other = tiny_ranker.rank_batch(["a query"], [DOCS], fuse_first_stage=0.5)[0]
    assert other.settings.fuse_first_stage == 0.5 and tiny_ranker.fuse_first_stage is None  # no lasting change
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="fuse_first_stage"):
            fused_ranker.rank("a query", DOCS, fuse_first_stage=bad)


def test_ranking_reports_prompt_tokens(tiny_ranker):
    ranking = tiny_ranker.rank("a query", DOCS)
    assert ranking.prompt_tokens == len(tiny_ranker.builder.build("a query", DOCS))
    both = HeadRanker(tiny_ranker.model, tiny_ranker.heads, both_orders=True).rank("a query", DOCS)
    assert both.prompt_tokens == 2 * ranking.prompt_tokens
    windowed = HeadRanker(tiny_ranker.model, tiny_ranker.heads, window=2).rank("a query", DOCS)
    assert windowed[0].windowed and windowed.prompt_tokens > ranking.prompt_tokens


def test_both_orders_must_be_a_bool():
    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.ranker import _settings

    with pytest.raises(ValueError, match="both_orders"):
        _settings(InferenceSettings(), {"both_orders": "no"})  # a truthy string once switched both orders on
    assert _settings(InferenceSettings(both_orders=True), {"both_orders": False}).both_orders is False


def test_long_windowed_lists_report_progress(tiny_ranker, caplog):
    """Thousands of passages once ran for minutes without a word; windowed ranking logs progress with an ETA."""
    import logging

    ranker = HeadRanker(tiny_ranker.model, tiny_ranker.heads, window=4)
    with caplog.at_level(logging.INFO, logger="headrank.engine.ranker"):
        ranker.rank("a query", [f"passage number {i}" for i in range(60)])
    lines = [r.getMessage() for r in caplog.records if "windows" in r.getMessage()]
    assert lines and "about" in lines[0] and "s left" in lines[0]


def test_safety_valve_is_a_setting_and_a_per_call_switch(tiny_ranker):
    """A ranker with a valve that always fires ranks in the input order and says so; safety_valve=False ranks by
    attention; the explanation and score() follow the same rule."""
    from headrank.engine.rule import SafetyValve

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)  # agreement <= 1 < 2: fires on every list
    ranker = HeadRanker(tiny_ranker.model, tiny_ranker.heads, scoring=tiny_ranker.scoring, safety_valve=always)
    raw = tiny_ranker.score("a query", DOCS)
    valved = ranker.rank("a query", DOCS)
    assert valved.valve_fired and [r.corpus_id for r in valved] == [0, 1, 2, 3, 4]
    assert valved.settings.safety_valve == always
    off = ranker.rank("a query", DOCS, safety_valve=False)
    assert not off.valve_fired and off.settings.safety_valve is None
    assert [r.corpus_id for r in off] == sorted(range(5), key=lambda i: (-raw[i], i))
    assert ranker.score("a query", DOCS, safety_valve=False) == pytest.approx(raw)
    scores = ranker.score("a query", DOCS)
    assert sorted(range(5), key=lambda i: -scores[i]) == [0, 1, 2, 3, 4]
    explained = ranker.explain("a query", DOCS)
    assert [e.corpus_id for e in explained] == [0, 1, 2, 3, 4] and all(e.valve_fired for e in explained)
    assert not tiny_ranker.rank("a query", DOCS).valve_fired  # no valve, nothing fires


def test_windows_apply_the_fusion_and_the_valve_window_by_window(tiny_ranker):
    """A windowed list was once ranked by rank-derived scores with the valve ignored (and evaluate then read
    those uniform ranks as 'unreliable' on every list); now each window runs the rule: an always-firing valve
    keeps every window, hence the list, in the input order, and says it fired."""
    from headrank.engine.rule import SafetyValve

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)
    docs = [f"passage {i} about {w}" for i, w in enumerate("solar wind rivers chess pasta music roofs farms".split())]
    ranker = HeadRanker(tiny_ranker.model, tiny_ranker.heads, scoring=tiny_ranker.scoring, window=4,
                        safety_valve=always)
    valved = ranker.rank("a query about solar", docs)
    assert valved[0].windowed and valved.valve_fired
    assert [r.corpus_id for r in valved] == list(range(len(docs)))
    off = ranker.rank("a query about solar", docs, safety_valve=False)
    assert not off.valve_fired and [r.corpus_id for r in off] != list(range(len(docs)))
    fused = ranker.rank("a query about solar", docs, safety_valve=False, fuse_first_stage=1.0)
    assert [r.corpus_id for r in fused] == list(range(len(docs)))


def test_warm_up_runs_every_shape_a_later_request_needs(llama_tokenizer, monkeypatch):
    """With length buckets (on by default on CUDA, forced here on the CPU), ``warm_up`` runs every attention shape
    that a later list within its budget reaches, so no request meets a new kernel shape; the scores are those
    of the exact-length path. Without buckets it runs nothing."""
    import headrank.engine.capture as capture

    loaded = wrap_model(tiny_llama(), llama_tokenizer, name="tiny-llama")
    ranker = HeadRanker(loaded, HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4),
                        scoring=ScoringConfig(calibrate=True))
    assert ranker.warm_up(400) == 0
    exact = [ranker.score(q, DOCS[:n]) for q, n in (("a query", 5), ("a somewhat longer query about mu", 3))]
    seen = set()
    sdpa = capture.sdpa_attention_forward

    def spy(module, query, key, value, mask, **kwargs):
        seen.add((tuple(query.shape), tuple(key.shape), None if mask is None else tuple(mask.shape)))
        return sdpa(module, query, key, value, mask, **kwargs)

    rows_mass = capture.rows_attention_mass

    def spy_rows(query, key, mask, rows, *args, **kwargs):
        seen.add(("rows", tuple(query.shape), tuple(key.shape), tuple(rows.shape)))
        return rows_mass(query, key, mask, rows, *args, **kwargs)

    monkeypatch.setattr(capture, "sdpa_attention_forward", spy)
    monkeypatch.setattr(capture, "rows_attention_mass", spy_rows)
    ranker.length_buckets = True
    assert ranker.warm_up(400) == len(capture.bucket_lengths(400))
    warmed = set(seen)
    for (q, n), want in zip((("a query", 5), ("a somewhat longer query about mu", 3)), exact):
        got = ranker.score(q, DOCS[:n])
        assert all(abs(a - b) < 1e-5 for a, b in zip(got, want))
    assert seen == warmed


def test_warm_up_covers_batches_of_any_size_up_to_max_batch(llama_tokenizer, monkeypatch):
    """With buckets a batch is filled up to a batch size that recurs (3 lists run as 4, copies of the first
    dropped), and ``warm_up(max_batch=...)`` runs every such size: batches of 1 to 5 lists of different lengths
    then meet no shape the warm-up did not run, with each list's scores those of the exact path. Before, batch
    sizes were exact and the warm-up ran one list only, so a service batching 8 met a new shape per size."""
    import headrank.engine.capture as capture

    loaded = wrap_model(tiny_llama(), llama_tokenizer, name="tiny-llama")
    ranker = HeadRanker(loaded, HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4),
                        scoring=ScoringConfig(calibrate=True))
    queries = ["a query", "a somewhat longer query about mu", "rho", "pi and xi", "what is gamma"]
    lists = [DOCS[: 2 + i % 4] for i in range(5)]
    exact = [ranker.score(q, d) for q, d in zip(queries, lists)]
    seen = set()
    sdpa = capture.sdpa_attention_forward

    def spy(module, query, key, value, mask, **kwargs):
        seen.add((tuple(query.shape), tuple(key.shape), None if mask is None else tuple(mask.shape)))
        return sdpa(module, query, key, value, mask, **kwargs)

    monkeypatch.setattr(capture, "sdpa_attention_forward", spy)
    ranker.length_buckets = True
    with pytest.raises(ValueError, match="max_batch"):
        ranker.warm_up(400, max_batch=0)
    assert ranker.warm_up(400, max_batch=5) == len(capture.batch_buckets(5)) * len(capture.bucket_lengths(400))
    warmed = set(seen)
    for size in range(1, 6):
        rankings = ranker.rank_batch(queries[:size], lists[:size], batch_size=size, fuse_first_stage=0.0,
                                     safety_valve=False, return_documents=False)
        for ranking, want in zip(rankings, exact):
            got = sorted(ranking, key=lambda r: r.corpus_id)
            assert [r.corpus_id for r in ranking] == sorted(range(len(want)), key=lambda i: (-want[i], i))
            assert all(abs(r.score - w) < 1e-5 for r, w in zip(got, want))
    assert seen == warmed
    assert {shape[0][0] for shape in warmed} == set(capture.batch_buckets(5)) == {1, 2, 4, 6}


def test_warm_up_skips_shapes_the_device_cannot_hold(llama_tokenizer, monkeypatch, caplog):
    """A warm-up shape that runs out of device memory (a batch of 8 long lists on a small card) must not fail
    the start (the service would never become ready): it is logged, and shapes at least as large are skipped."""
    import logging

    import headrank.engine.ranker as ranker_module
    from headrank.engine.capture import batch_buckets, bucket_lengths

    loaded = wrap_model(tiny_llama(), llama_tokenizer, name="tiny-llama")
    ranker = HeadRanker(loaded, HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4),
                        scoring=ScoringConfig(calibrate=True))
    ranker.length_buckets = True
    real = ranker_module.capture_lists
    ran = []

    def small_card(model, prefixes, *args, **kwargs):  # this "device" holds at most 512 tokens per forward
        if len(prefixes) * (len(prefixes[0]) + 20) > 512:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        ran.append(len(prefixes))
        return real(model, prefixes, *args, **kwargs)

    monkeypatch.setattr(ranker_module, "capture_lists", small_card)
    with caplog.at_level(logging.WARNING, logger="headrank.engine.ranker"):
        runs = ranker.warm_up(400, max_batch=4)
    assert 0 < runs < len(batch_buckets(4)) * len(bucket_lengths(400)) and runs == len(ran)
    assert "do not fit in the device's memory" in caplog.text
    assert ranker.rank("a query", DOCS)  # the ranker still works


def test_a_long_windowed_list_reports_progress_with_an_eta(tiny_base, monkeypatch, caplog):
    """Issue 44: a list of few but long windows printed nothing for minutes (progress began at 20 windows).
    Now a line with the windows done and the time left follows any window after 5 s without a word."""
    import itertools

    import headrank.engine.ranker as ranker_module
    from headrank.engine.ranker import HeadRanker

    ranker = HeadRanker.from_pretrained(str(tiny_base), heads="1:0,2:3", device="cpu", window=4)
    clock = itertools.count(0.0, 3.0)  # every reading of the clock: 3 s later
    monkeypatch.setattr(ranker_module.time, "perf_counter", lambda: next(clock))
    with caplog.at_level("INFO", logger="headrank.engine.ranker"):
        ranker.rank("query about solar", [f"passage {i} about solar and wind" for i in range(10)])
    lines = [r.getMessage() for r in caplog.records if "in windows" in r.getMessage()]
    assert lines and all("s left" in line and "/4 windows" in line for line in lines), lines


def test_ranking_knows_its_query_cuts_to_top_k_and_finds_a_result_by_id(tiny_ranker):
    """Like rerankers' RankedResults: ``query``, ``top_k(k)`` and lookup by the caller's id (else input index)."""
    ids = [f"doc-{i}" for i in range(len(DOCS))]
    ranking = tiny_ranker.rank("a query", DOCS, doc_ids=ids)
    assert ranking.query == "a query"
    best = ranking.top_k(2)
    assert [r.doc_id for r in best] == [r.doc_id for r in ranking[:2]] and best.query == "a query"
    assert best.settings == ranking.settings and ranking.top_k(0) == []
    assert ranking.get("doc-3").corpus_id == 3 and ranking.get("doc-3").text == DOCS[3]
    with pytest.raises(KeyError, match="doc-9"):
        ranking.get("doc-9")
    with pytest.raises(ValueError, match="k must be"):
        ranking.top_k(-1)
    plain = tiny_ranker.rank("a query", DOCS)
    assert plain.get(4).text == DOCS[4]  # no ids given: the input index
    assert tiny_ranker.rank_batch(["q one", "q two"], [DOCS, DOCS])[1].query == "q two"
