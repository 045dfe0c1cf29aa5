"""Preference alignment: pairs, loss, a few-step training run and checkpoint round trip on a tiny model."""

import json
import random
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_llama, tiny_qwen2

from headrank.engine.checkpoint import is_checkpoint
from headrank.engine.heads import HeadSet
from headrank.engine.prompt import PromptBuilder, PromptSettings
from headrank.engine.ranker import HeadRanker
from headrank.learn import align
from headrank.learn.align import TrainConfig, TrainingList, list_loss, make_pairs, train


def test_pairs():
    grades = [0, 1, 2, 3, 1, 0]
    ref = torch.tensor([0.0, 5.0, 1.0, 0.0, 0.0, 0.0])
    adjacent = make_pairs(grades, ref, "hard-adjacent", 100, random.Random(0))
    assert all(grades[w] - grades[l] == 1 for w, l in adjacent)
    assert len(adjacent) == 2 * 2 + 2 + 1  # 1>0 (x4), 2>1 (x2), 3>2
    margins = [float(ref[w] - ref[l]) for w, l in adjacent]
    assert margins == sorted(margins)  # hardest (smallest reference margin) first
    assert make_pairs(grades, ref, "hard-adjacent", 2, random.Random(0)) == adjacent[:2]
    any_gap = make_pairs(grades, ref, "any-gap", 100, random.Random(0))
    assert (3, 0) in any_gap and len(any_gap) == sum(a > b for a in grades for b in grades)
    assert make_pairs([0, 0, 0], None, "random-adjacent", 5, random.Random(0)) == []


def test_loss_terms():
    item = TrainingList("q", "query", ["a", "b"], [1, 0], prompt=None, ref_logp=torch.log(torch.tensor([0.5, 0.5])),
                        pairs=[(0, 1)])
    logp = torch.log(torch.tensor([0.5, 0.5]))
    no_reg = list_loss(logp, item, TrainConfig(alpha=0.0))
    assert float(no_reg) == pytest.approx(torch.log(torch.tensor(2.0)).item())  # -log sigmoid(0)
    better = list_loss(torch.log(torch.tensor([0.9, 0.1])), item, TrainConfig(alpha=0.0))
    assert float(better) < float(no_reg)
    with_reg = list_loss(logp, item, TrainConfig(alpha=1.0, tau=1.0))
    target = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    kl = float((target * (target.log() - logp)).sum())
    assert float(with_reg) == pytest.approx(float(no_reg) + kl)
    plain = list_loss(torch.log(torch.tensor([0.9, 0.1])), item, TrainConfig(alpha=0.0, use_reference=False))
    assert float(plain) == pytest.approx(float(torch.nn.functional.softplus(-torch.log(torch.tensor(9.0)))))


@pytest.mark.parametrize("bad", [{"pair_mode": "x"}, {"list_order": "x"}, {"list_size": 1}, {"lr": 0},
                                 {"lists_per_query": 0}, {"lists_per_query": 2, "list_order": "first-stage"}])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_several_shuffled_lists_per_query(llama_tokenizer):
    from headrank.learn.align import build_lists

    items, qrels = _toy_data()
    builder = PromptBuilder(llama_tokenizer, PromptSettings(max_passage_tokens=16))
    one = build_lists(items[:2], qrels, builder, TrainConfig(list_size=6), random.Random(0))
    three = build_lists(items[:2], qrels, builder, TrainConfig(list_size=6, lists_per_query=3), random.Random(0))
    assert [t.qid for t in three] == ["0"] * 3 + ["1"] * 3
    assert three[0].docids == one[0].docids  # one list per query draws what the first of several draws
    assert len({tuple(t.docids) for t in three[:3]}) == 3  # new permutations of the same candidates
    assert all(sorted(t.docids) == sorted(d for d, _ in items[0][2]) for t in three[:3])
    for t in three:  # grades follow their passages through the shuffle
        assert t.grades == [qrels[t.qid][d] for d in t.docids]


