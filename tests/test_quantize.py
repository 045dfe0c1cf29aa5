"""int8 inference on CPU (headrank.engine.quantize): the layer, the model switch, the cache, the settings' checks."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from conftest import tiny_llama, tiny_qwen2
from typer.testing import CliRunner

from headrank.engine.quantize import (
    Int8Linear,
    cache_key,
    check_quantize,
    check_quantize_device,
    quantize_model,
    quantize_rows,
    weights_identity,
)

DOCS = ["solar panels turn sunlight into electricity", "pasta is boiled in salted water",
        "wind turbines generate power from moving air", "the river floods every spring", "", "chess openings"]


def test_int8_linear_matches_float_within_quantization_error():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40, bias=True)
    x = torch.randn(3, 7, 96)
    want = linear(x)
    got = Int8Linear.from_linear(linear)(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    # per-token activations and per-channel weights, 8 bits each: about 1% of the output's scale
    assert (got - want).abs().max() <= 0.02 * want.abs().max()
    assert not torch.equal(got, want)  # it is really int8 arithmetic, not the float layer


def test_quantize_rows_has_one_scale_per_row():
    x = torch.tensor([[1.0, -2.0, 0.5], [100.0, 0.0, -50.0]])
    q, scale = quantize_rows(x)
    assert q.dtype == torch.int8 and scale.shape == (2, 1)
    assert q[0].abs().max() == 127 and q[1].abs().max() == 127  # each row uses the full range
    assert torch.allclose(q.float() * scale, x, atol=float(scale.max()))


def test_layers_reading_one_input_quantize_it_once(monkeypatch):
    model = tiny_qwen2(layers=2)
    calls = []
    import headrank.engine.quantize as quantize

    real = quantize.quantize_rows
    monkeypatch.setattr(quantize, "quantize_rows", lambda x: calls.append(x.shape) or real(x))
    quantize_model(model, [0, 1], parts=("mlp", "self_attn"))
    with torch.inference_mode():
        model.model(torch.arange(9).unsqueeze(0))
    # per layer: q/k/v share one input, gate/up share one, o and down have their own: 4 quantizations, not 7
    assert len(calls) == 8


def test_only_the_layers_that_run_are_quantized_and_only_the_mlp_by_default():
    model = tiny_llama(layers=4)
    report = quantize_model(model, range(3))
    layers = model.model.layers
    assert isinstance(layers[2].mlp.down_proj, Int8Linear) and isinstance(layers[0].mlp.gate_proj, Int8Linear)
    assert isinstance(layers[3].mlp.down_proj, torch.nn.Linear)  # below the cut nothing runs
    assert isinstance(layers[0].self_attn.q_proj, torch.nn.Linear)  # q.k stays float32
    assert report.linears == 9 and report.layers == 3 and not report.from_cache
    with pytest.raises(ValueError, match="outside the model"):
        quantize_model(tiny_llama(layers=4), [4])
    with pytest.raises(ValueError, match="parts must be"):
        quantize_model(tiny_llama(layers=4), [0], parts=("lm_head",))


@pytest.mark.parametrize("value", ["int4", "INT8", 8, True, "fp8"])
def test_bad_quantize_values_are_refused(value):
    with pytest.raises(ValueError, match="quantize must be one of none, int8"):
        check_quantize(value)


def test_int8_is_cpu_and_float32_only():
    check_quantize_device("int8", torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="CPU only"):
        check_quantize_device("int8", torch.device("cuda"), torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        check_quantize_device("int8", torch.device("cpu"), torch.bfloat16)
    check_quantize_device(None, torch.device("cuda"))  # float on a GPU: nothing to check


def test_bad_quantize_fails_before_any_model_loads(monkeypatch):
    from headrank.engine import ranker as ranker_module
    from headrank.engine.ranker import HeadRanker

    monkeypatch.setattr(ranker_module, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match="quantize must be one of"):
        HeadRanker.from_pretrained("smollm2-135m-instruct", method="icr", quantize="int4")
    with pytest.raises(ValueError, match="float32"):
        HeadRanker.from_pretrained("smollm2-135m-instruct", method="icr", quantize="int8", dtype="bfloat16")


def _ranker(base, quantize=None):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(str(base), heads=[(1, 0), (2, 3)], device="cpu", dtype="float32",
                                      quantize=quantize)


def test_int8_scores_equal_float32_scores_within_tolerance(tiny_base, isolated_home):
    float_scores = _ranker(tiny_base).score("solar power", DOCS)
    int8 = _ranker(tiny_base, "int8")
    assert int8.quantize == "int8" and "int8" in repr(int8)
    int8_scores = int8.score("solar power", DOCS)
    assert int8_scores[4] == float("-inf")  # the empty passage never reaches the model in either mode
    kept = [i for i in range(len(DOCS)) if DOCS[i]]
    spread = max(float_scores[i] for i in kept) - min(float_scores[i] for i in kept)
    worst = max(abs(float_scores[i] - int8_scores[i]) for i in kept)
    assert worst <= 0.05 * spread  # the stated tolerance: 5% of the list's score spread
    assert worst > 0


def test_a_cached_int8_model_is_reused_and_keyed_on_its_weights(tiny_base, isolated_home, caplog):
    first = _ranker(tiny_base, "int8")
    assert first._quantize_report.from_cache is False
    cache = list((isolated_home / "int8").glob("*.safetensors"))
    assert len(cache) == 1
    with caplog.at_level(logging.INFO, logger="headrank.engine.quantize"):
        second = _ranker(tiny_base, "int8")
    assert second._quantize_report.from_cache is True and "read from the cache" in caplog.text
    assert second.score("solar power", DOCS) == first.score("solar power", DOCS)
    # other weights in the same folder (a newer file) make another key: never the old int8 weights
    weights = next(tiny_base.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _ranker(tiny_base, "int8")._quantize_report.from_cache is False
    assert len(list((isolated_home / "int8").glob("*.safetensors"))) == 2


def test_a_model_passed_in_memory_is_never_served_from_the_cache(tiny_base, isolated_home):
    """A LoadedModel may have been changed after loading (an adapter merged, weights trained): its folder's files
    do not identify its weights, so its int8 layers are computed from the weights themselves."""
    from headrank.engine.models import load_model
    from headrank.engine.ranker import HeadRanker

    _ranker(tiny_base, "int8")  # fills the cache for the folder's weights
    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    with torch.no_grad():
        loaded.model.model.layers[0].mlp.down_proj.weight.mul_(2.0)
    ranker = HeadRanker.from_pretrained(loaded, heads=[(1, 0), (2, 3)], quantize="int8")
    assert ranker._quantize_report.from_cache is False and ranker._quantize_report.cache_path is None


def test_an_unreadable_cache_is_rebuilt(tiny_base, isolated_home, caplog):
    _ranker(tiny_base, "int8")
    cache = next((isolated_home / "int8").glob("*.safetensors"))
    cache.write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING, logger="headrank.engine.quantize"):
        again = _ranker(tiny_base, "int8")
    assert "unreadable" in caplog.text and again._quantize_report.from_cache is False
    assert _ranker(tiny_base, "int8")._quantize_report.from_cache is True


def test_cache_key_depends_on_weights_layers_and_parts(tiny_base):
    identity = weights_identity(tiny_base)
    assert identity is not None and weights_identity("owner/hub-id") is None
    keys = {cache_key(identity, range(3)), cache_key(identity, range(4)), cache_key(identity, range(3), ("mlp", "self_attn")),
            cache_key({**identity, "adapter": "abc"}, range(3))}
    assert len(keys) == 4 and cache_key(None, range(3)) is None


def test_a_preset_setting_turns_int8_on_for_the_cpu(tiny_base, tmp_path, isolated_home):
    from conftest import make_tiny_preset

    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.presets import load_preset
    from headrank.engine.ranker import HeadRanker

    preset = make_tiny_preset(tiny_base, tmp_path / "tiny-preset", InferenceSettings())
    config = json.loads((preset / "headrank_config.json").read_text())
    assert HeadRanker.from_pretrained(str(preset), device="cpu").quantize is None
    (preset / "headrank_config.json").write_text(json.dumps({**config, "quantize": "int8"}))
    assert load_preset(preset).quantize == "int8"
    assert HeadRanker.from_pretrained(str(preset), device="cpu").quantize == "int8"
    assert HeadRanker.from_pretrained(str(preset), device="cpu", quantize="none").quantize is None
    (preset / "headrank_config.json").write_text(json.dumps({**config, "quantize": "int4"}))
    with pytest.raises(ValueError, match="quantize must be one of"):
        load_preset(preset)


def test_cli_refuses_bad_quantize_before_loading(tmp_path):
    from headrank.cli import app

    path = tmp_path / "list.tsv"
    path.write_text("d1\tsolar panels\nd2\tpasta\n")
    runner = CliRunner()
    bad = runner.invoke(app, ["rerank", str(path), "-q", "solar", "--quantize", "int4"])
    assert bad.exit_code == 2 and "int4" in bad.output and "Traceback" not in bad.output
    baseline = runner.invoke(app, ["rerank", str(path), "-q", "solar", "--method", "pointwise", "--quantize", "int8"])
    assert baseline.exit_code != 0 and "applies to HeadRank presets, heads and icr" in baseline.output
    dtype = runner.invoke(app, ["rerank", str(path), "-q", "solar", "--quantize", "int8", "--dtype", "bfloat16"])
    assert dtype.exit_code != 0 and "float32" in dtype.output and "Traceback" not in dtype.output
    threads = runner.invoke(app, ["rerank", str(path), "-q", "solar", "--threads", "0"])
    assert threads.exit_code == 2 and "threads" in threads.output.lower()


def test_threads_from_the_environment(monkeypatch):
    from headrank.engine.models import threads_from_env

    monkeypatch.setenv("HEADRANK_THREADS", "3")
    assert threads_from_env() == 3
    monkeypatch.setenv("HEADRANK_THREADS", "")
    assert threads_from_env() is None
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("HEADRANK_THREADS", bad)
        with pytest.raises(ValueError, match="HEADRANK_THREADS must be a whole number"):
            threads_from_env()


def test_cli_rerank_in_int8_on_a_tiny_model(tiny_base, tmp_path, isolated_home):
    from headrank.cli import app

    path = tmp_path / "list.tsv"
    path.write_text("".join(f"d{i}\t{d}\n" for i, d in enumerate(DOCS) if d))
    runner = CliRunner()
    args = ["rerank", str(path), "-q", "solar power", "--model", str(tiny_base), "--heads", "1:0,2:3", "-o", "json",
            "--threads", "1"]
    result = runner.invoke(app, [*args, "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout[result.stdout.index("{"):])["results"]) == 5
    assert list((isolated_home / "int8").glob("*.safetensors"))


def test_evaluate_run_key_names_int8():
    from headrank.eval.evaluate import EvalSettings

    plain = EvalSettings(method="heads", model="m")
    assert EvalSettings(method="heads", model="m", quantize="none").key == plain.key  # old run folders stay valid
    assert EvalSettings(method="heads", model="m", quantize="int8").key != plain.key


def test_batch_spec_fingerprint_names_int8():
    from headrank.batch import RankerSpec

    assert "quantize" not in RankerSpec("m").fingerprint()
    assert RankerSpec("m", quantize="int8").fingerprint()["quantize"] == "int8"


@pytest.mark.integration
def test_real_default_ranks_the_demo_list_identically_in_int8(home_with_real_models):
    """The default preset in int8 against float32 on the demo's list (BM25 order, as the demo feeds it): the same
    order fused (the preset's settings) and by the heads alone."""
    from headrank.cli.demo import DEMO_PASSAGES, DEMO_QUERY
    from headrank.data.bm25 import bm25_search
    from headrank.engine.ranker import HeadRanker
    from headrank.engine.rule import final_scores

    corpus = {str(i): p for i, p in enumerate(DEMO_PASSAGES)}
    docs = [corpus[d] for d, _ in bm25_search(corpus, {"q": DEMO_QUERY}, len(corpus))["q"]]
    float32 = HeadRanker.from_pretrained(device="cpu", quantize="none")
    int8 = HeadRanker.from_pretrained(device="cpu", quantize="int8")
    assert int8.quantize == "int8" and float32.quantize is None
    assert any((home_with_real_models / "int8").iterdir())  # quantized here, in the fresh cache
    # one forward each (int8 is slow on CPUs without VNNI): the heads' scores, then the preset's fusion and valve
    raw = [r.score(DEMO_QUERY, docs, fuse_first_stage=0, safety_valve=False) for r in (float32, int8)]
    for fuse, valve in ((None, None), (int8.fuse_first_stage, int8.safety_valve)):
        a, b = (final_scores(s, fuse, valve).scores for s in raw)
        assert sorted(range(len(docs)), key=lambda i: -a[i]) == sorted(range(len(docs)), key=lambda i: -b[i])


def test_int8_warns_where_its_kernel_is_slower_than_float32(monkeypatch, caplog):
    """On a CPU without fast int8 dot products (AVX2 only) int8 ranking is many times slower than float32: the
    quantize step says so instead of silently making a ranker slower."""
    import logging

    from headrank.engine import quantize

    ratio = quantize.int8_kernel_ratio()
    assert ratio > 0 and ratio == quantize.int8_kernel_ratio()  # measured once per process
    for measured, warns in ((35.0, True), (0.3, False)):
        monkeypatch.setattr(quantize, "int8_kernel_ratio", lambda measured=measured: measured)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="headrank.engine.quantize"):
            assert quantize.warn_if_int8_is_slow() == measured
        assert ("slower than float32" in caplog.text) == warns
