"""One vocabulary of method names (headrank.methods): the CLI, the Python API, load_reranker, evaluate and bench
resolve every name there, aliases included, and refuse an unknown one with the same list of names."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from headrank.cli import app
from headrank.methods import ALIASES, ATTENTION, BASELINES, Method, names, resolve


def test_every_method_has_one_backend_module_of_its_own():
    import importlib

    for method in Method:
        module = importlib.import_module(f"headrank.rerankers.{method.backend}")
        assert callable(module.load), method
    assert len({m.backend for m in Method}) == len(Method)


def test_aliases_name_the_same_methods():
    assert resolve("headrank") is Method.HEADS and resolve("firststage") is Method.BM25
    assert resolve(" ICR ") is Method.ICR and resolve(Method.POINTWISE) is Method.POINTWISE
    assert set(ALIASES) & set(names()) == set()


@pytest.mark.parametrize("bad", ["rankgpt", "", None, 3, ["icr"]])
def test_an_unknown_method_lists_the_valid_names(bad):
    with pytest.raises(ValueError, match="choose one of heads, icr, generative, pointwise, bm25"):
        resolve(bad)


def test_a_method_outside_the_allowed_ones_is_refused():
    with pytest.raises(ValueError, match=r"choose one of icr, heads \(also headrank=heads\)$"):
        resolve("pointwise", ATTENTION)
    assert [m.value for m in BASELINES] == ["generative", "pointwise"]


def test_the_ranker_the_factory_and_evaluate_speak_the_same_names(tiny_base, tmp_path):
    """A HeadRank checkpoint (once "headrank"), a head set and the factory's alias all report "heads"."""
    from conftest import make_tiny_preset

    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.ranker import HeadRanker
    from headrank.eval.scorers import METHODS
    from headrank.rerankers import BACKENDS, load_reranker

    assert set(METHODS) == set(names()) and set(BACKENDS) == {*names(), *ALIASES}
    assert HeadRanker.from_pretrained(str(tiny_base), heads=[(0, 0)], method="headrank").method == "heads"
    preset = make_tiny_preset(tiny_base, tmp_path / "p", InferenceSettings())
    assert HeadRanker.from_pretrained(str(preset)).method == "heads"
    assert load_reranker("headrank", str(preset)).method == "heads"
    assert load_reranker("icr", str(tiny_base)).method == "icr"
    with pytest.raises(ValueError, match="choose one of icr, heads"):
        HeadRanker.from_pretrained(str(tiny_base), heads=[(0, 0)], method="generative")


def test_evaluate_and_bench_take_aliases_and_refuse_unknown_names(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--method", "rankgpt", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "choose one of heads, icr, generative, pointwise, bm25" in result.output
    result = runner.invoke(app, ["bench", "--methods", "headrank,foo", "--heads", "0:0"])
    assert result.exit_code == 2 and "unknown method 'foo'" in result.output