def _toy_data():
    items, qrels = [], {}
    words = ["solar", "wind", "pasta", "river", "music", "chess", "tiger", "cloud"]
    for q in range(6):
        docs = [(f"{q}-{i}", f"{words[(q + i) % 8]} passage {i} about {words[i % 8]}") for i in range(6)]
        items.append((str(q), f"query about {words[q]}", docs))
        qrels[str(q)] = {f"{q}-{i}": g for i, g in zip(range(6), [2, 0, 1, 0, 1, 0])}
    return items, qrels


def _train(base, llama_tokenizer, out, epochs, resume=False, lr=5e-3, on_phase=None, data=None, on_step=None,
           **settings):
    from headrank.engine.models import load_model

    loaded = load_model(str(base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(base),
                    prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint)
    items, qrels = data or _toy_data()
    config = TrainConfig(epochs=epochs, lr=lr, list_size=6, pairs_per_list=4, patience=5, seed=3, **settings)
    builder = PromptBuilder(loaded.tokenizer, PromptSettings(max_passage_tokens=16))
    return train(loaded.model, builder, heads, items[:4], items[4:], qrels, config, out, pad_id=0,
                 base_model_name=str(base), resume=resume, on_phase=on_phase, on_step=on_step)


def test_few_step_training_checkpoint_round_trip_and_determinism(tiny_base, llama_tokenizer, tmp_path, monkeypatch):
    out = tmp_path / "ckpt"
    phases = []
    result = _train(tiny_base, llama_tokenizer, out, epochs=2, on_phase=lambda *a: phases.append(a))
    history = result["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    # recorded (rounded to 0.1 s: may be 0)
    assert all(h["train_loss"] > 0 for h in history[1:]) and all(h["seconds"] >= 0 for h in history)
    # the passes without a loss report progress: 4 reference lists, then 2 validation lists per evaluation
    assert phases[:4] == [("reference", i, 4) for i in range(1, 5)]
    assert phases[4:] == [("validation", 1, 2), ("validation", 2, 2)] * 3
    assert is_checkpoint(out) and (out / "adapter").is_dir() and (out / "headset.json").is_file()
    assert json.loads((out / "headrank_config.json").read_text())["train_config"]["lr"] == 5e-3
    # deterministic for a given seed
    again = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt2", epochs=2)
    assert [h["train_loss"] for h in again["history"]] == [h["train_loss"] for h in history]
    # resume: one epoch, then continue to two, equals two straight
    _train(tiny_base, llama_tokenizer, tmp_path / "ckpt3", epochs=1)
    resumed = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt3", epochs=2, resume=True)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in history])
    # stopped during epoch 1: the resumed run does not validate the untrained adapter again, and equals two straight
    def stop(epoch, step, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tiny_base, llama_tokenizer, tmp_path / "ckpt4", epochs=2, on_step=stop)
    phases = []
    after_kill = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt4", epochs=2, resume=True,
                        on_phase=lambda *a: phases.append(a))
    assert phases.count(("validation", 2, 2)) == 2  # epochs 1 and 2 only
    assert [h["train_loss"] for h in after_kill["history"]] == pytest.approx([h["train_loss"] for h in history])
    # with head-layer adapters too (the resumed run needs the frozen layers' output again), and the resumed run
    # reuses the recorded reference scores instead of running the reference pass's full-depth forward
    straight = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt5", epochs=2, lora_layers="head-layers")
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_base, llama_tokenizer, tmp_path / "ckpt6", epochs=2, on_step=stop, lora_layers="head-layers")
    with monkeypatch.context() as patched:
        patched.setattr(align, "score_reference", lambda *a: pytest.fail("the reference pass ran again"))
        resumed = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt6", epochs=2, resume=True,
                         lora_layers="head-layers")
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in straight["history"]])
    # killed while saving epoch 1's state: the resumed run starts from epoch 0's state, not from a torn file
    real_save, saves = torch.save, []

    def killed_in_second_save(obj, where, *args, **kwargs):
        saves.append(where)
        if len(saves) == 2:
            Path(where).write_bytes(b"PK torn")
            raise KeyboardInterrupt
        return real_save(obj, where, *args, **kwargs)

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(torch, "save", killed_in_second_save)
        _train(tiny_base, llama_tokenizer, tmp_path / "ckpt7", epochs=2)
    assert Path(saves[1]).name.startswith("training_state.pt")
    after_torn = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt7", epochs=2, resume=True)
    assert [h["train_loss"] for h in after_torn["history"]] == pytest.approx([h["train_loss"] for h in history])
    (tmp_path / "ckpt7" / "training_state.pt").write_bytes(b"PK torn")  # e.g. a disk that filled up
    with pytest.raises(ValueError, match="not a readable training state"):
        _train(tiny_base, llama_tokenizer, tmp_path / "ckpt7", epochs=2, resume=True)
    # resuming with other settings is refused (only the epoch budget may change)
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.005 -> 0.001\)"):
        _train(tiny_base, llama_tokenizer, tmp_path / "ckpt3", epochs=3, resume=True, lr=1e-3)
    # a run that stopped early stays stopped when resumed with a larger epoch budget
    state = torch.load(tmp_path / "ckpt3" / "training_state.pt", weights_only=False)
    torch.save({**state, "since_best": 99}, tmp_path / "ckpt3" / "training_state.pt")
    stopped = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt3", epochs=4, resume=True)
    assert [h["epoch"] for h in stopped["history"]] == [0, 1, 2]
    # the checkpoint loads and ranks; the adapter changed the scores when it was kept
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranker = HeadRanker.from_pretrained(str(out), device="cpu")
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]  # peft's noise is hidden
    assert ranker.method == "heads" and ranker.heads.deepest_layer == 2
    results = ranker.rank("query about solar", ["solar panels", "pasta recipes", "wind farms"])
    assert sorted(r.corpus_id for r in results) == [0, 1, 2]
    with pytest.raises(ValueError, match="brings its own head set"):
        HeadRanker.from_pretrained(str(out), heads=[(0, 0)])


