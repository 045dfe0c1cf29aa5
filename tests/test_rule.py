"""The scoring rule's last step (headrank.engine.rule): reliability signals, the safety valve, fusion, per-call switches."""

import math

import pytest

from headrank.engine.checkpoint import InferenceSettings
from headrank.engine.fusion import fuse_with_first_stage
from headrank.engine.rule import SIGNALS, SafetyValve, final_scores, signal, valve_setting


def test_signals_read_the_list():
    assert SIGNALS["agreement"]([5, 4, 3, 2, 1]) == pytest.approx(1.0)
    assert SIGNALS["agreement"]([1, 2, 3, 4, 5]) == pytest.approx(-1.0)
    assert SIGNALS["top_z"]([1, 1, 1, 1]) == 0.0  # a flat list says nothing
    assert SIGNALS["top_z"]([10, 0, 0, 0]) == pytest.approx(1.0)  # one passage takes all, at any length
    assert SIGNALS["top_z"]([10] + [0] * 19) == pytest.approx(1.0)
    assert SIGNALS["top_z"]([10, 0, 0, 0]) > SIGNALS["top_z"]([10, 9, 8, 0])
    assert SIGNALS["top_gap"]([3, 3, 1]) == 0.0 and SIGNALS["top_gap"]([5, 1, 1]) > 1.0
    # an empty passage (-inf) is ignored, not an overflow
    assert math.isfinite(SIGNALS["top_z"]([2.0, -math.inf, 1.0, 0.5]))


def test_valve_fires_below_its_threshold_and_moves_to_the_first_stage():
    flat = [0.10, 0.11, 0.09, 0.12]  # almost no separation: top_z is small
    sharp = [0.0, 0.0, 0.0, 5.0]
    valve = SafetyValve("top_z", threshold=0.9, weight=1.0)
    low = final_scores(flat, 0.3, valve)
    assert low.valve_fired and low.weight == 1.0
    assert sorted(range(4), key=lambda i: -low.scores[i]) == [0, 1, 2, 3]  # the first-stage order
    high = final_scores(sharp, 0.3, valve)
    assert not high.valve_fired and high.scores == pytest.approx(fuse_with_first_stage(sharp, 0.3))
    assert final_scores(flat, None, None).scores == flat  # no fusion, no valve: the scores themselves
    # a valve weaker than the call's own fusion never lowers it
    assert not final_scores(flat, 0.9, SafetyValve("top_z", 0.9, 0.8)).valve_fired


def test_valve_settings_validate_and_round_trip():
    valve = SafetyValve("agreement", 0.2, 0.8)
    settings = InferenceSettings(fuse_first_stage=0.4, safety_valve=valve)
    again = InferenceSettings.from_dict(settings.to_dict())
    assert again == settings and again.safety_valve == valve
    assert "valve agreement" in settings.short() and "safety valve" in settings.describe()
    for bad in ({"signal": "nope", "threshold": 1}, {"signal": "top_z"}, {"signal": "top_z", "threshold": "x"},
                {"signal": "top_z", "threshold": 1, "weight": 0}, {"signal": "top_z", "threshold": math.nan}):
        with pytest.raises(ValueError):
            InferenceSettings.from_dict({"safety_valve": bad})
    assert valve_setting(valve, None) is valve and valve_setting(valve, True) is valve
    assert valve_setting(valve, False) is None
    assert valve_setting(None, {"signal": "top_z", "threshold": 1.0}) == SafetyValve("top_z", 1.0)
    with pytest.raises(ValueError, match="safety_valve"):
        valve_setting(valve, "yes")


def test_a_new_signal_is_one_decorated_function():
    @signal("toy_spread")
    def spread(scores):
        return max(scores) - min(scores)

    try:
        assert final_scores([1.0, 1.0], None, SafetyValve("toy_spread", 0.5)).valve_fired
        assert not final_scores([1.0, 3.0], None, SafetyValve("toy_spread", 0.5)).valve_fired
    finally:
        del SIGNALS["toy_spread"]


