"""Captured attention against eager ``output_attentions`` (the reference), truncation, calibration tail."""

import copy

import pytest
import torch
from conftest import data_path, tiny_llama, tiny_mistral, tiny_qwen2, tiny_qwen3

from headrank.engine.capture import CaptureRequest, capture_lists, enable_capture, run_with_capture

HEADS = [(0, 1), (1, 0), (1, 3), (2, 2), (3, 1)]
TOL = 1e-5


def _eager_reference(model, prefix, tail, heads):
    """Mean over the tail rows of eager attention to the prefix tokens, per head: (len(heads), len(prefix))."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    ids = torch.tensor([prefix + tail])
    with torch.no_grad():
        attentions = eager(input_ids=ids, output_attentions=True).attentions
    rows = slice(len(prefix), len(prefix) + len(tail))
    return torch.stack([attentions[layer][0, head, rows, : len(prefix)].mean(0) for layer, head in heads])


def _random_lists(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    prefixes = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (37, 52, 20)]
    tails = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (9, 4, 13)]
    return prefixes, tails


@pytest.mark.parametrize(
    "builder", [tiny_llama, tiny_qwen3, tiny_qwen2, tiny_mistral], ids=["llama", "qwen3", "qwen2", "mistral"]
)
def test_capture_matches_eager_batched_with_padding(builder):
    model = builder(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000)
    out = capture_lists(model, prefixes, [tails], HEADS)[0]
    for b, (prefix, tail) in enumerate(zip(prefixes, tails)):
        reference = _eager_reference(model, prefix, tail, HEADS)
        assert out[b].heads == HEADS
        assert out[b].token_mass.shape == reference.shape
        assert (out[b].token_mass - reference).abs().max().item() <= TOL
        # each row's attention over all keys sums to 1; the prefix holds most of it
        assert 0.0 < out[b].token_mass.sum(-1).max().item() <= 1.0 + 1e-5


@pytest.mark.parametrize("builder", [tiny_llama, tiny_qwen3], ids=["llama", "qwen3"])
def test_single_pass_capture_right_padding(builder):
    """The hook alone, one forward over whole right-padded sequences (boolean padding mask)."""
    model = builder(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000, seed=1)
    seqs = [p + t for p, t in zip(prefixes, tails)]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    rows = torch.tensor([[len(p) + min(i, len(t) - 1) for i in range(13)] for p, t in zip(prefixes, tails)])
    weights = torch.tensor([[1.0 / len(t) if i < len(t) else 0.0 for i in range(13)] for t in tails])
    request = CaptureRequest(heads={1: [0, 3], 3: [1]}, rows=rows, row_weights=weights, stop_after=3)
    with torch.no_grad():
        mass = run_with_capture(model.base_model, ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), request)
    for b, (prefix, tail) in enumerate(zip(prefixes, tails)):
        reference = _eager_reference(model, prefix, tail, [(1, 0), (1, 3), (3, 1)])
        got = torch.cat([mass[1][b], mass[3][b]])[:, : len(prefix)]
        assert (got - reference).abs().max().item() <= TOL


def test_truncation_gives_identical_mass_and_skips_later_layers():
    model = tiny_llama(vocab_size=1000, layers=6)
    enable_capture(model)
    prefixes, tails = _random_lists(1000)
    heads = [(1, 0), (2, 3)]
    ran = []
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, layer in enumerate(model.model.layers)]
    hooks.append(model.model.norm.register_forward_hook(lambda m, i, o: ran.append("norm")))
    with torch.no_grad():
        short = capture_lists(model, prefixes, [tails], heads, truncate=True)[0]
        assert max(k for k in ran if k != "norm") < 2 and "norm" not in ran  # layer 2 stops inside attention
        ran.clear()
        full = capture_lists(model, prefixes, [tails], heads, truncate=False)[0]
        assert 5 in ran and "norm" in ran
    for hook in hooks:
        hook.remove()
    for a, b in zip(short, full):
        assert torch.equal(a.token_mass, b.token_mass)


def test_second_tail_over_cache_equals_a_fresh_prefill():
    """The N/A calibration tail reuses the cached prefix; it must equal a full recompute."""
    model = tiny_qwen3(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000)
    other = [[7, 8, 9, 10]] * len(prefixes)
    with torch.no_grad():
        first, second = capture_lists(model, prefixes, [tails, other], HEADS)
        fresh = capture_lists(model, prefixes, [other], HEADS)[0]
    for a, b in zip(second, fresh):
        assert (a.token_mass - b.token_mass).abs().max().item() <= TOL
    assert not torch.allclose(first[0].token_mass, second[0].token_mass)


def test_capture_without_request_is_plain_sdpa():
    model = tiny_llama(vocab_size=1000)
    ids = torch.randint(5, 1000, (2, 30))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        enable_capture(model)
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)


@pytest.mark.integration
def test_real_model_capture_matches_eager_on_a_dl19_list(real_ranker):
    import json

    hits = json.loads(data_path("msmarco-passage", "dl19", "bm25-top100.json").read_text())[0]
    builder = real_ranker.builder
    prompt = builder.build(hits["query"], [h["content"] for h in hits["hits"][:8]])
    heads = [(layer, head) for layer in (0, 9, 16, 23, 29) for head in range(9)]
    model = real_ranker.model.model
    with torch.no_grad():
        got = capture_lists(model, [prompt.prefix_ids], [[prompt.tail_ids]], heads)[0][0]
    reference = _eager_reference(model, prompt.prefix_ids, prompt.tail_ids, heads)
    assert (got.token_mass - reference).abs().max().item() <= TOL


def _two_step_reference(model, prefixes, tails, heads):
    """The path the one-pass capture replaced (prefill into a KV cache, then each tail over it)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from one_pass_bench import two_step_capture

    return two_step_capture(model, prefixes, tails, heads)