def test_lists_without_pairs_are_skipped_when_the_regularizer_is_off(tiny_base, llama_tokenizer, tmp_path):
    items, qrels = _toy_data()
    qrels["0"] = {d: 0 for d in qrels["0"]}  # a training query whose judged candidates are all non-relevant
    result = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt", epochs=1, data=(items, qrels), alpha=0.0)
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert result["history"][1]["train_loss"] > 0  # the other three lists still trained


@pytest.mark.parametrize("ablation", [{"pair_mode": "random-adjacent"}, {"pair_mode": "any-gap"}, {"alpha": 0.0},
                                      {"use_reference": False}, {"list_order": "first-stage"},
                                      {"target_modules": ("q_proj", "k_proj", "v_proj", "o_proj")}])
def test_every_ablation_recipe_trains_an_epoch(tiny_base, llama_tokenizer, tmp_path, ablation):
    result = _train(tiny_base, llama_tokenizer, tmp_path / "ckpt", epochs=1, **ablation)
    assert result["history"][1]["train_loss"] > 0
    stored = json.loads((tmp_path / "ckpt" / "headrank_config.json").read_text())["train_config"]
    assert all(stored[k] == (list(v) if isinstance(v, tuple) else v) for k, v in ablation.items())


def test_training_changes_only_adapters_on_layers_up_to_l_star(tiny_base):
    from headrank.engine.models import load_model
    from headrank.learn.align import add_adapters

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    peft_model = add_adapters(loaded.model, HeadSet(heads=((1, 0),)), TrainConfig(target_modules=("q_proj", "k_proj")))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert all(".layers.0." in n or ".layers.1." in n for n in trainable)
    assert not any("v_proj" in n for n in trainable)


def test_head_layer_adapters_sit_only_on_the_selected_heads_layers(tiny_base):
    from headrank.engine.models import load_model
    from headrank.learn.align import add_adapters

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (3, 2)))
    peft_model = add_adapters(loaded.model, heads, TrainConfig(lora_layers="head-layers"))
    layers = {int(n.split(".layers.")[1].split(".")[0]) for n, p in peft_model.named_parameters() if p.requires_grad}
    assert layers == {1, 3}
    with pytest.raises(ValueError, match="lora_layers"):
        TrainConfig(lora_layers="some")


