"""Head selection: the fast nDCG against ir-measures, entropy, the sweep, artifacts, CLI."""

import json
import random

import ir_measures
import pytest
import torch
from conftest import data_path, tiny_llama
from typer.testing import CliRunner

from headrank.cli import app
from headrank.engine.heads import HeadSet, HeadSetMismatchError
from headrank.engine.models import wrap_model
from headrank.engine.ranker import HeadRanker
from headrank.learn.selection import (
    HeadObservations,
    focus_entropy,
    ndcg_at_10,
    observe_heads,
    select_top,
    split_queries,
    sweep_selection,
)


def test_fast_ndcg_equals_ir_measures():
    rng = random.Random(3)
    for trial in range(20):
        n = rng.choice([5, 12, 20])
        docids = [f"d{i}" for i in range(n)]
        judged = {d: rng.choice([0, 0, 1, 2, 3]) for d in rng.sample(docids, k=n // 2)}
        judged["extra-not-retrieved"] = rng.choice([0, 2, 3])  # counts in the ideal DCG, as in trec_eval
        scores = torch.tensor([[rng.random() for _ in range(n)]])
        ours = float(ndcg_at_10(scores, docids, judged)[0])
        run = [ir_measures.ScoredDoc("q", d, float(s)) for d, s in zip(docids, scores[0])]
        qrels = [ir_measures.Qrel("q", d, g) for d, g in judged.items()]
        if not any(g > 0 for g in judged.values()):
            continue
        expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10]
        assert ours == pytest.approx(expected, abs=1e-5), trial


def test_entropy_and_selection():
    obs = HeadObservations(
        heads=[(0, 0), (0, 1), (1, 0)], qids=["q"], docids=[["a", "b", "c", "d"]],
        raw=[torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.5, 0.5]])],
        calibrated=[torch.zeros(3, 4)],
    )
    e = focus_entropy(obs)
    assert e[0] == pytest.approx(1.0) and e[1] < 1e-6 and 0 < e[2] < 1
    d = torch.tensor([0.5, 0.45, 0.3])
    assert select_top(d, e, 0.0, 2) == [0, 1]
    assert select_top(d, e, 1.0, 2) == [1, 0]  # the entropy term puts the focused head first


def test_split_is_deterministic_and_disjoint():
    qids = [str(i) for i in range(53)]
    train, val = split_queries(qids, 0.25, seed=0)
    assert (train, val) == split_queries(list(reversed(qids)), 0.25, seed=0)
    assert len(val) == 13 and not set(train) & set(val) and len(train) + len(val) == 53
    assert split_queries(qids, 0.25, seed=1) != (train, val)
    with pytest.raises(ValueError):
        split_queries(["a"], 0.5, 0)


def _synthetic(n_queries=8, seed=0):
    """Head 2 knows relevance, head 0 is noise, head 1 prefers the first passages (position)."""
    g = torch.Generator().manual_seed(seed)
    qrels, raw, docids, qids = {}, [], [], []
    for q in range(n_queries):
        ids = [f"{q}-{i}" for i in range(10)]
        grades = torch.randint(0, 3, (10,), generator=g)
        qrels[str(q)] = {d: int(x) for d, x in zip(ids, grades)}
        noise = torch.rand(10, generator=g)
        position = torch.linspace(1, 0, 10)
        knows = grades.float() + 0.1 * torch.rand(10, generator=g)
        raw.append(torch.stack([noise, position, knows]) + 0.01)
        docids.append(ids)
        qids.append(str(q))
    obs = HeadObservations([(0, 0), (0, 1), (3, 2)], qids, docids, raw, raw)
    return obs, qrels


def test_sweep_picks_the_informative_head():
    obs, qrels = _synthetic()
    train, val = obs.subset(obs.qids[:6]), obs.subset(obs.qids[6:])
    selection = sweep_selection(train, val, qrels, lambdas=[0.0, 1.0], ks=[1, 2, 3])
    assert selection.heads == [(3, 2)] and selection.k == 1
    assert len(selection.sweep) == 6 and selection.val_ndcg > 0.8
    with pytest.raises(ValueError):
        sweep_selection(train, val, qrels, lambdas=[], ks=[1])


def test_max_depth_keeps_the_head_set_shallow():
    obs, qrels = _synthetic()
    train, val = obs.subset(obs.qids[:6]), obs.subset(obs.qids[6:])
    shallow = sweep_selection(train, val, qrels, lambdas=[0.0], ks=[1, 2], max_depth=3)
    assert all(layer < 3 for layer, _ in shallow.heads) and (3, 2) not in shallow.heads
    assert shallow.val_ndcg < sweep_selection(train, val, qrels, lambdas=[0.0], ks=[1]).val_ndcg
    with pytest.raises(ValueError, match="first 0 layers"):
        sweep_selection(train, val, qrels, lambdas=[0.0], ks=[1], max_depth=0)