@pytest.mark.parametrize("builder", [tiny_llama, tiny_qwen3, tiny_qwen2], ids=["llama", "qwen3", "qwen2"])
@pytest.mark.parametrize("batched", [False, True], ids=["one-list", "batch"])
def test_one_pass_equals_the_cached_two_step_path(builder, batched):
    """The query tail and the N/A tail run in the same forward as the prefix; every list's mass equals the old
    prefill-then-tails path within 1e-5 in float32, alone and in a batch of lists of different lengths."""
    model = builder(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000, seed=3)
    na = [[11, 12, 13]] * len(prefixes)
    with torch.no_grad():
        if batched:
            got = capture_lists(model, prefixes, [tails, na], HEADS)
            want = _two_step_reference(model, prefixes, [tails, na], HEADS)
        else:
            got = [[], []]
            want = [[], []]
            for b in range(len(prefixes)):
                one = capture_lists(model, [prefixes[b]], [[tails[b]], [na[b]]], HEADS)
                ref = _two_step_reference(model, [prefixes[b]], [[tails[b]], [na[b]]], HEADS)
                for g in range(2):
                    got[g].append(one[g][0])
                    want[g].append(ref[g][0])
    for g in range(2):
        for a, b in zip(got[g], want[g]):
            assert a.token_mass.shape == b.shape
            assert (a.token_mass - b).abs().max().item() <= TOL
    for b, prefix in enumerate(prefixes):  # the N/A tail against eager attention over prefix + N/A only
        reference = _eager_reference(model, prefix, na[b], HEADS)
        assert (got[1][b].token_mass - reference).abs().max().item() <= TOL


def test_one_pass_runs_one_forward():
    """A list with its query and N/A tails costs one forward of the decoder, not three."""
    model = tiny_llama(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000)
    calls = []
    hook = model.model.layers[0].register_forward_pre_hook(lambda m, a: calls.append(1))
    with torch.no_grad():
        capture_lists(model, prefixes[:1], [tails[:1], [[7, 8]]], HEADS)
        capture_lists(model, prefixes, [tails, [[7, 8]] * 3], HEADS)
    hook.remove()
    assert len(calls) == 2


@pytest.mark.parametrize("single", [True, False], ids=["one-list", "batch"])
def test_length_buckets_change_no_result(single):
    """Padding a forward to a bucket length (reused GPU kernels) gives the same masses: trailing padding for one
    list (nothing real attends to later positions), more left padding for a batch."""
    from headrank.engine.capture import batch_bucket, batch_buckets, bucket_length, bucket_lengths

    assert [bucket_length(n) for n in (1, 64, 65, 1000, 1025, 2150, 10470)] == [64, 64, 128, 1024, 1152, 2304, 11264]
    assert all(n <= bucket_length(n) <= max(n + 63, 1.125 * n) for n in range(1, 20000, 37))
    assert bucket_lengths(300) == [64, 128, 192, 256, 320]
    assert [batch_bucket(n) for n in range(1, 14)] == [1, 2, 4, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16]
    assert all(n <= batch_bucket(n) <= 4 * n / 3 for n in range(1, 200))
    assert batch_buckets(8) == [1, 2, 4, 6, 8] and batch_buckets(9) == [1, 2, 4, 6, 8, 12]
    model = tiny_qwen3(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000, seed=5)
    if single:
        prefixes, tails = prefixes[:1], tails[:1]
    na = [[11, 12, 13]] * len(prefixes)
    with torch.no_grad():
        plain = capture_lists(model, prefixes, [tails, na], HEADS)
        padded = capture_lists(model, prefixes, [tails, na], HEADS, bucket=True)
    for g in range(2):
        for a, b in zip(plain[g], padded[g]):
            assert a.token_mass.shape == b.token_mass.shape
            assert (a.token_mass - b.token_mass).abs().max().item() <= TOL
    with torch.no_grad():  # one tail only (no N/A calibration): the padded first piece is the whole forward
        one_tail = capture_lists(model, prefixes, [tails], HEADS, bucket=True)[0]
    for a, b in zip(plain[0], one_tail):
        assert (a.token_mass - b.token_mass).abs().max().item() <= TOL


