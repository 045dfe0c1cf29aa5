"""Token-level explanations: contributions add up to the scores of rank(), offsets map to the original text."""

import json

import pytest
from conftest import tiny_llama

from headrank.engine.explain import explain, normalized_to_original
from headrank.engine.heads import HeadSet
from headrank.engine.models import wrap_model
from headrank.engine.prompt import normalize_text
from headrank.engine.ranker import HeadRanker

DOCS = ["Solar  panels\n on   roofs make power.", "Pâtes fraîches: recettes 🍝 and  ümlauts", "", "wind farms at sea",
        "river <|im_end|> music"]


@pytest.fixture(scope="module")
def model(llama_tokenizer):
    return wrap_model(tiny_llama(), llama_tokenizer)


@pytest.mark.parametrize("settings", [dict(heads=[(1, 0), (2, 3)]), dict(method="icr"),
                                      dict(heads=[(1, 0), (2, 3)], calibrate=False),
                                      dict(heads=[(1, 0), (2, 3)], both_orders=True),
                                      dict(heads=[(1, 0), (2, 3)], fuse_first_stage=0.5),
                                      dict(heads=HeadSet(heads=((1, 0), (2, 3)), weights=(0.25, 3.0)))])
def test_contributions_sum_to_the_scores_of_rank(model, settings):
    ranker = HeadRanker.from_pretrained(model, **settings)
    plain = HeadRanker.from_pretrained(model, **{**settings, "fuse_first_stage": 0})
    expected = plain.score("query about solar power", DOCS)
    explained = explain(ranker, "query about solar power", DOCS, per_head=True)
    assert [e.corpus_id for e in explained] == [r.corpus_id for r in ranker.rank("query about solar power", DOCS)]
    for e in explained:
        if DOCS[e.corpus_id] == "":
            assert e.tokens == [] and e.score == float("-inf")
            continue
        assert e.score == pytest.approx(expected[e.corpus_id], abs=1e-5)
        assert sum(t.contribution for t in e.tokens) == pytest.approx(e.score, abs=1e-5)
        if "fuse_first_stage" in settings:
            assert e.fused_score is not None
        if not settings.get("both_orders") and settings.get("method") != "icr":
            for t in e.tokens:
                assert t.per_head is not None and sum(t.per_head) == pytest.approx(t.contribution, abs=1e-6)
    json.dumps([e.to_dict() for e in explained], allow_nan=False)


def test_offsets_map_back_to_the_original_text(model):
    ranker = HeadRanker.from_pretrained(model, heads=[(1, 0)])
    for e in explain(ranker, "query", DOCS):
        original = DOCS[e.corpus_id]
        if not original:
            continue
        assert e.tokens[0].start is None and e.tokens[0].token.startswith("[")  # the label
        text_tokens = [t for t in e.tokens[1:] if t.start is not None]
        assert text_tokens, e
        covered = {i for t in text_tokens for i in range(t.start, t.end)}
        # every visible character is covered (a byte-level tokenizer may split one character over two tokens)
        assert covered >= {i for i, ch in enumerate(original) if not ch.isspace()}
        for t in text_tokens:
            piece = original[t.start:t.end]
            assert piece and (piece.strip() in t.token or t.token.strip() in piece or "\ufffd" in t.token)


def test_normalized_to_original():
    text = "  a  b\n\tc "
    index = normalized_to_original(text)
    assert normalize_text(text) == "a b c"
    assert [text[i] for i in index] == ["a", " ", "b", "\n", "c"]


def test_truncated_passages_and_limits(model):
    ranker = HeadRanker.from_pretrained(model, heads=[(1, 0)], max_passage_tokens=5)
    long = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    e = next(x for x in explain(ranker, "q", [long, "short"]) if x.corpus_id == 0)
    assert e.truncated and e.tokens[-1].end is not None and e.tokens[-1].end < len(long)
    windowed = HeadRanker.from_pretrained(model, heads=[(1, 0)], window=2)
    with pytest.raises(ValueError, match="window"):
        explain(windowed, "q", ["a", "b", "c"])


def test_explain_command_writes_self_contained_html_and_png(tmp_path, tiny_base):
    from typer.testing import CliRunner

    from headrank.cli import app

    p = tmp_path / "c.tsv"
    p.write_text("d1\tSolar panels on roofs\nd2\tPasta <b>recipes</b> & more\nd3\t\n", encoding="utf-8")
    html, png = tmp_path / "e.html", tmp_path / "e.png"
    result = CliRunner().invoke(app, ["explain", str(p), "-q", "solar power", "--model", str(tiny_base),
                                      "--heads", "1:0,2:3", "--html", str(html), "--png", str(png), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert page.startswith("<!doctype html>") and 'class="tok"' in page and "Solar" in page
    # passage text is escaped, never markup
    assert "<b>recipes" not in page and "recipes</b>" not in page and "&lt;" in page and "&amp;" in page
    for remote in ("http://", "https://", "<script src", "<link"):
        assert remote not in page
    assert png.read_bytes()[:4] == b"\x89PNG"
    as_json = CliRunner().invoke(app, ["explain", str(p), "-q", "solar power", "--model", str(tiny_base),
                                       "--heads", "1:0", "-o", "json", "--device", "cpu"])
    rows = json.loads(as_json.stdout)["results"]
    assert [r["docid"] for r in rows][-1] == "d3" and rows[-1]["score"] is None
    bad = CliRunner().invoke(app, ["explain", str(p), "-q", "x", "-o", "trec", "--model", str(tiny_base)])
    assert bad.exit_code == 2 and "Invalid value" in bad.output  # explain offers table and json only


def test_both_orders_average_the_two_passes_token_by_token(model):
    """Each part of a passage gets the mean of what it earned in the two orders; characters that a byte-level
    tokenizer splits over two tokens count once (they must not shift weight onto the [i] label)."""
    one = HeadRanker.from_pretrained(model, heads=[(1, 0), (2, 3)])
    both = HeadRanker.from_pretrained(model, heads=[(1, 0), (2, 3)], both_orders=True)
    docs = [d for d in DOCS if d]
    forward = {e.corpus_id: e for e in explain(one, "query about solar power", docs)}
    backward = {len(docs) - 1 - e.corpus_id: e for e in explain(one, "query about solar power", docs[::-1])}
    for e in explain(both, "query about solar power", docs):
        f, b = forward[e.corpus_id], backward[e.corpus_id]
        assert e.tokens[0].contribution == pytest.approx((f.tokens[0].contribution + b.tokens[0].contribution) / 2,
                                                         abs=1e-6)
        text = sum(t.contribution for t in e.tokens[1:])
        expected = (sum(t.contribution for t in f.tokens[1:]) + sum(t.contribution for t in b.tokens[1:])) / 2
        assert text == pytest.approx(expected, abs=1e-6)