def test_fused_records_apply_the_valve_per_query():
    from headrank.eval.evaluate import QueryRecord, fused_records

    ids = ["a", "b", "c", "d", "e", "f"]
    records = [QueryRecord("flat", ids, [0.1, 0.1, 0.11, 0.12, 0.11, 0.12], 0.0),
               QueryRecord("sharp", ids, [0.0, 0.0, 9.0, 0.0, 0.0, 0.0], 0.0)]
    valve = SafetyValve("top_z", 0.8, 1.0)  # sharp: 1; flat: about 0.5
    out = fused_records(records, None, valve)
    assert [r.info["valve_fired"] for r in out] == [True, False]
    assert max(range(6), key=lambda i: out[0].scores[i]) == 0  # first-stage top restored
    assert max(range(6), key=lambda i: out[1].scores[i]) == 2  # the reranker's choice kept


def test_evaluate_safety_valve_needs_a_preset_with_one(tiny_base, tmp_path):
    """evaluate --safety-valve reads the valve of the --model preset; without one it says so before any model loads.
    (Both shipped presets now carry a valve: a tiny preset without one stands in.)"""
    from conftest import make_tiny_preset
    from typer.testing import CliRunner

    from headrank.cli import app
    from headrank.engine.checkpoint import InferenceSettings

    preset = make_tiny_preset(tiny_base, tmp_path / "no-valve", InferenceSettings(fuse_first_stage=0.5))
    runner = CliRunner()
    no_valve = runner.invoke(app, ["evaluate", "--model", str(preset), "--safety-valve", "-b", "dl19",
                                   "--out", str(tmp_path / "runs")])
    assert no_valve.exit_code == 2 and "has no safety valve" in no_valve.output
    not_preset = runner.invoke(app, ["evaluate", "--model", "smollm2-135m-instruct", "--safety-valve", "-b", "dl19"])
    assert not_preset.exit_code == 2 and "needs a preset or checkpoint" in not_preset.output


def test_a_window_is_ordered_by_the_rule_on_its_members_first_stage_ranks():
    from headrank.engine.rule import window_order

    scores, first_stage = [1.0, 3.0, 2.0], [5, 2, 9]  # member 1 is the best in the first stage, then 0, then 2
    assert window_order(scores, first_stage, None) == ([1, 2, 0], False)
    assert window_order(scores, first_stage, 1.0) == ([1, 0, 2], False)
    assert window_order(scores, first_stage, None, SafetyValve("agreement", 2.0, 1.0)) == ([1, 0, 2], True)
    # RRF 0.5: member 0 (attention 3rd, first stage 2nd) vs member 2 (attention 2nd, first stage 3rd) tie;
    # the window's own order breaks it
    assert window_order(scores, first_stage, 0.5)[0] == [1, 0, 2]


@pytest.fixture(scope="module")
def tiny_ranker(request):
    from conftest import tiny_llama

    from headrank.engine.heads import HeadSet
    from headrank.engine.models import wrap_model
    from headrank.engine.ranker import HeadRanker

    loaded = wrap_model(tiny_llama(), request.getfixturevalue("llama_tokenizer"), name="tiny-llama")
    return HeadRanker(loaded, HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4))