def test_resume_check_reads_settings_added_later_as_defaults(tmp_path):
    from dataclasses import asdict

    from headrank.learn.align import check_resumable

    current = asdict(TrainConfig())
    old = {k: v for k, v in current.items() if k != "lora_layers"}  # a state written before the option
    check_resumable(old, current, tmp_path / "training_state.pt")
    with pytest.raises(ValueError, match="lora_layers: 'up-to-l-star' -> 'head-layers'"):
        check_resumable(old, asdict(TrainConfig(lora_layers="head-layers")), tmp_path / "training_state.pt")


def test_a_checkpoint_that_kept_epoch_0_scores_like_its_head_set_alone(tiny_base, tmp_path):
    """reproduce.sh skips evaluating such a checkpoint and reports the untrained rows for it."""
    from headrank.engine.checkpoint import save_adapter, write_config
    from headrank.engine.models import load_model
    from headrank.learn.align import add_adapters

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(tiny_base),
                    prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint)
    out = tmp_path / "ckpt"
    out.mkdir()
    save_adapter(add_adapters(loaded.model, heads, TrainConfig()), out)  # the zero adapter of epoch 0
    write_config(out, heads, {}, str(tiny_base), [{"epoch": 0, "train_loss": None, "val_ndcg@10": 0.5}])
    docs = ["solar panels on roofs", "pasta recipes", "wind farms at sea", "river music"]
    kept = HeadRanker.from_pretrained(str(out), device="cpu").score("query about solar", docs)
    alone = HeadRanker.from_pretrained(str(tiny_base), heads=heads, device="cpu").score("query about solar", docs)
    assert kept == alone