def test_observe_heads_on_tiny_model(llama_tokenizer, tmp_path):
    ranker = HeadRanker.from_pretrained(wrap_model(tiny_llama(), llama_tokenizer), method="icr")
    lists = [("q1", "first query", [("a", "alpha beta"), ("b", "gamma delta")]),
             ("q2", "second", [("c", "epsilon"), ("d", "zeta"), ("x", "  "), ("e", "eta theta")])]
    obs = observe_heads(ranker, lists)
    assert obs.raw[0].shape == (16, 2) and obs.raw[1].shape == (16, 3)
    assert obs.docids[1] == ["c", "d", "e"]  # the empty passage is not shown to the model
    assert torch.all(obs.raw[0] > 0)
    assert not torch.allclose(obs.raw[0], obs.calibrated[0])
    path = tmp_path / "obs.pt"
    obs.save(path)
    again = HeadObservations.load(path)
    assert again.heads == obs.heads and torch.equal(again.raw[1], obs.raw[1])
    # the ranker's head-set scores are the sum of the observed per-head masses
    heads = HeadSet(heads=((1, 0), (3, 2)))
    scores = HeadRanker(ranker.model, heads).score("first query", ["alpha beta", "gamma delta"])
    idx = [obs.heads.index(h) for h in heads.heads]
    assert scores == pytest.approx(obs.calibrated[0][idx].sum(0).tolist(), abs=1e-6)


def test_head_set_fingerprint_is_checked(llama_tokenizer):
    loaded = wrap_model(tiny_llama(), llama_tokenizer)
    HeadRanker(loaded, HeadSet(heads=((1, 1),), fingerprint=loaded.fingerprint))
    with pytest.raises(HeadSetMismatchError, match="weights"):
        HeadRanker(loaded, HeadSet(heads=((1, 1),), fingerprint="0123456789abcdef", model="other"))


@pytest.mark.integration
def test_select_heads_cli_on_a_small_training_folder(default_model_dir, tmp_path):
    entries = json.loads(data_path("msmarco-passage", "dl21", "bm25-top100.json").read_text())
    qrels_lines = data_path("msmarco-passage", "dl21", "qrels.txt").read_text().splitlines()
    folder = tmp_path / "mini-dl21"
    folder.mkdir()
    picked = entries[:6]
    for e in picked:
        e["hits"] = e["hits"][:6]
    (folder / "candidates.json").write_text(json.dumps(picked))
    qids = {str(e["hits"][0]["qid"]) for e in picked}
    (folder / "qrels.txt").write_text("\n".join(l for l in qrels_lines if l.split()[0] in qids) + "\n")
    out = tmp_path / "heads.json"
    args = ["select-heads", "--out", str(out), "--benchmark", str(folder), "--depth", "6", "--ks", "2,4",
            "--lambdas", "0,0.5", "--val-fraction", "0.34", "--max-passage-tokens", "40", "--cache", str(tmp_path / "c"),
            "--order", "shuffled", "--model", "smollm2-135m-instruct"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    head_set = HeadSet.load(out)
    assert head_set.selection["order"] == "shuffled"
    assert len(list((tmp_path / "c").glob("heads-*-shuffled0-*.pt"))) == 1  # order-specific observation cache
    assert head_set.num_layers == 30 and head_set.fingerprint and len(head_set.heads) in (2, 4)
    assert head_set.prompt["max_passage_tokens"] == 40 and len(head_set.selection["sweep"]) == 4
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # no --model: the head set names its model, which replaces the default preset
    ranked = CliRunner().invoke(app, ["rerank", str(folder / "candidates.json"), "--heads", str(out), "-o", "json"])
    assert ranked.exit_code == 0, ranked.output
    assert len(json.loads(ranked.stdout)["results"]) == 6


def test_selection_list_orders():
    from headrank.learn.selection import order_lists

    lists = [("q1", "a", [(f"d{i}", f"t{i}") for i in range(8)]), ("q2", "b", [(f"e{i}", f"u{i}") for i in range(8)])]
    assert order_lists(lists, "first-stage") == lists
    assert [d for d, _ in order_lists(lists, "reversed")[0][2]] == [f"d{i}" for i in reversed(range(8))]
    shuffled = order_lists(lists, "shuffled", seed=0)
    assert shuffled == order_lists(lists, "shuffled", seed=0)  # fixed per query and seed
    assert shuffled != order_lists(lists, "shuffled", seed=1)
    assert all(sorted(a[2]) == sorted(b[2]) and a[2] != b[2] for a, b in zip(shuffled, lists))
    with pytest.raises(ValueError, match="order must be one of"):
        order_lists(lists, "random")


def test_observation_cache_is_keyed_on_the_lists_read(tmp_path, llama_tokenizer):
    """Two training sets with the same name but other passages must not share cached observations."""
    from headrank.data.benchmarks import Benchmark
    from headrank.data.formats import Candidate
    from headrank.engine.models import wrap_model
    from headrank.engine.ranker import HeadRanker
    from headrank.learn.selection import select_head_set

    ranker = HeadRanker.from_pretrained(wrap_model(tiny_llama(), llama_tokenizer), method="icr")

    def bench(words):
        queries = {f"q{i}": f"query about {w}" for i, w in enumerate(words)}
        candidates = {q: [Candidate(f"{q}-{j}", f"{w} passage {j}") for j, w in enumerate(words)] for q in queries}
        qrels = {q: {f"{q}-0": 1} for q in queries}
        return Benchmark(name="same-name", queries=queries, candidates=candidates, qrels=qrels, relevant_grade=1)

    for words in (["solar", "wind", "pasta", "river"], ["chess", "tiger", "cloud", "music"]):
        select_head_set(ranker, bench(words), depth=4, ks=[2], lambdas=[0.0], val_fraction=0.25,
                        cache_dir=tmp_path)
    assert len(list(tmp_path.glob("heads-*-same-name-*.pt"))) == 2