def test_a_scoring_rule_of_your_own_is_one_file(tmp_path, monkeypatch, tiny_ranker):
    """A head-combination rule is one decorated function in one new file; the ranker, shared captures and
    searches on per-head masses (ScoringRule.from_head_masses) then run it."""
    import importlib

    import torch

    from headrank.engine.mass import COMBINERS, ScoringConfig
    from headrank.engine.ranker import HeadRanker
    from headrank.engine.rule import ScoringRule

    (tmp_path / "toy_rule.py").write_text(
        "from headrank.engine.mass import combiner\n\n\n"
        "@combiner('toy_best_head')\n"
        "def best_head(masses, weights):\n"
        "    return masses.max(dim=0).values  # each passage scored by the head that gives it most\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("toy_rule")
    try:
        docs = ["solar panels", "pasta recipes", "wind farms at sea", "river music"]
        toy = HeadRanker(tiny_ranker.model, tiny_ranker.heads, scoring=ScoringConfig(combine="toy_best_head"))
        job = toy.builder.build("a query", docs)
        att, cal = toy.capture([job])[0]
        from headrank.engine.mass import head_passage_mass

        per_head = head_passage_mass(att, job.passage_spans) - head_passage_mass(cal, job.passage_spans)
        assert toy.score("a query", docs) == pytest.approx(per_head.max(dim=0).values.tolist(), abs=1e-6)
        rule = ScoringRule(((0, 0), (1, 1)), combine="toy_best_head")
        masses = torch.tensor([[1.0, 5.0], [3.0, 2.0], [0.0, 9.0]])  # captured heads (0,0), (1,1), (2,2)
        assert rule.from_head_masses(masses, masses, [(0, 0), (1, 1), (2, 2)]).tolist() == [3.0, 5.0]
        with pytest.raises(ValueError, match="not a sum"):
            toy.explain("a query", docs)
    finally:
        del COMBINERS["toy_best_head"]
    with pytest.raises(ValueError, match="unknown head-combination rule 'toy_best_head'"):
        ScoringConfig(combine="toy_best_head")


def test_the_rule_reads_per_head_masses_like_the_ranker_reads_its_capture(tiny_ranker):
    """One rule, two inputs: scores from the token-level capture equal those from per-head passage masses."""
    from headrank.engine.heads import HeadSet
    from headrank.engine.mass import head_passage_mass
    from headrank.engine.rule import ScoringRule

    heads = HeadSet(heads=tiny_ranker.heads.heads, weights=[0.5 + i for i in range(len(tiny_ranker.heads.heads))])
    rule = ScoringRule.of(heads)
    job = tiny_ranker.builder.build("a query", ["solar panels", "pasta recipes", "wind farms"])
    att, cal = tiny_ranker.capture([job])[0]
    raw = head_passage_mass(att, job.passage_spans)
    calibrated = raw - head_passage_mass(cal, job.passage_spans)
    assert rule.from_attention(att, job.passage_spans, cal).tolist() == pytest.approx(
        rule.from_head_masses(raw, calibrated, att.heads).tolist(), abs=1e-6)


def test_one_rule_for_a_fusion_weight_everywhere(tiny_base):
    """0 (or False) is "no fusion" and None keeps the setting, at construction as in every call; anything else
    outside (0, 1] is refused with the same message by the ranker, a call, the checkpoint settings and the
    service's config (one validator, rule.fusion_weight)."""
    import math

    from headrank.engine.heads import HeadSet
    from headrank.engine.models import load_model
    from headrank.engine.ranker import HeadRanker
    from headrank.serve.config import ServeConfig

    model = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0),), num_layers=model.num_layers, num_heads=model.num_heads, model=str(tiny_base))
    assert HeadRanker(model, heads, fuse_first_stage=0).fuse_first_stage is None
    assert InferenceSettings(fuse_first_stage=0).fuse_first_stage is None
    assert InferenceSettings(fuse_first_stage=0.4).fuse_first_stage == 0.4
    ranker = HeadRanker(model, heads, fuse_first_stage=0.5)
    messages = set()
    for bad in (1.5, -0.1, math.nan, True, "0.5"):
        for make in (lambda w: HeadRanker(model, heads, fuse_first_stage=w),
                     lambda w: ranker.rank("q", ["a", "b"], fuse_first_stage=w),
                     lambda w: InferenceSettings(fuse_first_stage=w),
                     lambda w: ServeConfig(fuse_first_stage=w)):
            with pytest.raises(ValueError, match="fuse_first_stage must be a weight in") as error:
                make(bad)
            messages.add(str(error.value).split(", got")[0])
    assert len(messages) == 1, messages