@pytest.mark.parametrize("make", [tiny_llama, tiny_qwen2])
def test_frozen_layer_cache_gives_the_full_forwards_scores_and_gradients(make, llama_tokenizer):
    """With head-layer adapters, training runs only the head layers on a recorded input; same numbers."""
    from headrank.engine.capture import enable_capture
    from headrank.learn.align import add_adapters, frozen_layers, list_logprobs, score_reference

    model = make(vocab_size=49152)
    enable_capture(model)
    heads = HeadSet(heads=((2, 0), (3, 1)), num_layers=4, num_heads=4)
    config = TrainConfig(lora_layers="head-layers")
    peft_model = add_adapters(model, heads, config)
    assert frozen_layers(peft_model, heads, config) == 2
    assert frozen_layers(peft_model, heads, TrainConfig()) == 0  # adapters from layer 0: nothing frozen
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # a non-zero adapter, as after some training
            torch.nn.init.normal_(p, std=0.2)
    items, qrels = _toy_data()
    builder = PromptBuilder(llama_tokenizer, PromptSettings(max_passage_tokens=16))
    from headrank.learn.align import build_lists

    item = build_lists(items[:1], qrels, builder, TrainConfig(list_size=6), random.Random(0))[0]
    full = list_logprobs(peft_model, [item], heads, pad_id=0)[0]
    with torch.no_grad(), peft_model.disable_adapter():
        score_reference(peft_model, item, heads, 0, first_adapter=2)
    reference = item.ref_logp
    assert item.frozen_hidden.shape[1] == len(item.prompt.prefix_ids) + len(item.prompt.tail_ids)
    fast = list_logprobs(peft_model, [item], heads, pad_id=0, start=2)[0]
    assert torch.allclose(fast, full, atol=1e-5) and not torch.allclose(fast, reference, atol=1e-3)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    grads = []
    for logp in (full, fast):
        grad = torch.autograd.grad(logp[0], params, allow_unused=True)
        grads.append(torch.cat([g.flatten() for g in grad if g is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4) and grads[0].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot start the forward at layer 3"):
        list_logprobs(peft_model, [item], heads, pad_id=0, start=3)


def test_frozen_layers_need_one_mask_type_for_all_layers():
    from headrank.engine.capture import can_skip_layers

    model = tiny_qwen2()
    assert can_skip_layers(model, 2) and not can_skip_layers(model, 0)
    model.config.layer_types = ["full_attention", "sliding_attention"] * 2
    assert not can_skip_layers(model, 2)


def test_head_layer_training_with_the_frozen_cache_matches_the_full_forward(tiny_base, llama_tokenizer, tmp_path,
                                                                           monkeypatch):
    settings = {"lora_layers": "head-layers", "lists_per_query": 2}
    cached = _train(tiny_base, llama_tokenizer, tmp_path / "cached", epochs=2, **settings)["history"]
    monkeypatch.setattr("headrank.learn.align.frozen_layers", lambda *a: 0)
    full = _train(tiny_base, llama_tokenizer, tmp_path / "full", epochs=2, **settings)["history"]
    assert [h["train_loss"] for h in cached[1:]] == pytest.approx([h["train_loss"] for h in full[1:]], rel=1e-4)
    assert [h["val_ndcg@10"] for h in cached] == pytest.approx([h["val_ndcg@10"] for h in full])


# ---------------------------------------------------------------- more than one training domain


@pytest.mark.parametrize("spec, expected", [
    ("nfcorpus:train", ("nfcorpus", "train", None, None)),
    ("nfcorpus:train:120", ("nfcorpus", "train", 120, None)),
    ("nfcorpus:dev:@ids.txt", ("nfcorpus", "dev", None, "ids.txt")),
])
def test_data_sources_parse(spec, expected):
    from headrank.learn.align import parse_source

    s = parse_source(spec)
    assert (s.benchmark, s.split, s.count, None if s.query_file is None else str(s.query_file)) == expected


@pytest.mark.parametrize("spec", ["nfcorpus", ":train", "nfcorpus:", "nfcorpus:train:0", "nfcorpus:train:x",
                                  "nfcorpus:train:@", "nfcorpus:train:-3"])
def test_bad_data_sources_are_refused(spec):
    with pytest.raises(ValueError, match="BENCH:SPLIT|whole number"):
        TrainConfig(extra_train=(spec,))


def test_validation_is_the_mean_over_domains(tiny_base, llama_tokenizer):
    from headrank.engine.models import load_model
    from headrank.learn.align import build_lists, validation_ndcg

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4)
    builder = PromptBuilder(loaded.tokenizer, PromptSettings(max_passage_tokens=16))
    items, qrels = _toy_data()
    domains = {"0": "a", "1": "b", "2": "b", "3": "b"}
    config = TrainConfig(list_size=6, list_order="first-stage")
    lists = build_lists(items[:4], qrels, builder, config, random.Random(0), domains)
    assert [t.domain for t in lists] == ["a", "b", "b", "b"]

    def score(chosen):
        return validation_ndcg(loaded.model, chosen, heads, builder, qrels, pad_id=0)

    one = [score([t]) for t in lists]
    assert len(set(one)) > 1  # the lists differ, so the two averages differ
    assert score(lists) == pytest.approx((one[0] + sum(one[1:]) / 3) / 2)
    plain = build_lists(items[:4], qrels, builder, config, random.Random(0))  # no domains: a plain mean
    assert score(plain) == pytest.approx(sum(one) / 4)


def _two_domain_setup(tiny_base, toy_folder, tmp_path):
    import shutil

    from headrank.engine.models import load_model

    other = tmp_path / "other-domain"
    shutil.copytree(toy_folder, other)
    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    head_path = tmp_path / "heads.json"
    HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(tiny_base),
            prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint,
            selection={"train_queries": ["0", "1", "2"], "val_queries": ["3", "4"]}).save(head_path)
    (tmp_path / "train-ids.txt").write_text("0\n1\n5\n")
    (tmp_path / "val-ids.txt").write_text("6\n7\n")
    base = ["train", "--heads", str(head_path), "--benchmark", str(toy_folder), "--epochs", "1", "--lr", "5e-3",
            "--list-size", "6", "--pairs", "4", "--device", "cpu"]
    return other, base