def test_length_buckets_make_every_attention_shape_recur(monkeypatch):
    """With buckets, two lists of different lengths within one bucket (and queries of different lengths) give
    the same shape to every attention call and to the captured rows: no exact length reaches a kernel, so a
    GPU reuses what the first list (or a warm-up) chose. Exact lengths without buckets."""
    import headrank.engine.capture as capture

    model = tiny_qwen3(vocab_size=1000)
    enable_capture(model)
    seen = []
    sdpa, rows_mass = capture.sdpa_attention_forward, capture.rows_attention_mass

    def spy_sdpa(module, query, key, value, mask, **kwargs):
        seen.append(("sdpa", tuple(query.shape), tuple(key.shape), None if mask is None else tuple(mask.shape)))
        return sdpa(module, query, key, value, mask, **kwargs)

    def spy_rows(query, key, mask, rows, *args, **kwargs):
        seen.append(("rows", tuple(query.shape), tuple(key.shape), tuple(rows.shape)))
        return rows_mass(query, key, mask, rows, *args, **kwargs)

    monkeypatch.setattr(capture, "sdpa_attention_forward", spy_sdpa)
    monkeypatch.setattr(capture, "rows_attention_mass", spy_rows)
    prefixes, tails = _random_lists(1000, seed=7)  # prefix + query: 46 and 56 tokens, one bucket (64)
    shapes = {}
    for bucket in (False, True):
        for b in (0, 1):
            seen.clear()
            with torch.no_grad():
                capture_lists(model, [prefixes[b]], [[tails[b]], [[11, 12, 13]]], HEADS, bucket=bucket)
            shapes[bucket, b] = list(seen)
    assert shapes[True, 0] == shapes[True, 1] and len(shapes[True, 0]) > 0
    assert shapes[False, 0] != shapes[False, 1]


def test_sliding_window_models_are_refused_past_their_window():
    """The one-pass layout computes full attention: a list longer than a sliding window is refused, not misread."""
    model = tiny_mistral(vocab_size=1000)
    model.config.sliding_window = 16
    enable_capture(model)
    prefixes, tails = _random_lists(1000)
    with torch.no_grad(), pytest.raises(NotImplementedError, match="sliding window"):
        capture_lists(model, prefixes[:1], [tails[:1]], HEADS)
    model.config.sliding_window = 4096  # within the window: runs
    with torch.no_grad():
        assert capture_lists(model, prefixes[:1], [tails[:1]], HEADS)[0][0].token_mass.numel() > 0


def test_a_mask_cached_in_inference_mode_does_not_reach_training(monkeypatch):
    """The per-piece masks are cached; one made under ``inference_mode`` (ranking, validation) must not be
    reused by a training forward of the same layout: on CUDA the attention kernels save their mask for backward,
    which an inference tensor refuses."""
    import headrank.engine.capture as capture

    model = tiny_qwen3(vocab_size=1000)
    enable_capture(model)
    prefixes, tails = _random_lists(1000, seed=9)
    na = [[11, 12, 13]] * len(prefixes)
    with torch.inference_mode():
        ranked = capture_lists(model, prefixes, [tails, na], HEADS)
    masks, sdpa = [], capture.sdpa_attention_forward

    def spy(module, query, key, value, mask, **kwargs):
        masks.append(mask)
        return sdpa(module, query, key, value, mask, **kwargs)

    monkeypatch.setattr(capture, "sdpa_attention_forward", spy)
    trained = capture_lists(model, prefixes, [tails, na], HEADS)
    assert any(m is not None for m in masks) and not any(m is not None and m.is_inference() for m in masks)
    sum(m.token_mass.sum() for group in trained for m in group).backward()
    assert all((a.token_mass - b.token_mass.detach()).abs().max() <= TOL for a, b in zip(ranked[1], trained[1]))
