"""Generative listwise and pointwise baselines: parsing (pure), and runs on the tiny and real models."""

import pytest
from conftest import tiny_llama

from headrank.engine.models import wrap_model
from headrank.rerankers.generative import GenerativeRanker, parse_permutation, rankgpt_messages
from headrank.rerankers.pointwise import PointwiseRanker


@pytest.mark.parametrize(
    "text, n, order, valid",
    [
        ("[2] > [1] > [3]", 3, [1, 0, 2], True),
        ("2 > 1 > 3", 3, [1, 0, 2], True),
        ("[2] > [2] > [1] > [3]", 3, [1, 0, 2], False),  # duplicate
        ("[3] > [1]", 3, [2, 0, 1], False),  # missing id appended in input order
        ("[4] > [2] > [1] > [3]", 3, [1, 0, 2], False),  # out of range
        ("Sure! The ranking is [2] > [3] > [1].", 3, [1, 2, 0], True),  # stray words, no stray numbers
        ("I cannot rank these.", 3, [0, 1, 2], False),  # fallback: input order
        ("", 2, [0, 1], False),
        ("[ 10 ] > [9] > [1]", 10, [9, 8, 0, 1, 2, 3, 4, 5, 6, 7], False),
    ],
)
def test_parse_permutation(text, n, order, valid):
    parsed = parse_permutation(text, n)
    assert parsed.order == order and parsed.valid == valid
    assert sorted(parsed.order) == list(range(n))


def test_rankgpt_messages():
    messages = rankgpt_messages("q?", ["a", "b"])
    assert messages[-1]["role"] == "user" and "q?" in messages[-1]["content"]
    assert [m["content"] for m in messages if m["content"].startswith("[")] == ["[1] a", "[2] b"]


def test_generative_windows_cover_the_list(llama_tokenizer):
    ranker = GenerativeRanker(wrap_model(tiny_llama(), llama_tokenizer), window=4, stride=2, max_passage_tokens=8)
    passages = [f"passage {i}" for i in range(7)]
    scores = ranker.score("query", passages)
    assert sorted(scores) == [float(i) for i in range(1, 8)]
    assert ranker.windows_total == 3  # windows end at 7, 5, 3 (the last starts at 0)
    assert 0.0 <= ranker.formatting_success <= 1.0
    assert 3 <= ranker.tokens_generated <= 3 * (6 * 4 + 10)  # at least one token per window, at most the cap
    with pytest.raises(ValueError):
        GenerativeRanker(ranker.model, window=4, stride=5)


@pytest.mark.parametrize("answer, valid, identity", [("[1] > [2] > [3] > [4]", 1, 1), ("[2] > [1] > [3] > [4]", 1, 0),
                                                     ("no idea", 0, 0)])
def test_generative_counts_answers_that_repeat_the_input_order(llama_tokenizer, monkeypatch, answer, valid, identity):
    """A valid permutation that is the input order is formatting success without any reranking: counted apart."""
    import torch

    ranker = GenerativeRanker(wrap_model(tiny_llama(), llama_tokenizer), window=4, stride=2, max_passage_tokens=8)
    answer_ids = torch.tensor([llama_tokenizer(answer, add_special_tokens=False)["input_ids"]])
    monkeypatch.setattr(ranker.model.model, "generate", lambda input_ids, **_: torch.cat([input_ids, answer_ids], 1))
    ranker.score("query", [f"passage {i}" for i in range(4)])
    assert (ranker.windows_total, ranker.windows_valid, ranker.windows_identity) == (1, valid, identity)
    assert ranker.identity_share == identity


def test_pointwise_on_tiny_model(llama_tokenizer):
    ranker = PointwiseRanker(wrap_model(tiny_llama(), llama_tokenizer), batch_size=2)
    passages = ["short", "a somewhat longer passage here", "third one"]
    scores = ranker.score("query", passages)
    assert len(scores) == 3
    # batching (with padding) does not change a passage's score
    assert scores[1] == pytest.approx(PointwiseRanker(ranker.model, batch_size=1).score("query", passages[1:2])[0], abs=1e-4)


@pytest.mark.integration
def test_real_model_pointwise_and_generative(real_ranker):
    docs = ["Paris is the capital of France.", "Bananas are yellow fruit.", "The capital city of France is Paris."]
    pointwise = PointwiseRanker(real_ranker.model).score("What is the capital of France?", docs)
    assert pointwise[1] < max(pointwise[0], pointwise[2])
    generative = GenerativeRanker(real_ranker.model)
    scores = generative.score("What is the capital of France?", docs)
    assert sorted(scores) == [1.0, 2.0, 3.0] and generative.windows_total == 1