def test_training_on_two_domains_from_the_cli(tiny_base, toy_folder, tmp_path):
    from typer.testing import CliRunner

    from headrank.cli import app

    other, base = _two_domain_setup(tiny_base, toy_folder, tmp_path)
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(app, base + ["--out", str(out), "--also-train", f"{other}:test:@{tmp_path}/train-ids.txt",
                                             "--also-val", f"{other}:test:@{tmp_path}/val-ids.txt"])
    assert result.exit_code == 0, result.output
    assert "reference pass: 6 training lists" in result.output  # 3 of the head set's split + 3 of the other domain
    assert "reference: 6/6 (" in result.output  # not a terminal (a log file): plain progress lines instead of a bar
    config = json.loads((out / "headrank_config.json").read_text())
    assert config["train_config"]["extra_train"] == [f"{other}:test:@{tmp_path}/train-ids.txt"]
    assert len(config["history"]) == 2 and 0.0 <= config["history"][0]["val_ndcg@10"] <= 1.0
    for row in config["history"]:  # each domain's validation score is kept, and the score is their mean
        assert sorted(row["val_by_domain"]) == ["other-domain", "toy"]
        assert row["val_ndcg@10"] == pytest.approx(sum(row["val_by_domain"].values()) / 2)
    assert HeadRanker.from_pretrained(str(out), device="cpu").rank("query about solar", ["solar", "pasta"])
    # resuming with other data is refused like any other setting change
    again = CliRunner().invoke(app, base + ["--out", str(out), "--resume", "--epochs", "2",
                                            "--also-train", f"{other}:test:2"])
    assert again.exit_code != 0 and "extra_train" in again.output


@pytest.mark.parametrize("extra, message", [
    (["--also-train", "{other}:test:@{tmp}/train-ids.txt", "--also-val", "{other}:test:@{tmp}/train-ids.txt"],
     "both training and validation queries"),
    (["--also-train", "{toy}:test:@{tmp}/bad-side.txt"], "other side of the head set's"),
    (["--also-train", "dl19:test:5"], "reporting set"),
    (["--also-train", "nfcorpus:test:5"], "reporting set"),
    (["--also-val", "{other}:test:@{tmp}/missing.txt"], "missing.txt"),
    (["--also-val", "{other}:test:@{tmp}/unknown-ids.txt"], "not judged queries"),
    (["--also-train", "nfcorpus"], "BENCH:SPLIT"),
])
def test_bad_extra_training_data_fails_clearly(tiny_base, toy_folder, tmp_path, extra, message):
    from typer.testing import CliRunner

    from headrank.cli import app

    other, base = _two_domain_setup(tiny_base, toy_folder, tmp_path)
    (tmp_path / "bad-side.txt").write_text("3\n")  # a validation query of the head set's own split
    (tmp_path / "unknown-ids.txt").write_text("no-such-query\n")
    args = [a.format(other=other, tmp=tmp_path, toy=toy_folder) for a in extra]
    result = CliRunner().invoke(app, base + ["--out", str(tmp_path / "x")] + args)
    assert result.exit_code != 0 and not isinstance(result.exception, (TypeError, KeyError, AttributeError))
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "x" / "adapter").exists()


def test_reference_key_changes_with_everything_the_reference_scores_depend_on():
    """A resumed run reuses saved reference scores only for the same model, head set and list content."""
    from headrank.engine.prompt import ListwisePrompt
    from headrank.learn.align import reference_key

    def item(docids=("a", "b"), prefix=(1, 2, 3)):
        prompt = ListwisePrompt(prefix_ids=list(prefix), tail_ids=[4, 5], passage_spans=[(0, 1), (1, 2)],
                                passage_texts=["[1] a", "[2] b"])
        return TrainingList(qid="q", query="query", docids=list(docids), grades=[1, 0], prompt=prompt)

    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model="m")
    key = reference_key(item(), heads, "model-a")
    assert key == reference_key(item(), heads, "model-a")
    assert key != reference_key(item(), heads, "model-b")
    assert key != reference_key(item(docids=("b", "a")), heads, "model-a")  # another permutation
    assert key != reference_key(item(prefix=(1, 2, 9)), heads, "model-a")
    assert key != reference_key(item(), HeadSet(heads=((1, 0),), num_layers=4, num_heads=4, model="m"), "model-a")
    assert key != reference_key(item(), HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model="m",
                                                weights=(1.0, 2.0)), "model-a")
