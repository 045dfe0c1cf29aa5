"""Relevance probabilities (``headrank.engine.relevance``, ``headrank calibrate``): the fit, a calibrated checkpoint's
results, and the served scores that are comparable across requests (issue 44, the service's contract)."""

import json
import math
import random
import subprocess
import sys

import pytest
from conftest import data_path

from headrank.engine.checkpoint import write_config
from headrank.engine.heads import HeadSet
from headrank.engine.relevance import Observation, RelevanceCalibration, fit, reliability

DOCS = ["solar panels on roofs make power", "pasta recipes from italy", "wind farms at sea", "river music",
        "chess openings for beginners"]


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_fit_recovers_a_known_logistic_and_reliability_scores_it():
    rng = random.Random(0)
    obs = []
    for _ in range(4000):
        score, n = rng.uniform(-0.05, 0.25), rng.choice([10, 20])
        obs.append(Observation(score, n, rng.random() < _sigmoid(0.8 * score * n - 2.0)))
    slope, intercept = fit(obs)
    assert slope == pytest.approx(0.8, rel=0.1) and intercept == pytest.approx(-2.0, abs=0.2)
    good = reliability(RelevanceCalibration(slope, intercept), obs)
    flat = reliability(RelevanceCalibration(1e-9, 0.0), obs)  # always 0.5
    assert good["ece"] < 0.03 < flat["ece"] and good["brier"] < good["brier_base_rate"] < flat["brier"]


def test_calibration_values_and_refusals():
    cal = RelevanceCalibration(0.5, -1.0, ("cisi",), 3, 60, 9)
    assert cal.probability(0.2, 20) == pytest.approx(_sigmoid(0.5 * 0.2 * 20 - 1.0))
    assert cal.probability(-math.inf, 0) == 0.0 and 0.0 <= cal.probability(-1e6, 20) < 1e-9 and cal.probability(1e6, 20) == 1.0
    assert RelevanceCalibration.from_dict(cal.to_dict()) == cal and RelevanceCalibration.from_dict(None) is None
    for bad, match in [({"slope": -1, "intercept": 0}, "slope must be > 0"),
                       ({"slope": True, "intercept": 0}, "finite number"),
                       ({"slope": 1, "intercept": float("nan")}, "finite number"),
                       ({"slope": 1, "intercept": 0, "bias": 2}, "unknown keys bias"), ({"slope": 1}, "missing intercept"),
                       ([1, 2], "JSON object")]:
        with pytest.raises(ValueError, match=match):
            RelevanceCalibration.from_dict(bad)
    with pytest.raises(ValueError, match="relevant and non-relevant"):
        fit([Observation(0.1, 20, False)] * 5)


CALIBRATION = {"slope": 2.0, "intercept": -1.5, "fitted_on": ["cisi"], "lists": 4, "pairs": 80, "positives": 12,
               "passages_per_list": 20}


@pytest.fixture()
def calibrated(tiny_base, tmp_path):
    """A checkpoint on the tiny base model (no adapter) with fusion 0.5 and a relevance calibration."""
    from headrank.engine.models import load_model

    loaded = load_model(str(tiny_base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(tiny_base),
                    prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint)
    path = tmp_path / "calibrated"
    path.mkdir()
    write_config(path, heads, {}, str(tiny_base), [])
    config = json.loads((path / "headrank_config.json").read_text())
    config.update(adapter=False, inference={"fuse_first_stage": 0.5}, relevance=CALIBRATION)
    (path / "headrank_config.json").write_text(json.dumps(config))
    return path


def test_a_calibrated_checkpoint_gives_each_passage_its_probability(calibrated, caplog):
    from headrank.engine.ranker import HeadRanker

    ranker = HeadRanker.from_pretrained(str(calibrated), device="cpu")
    assert ranker.relevance == RelevanceCalibration.from_dict(CALIBRATION)
    ranking = ranker.rank("query about solar", [*DOCS, "  "])
    plain = ranker.score("query about solar", DOCS, fuse_first_stage=0, safety_valve=False)
    for r in ranking[:-1]:
        assert r.model_score == pytest.approx(plain[r.corpus_id], abs=1e-6)
        assert r.relevance == pytest.approx(_sigmoid(2.0 * r.model_score * 5 - 1.5), abs=1e-9)
    assert ranking[-1].model_score is None and ranking[-1].relevance == 0.0  # the empty passage: not read
    assert {"model_score", "relevance"} <= ranking[0].to_dict().keys()
    windowed = ranker.rank_batch(["query about solar"], [DOCS * 3], fuse_first_stage=0)[0]
    assert all(r.model_score is not None and 0 < r.relevance < 1 for r in windowed)  # windows too (when any)
    with caplog.at_level("WARNING"):
        other_budget = HeadRanker.from_pretrained(str(calibrated), device="cpu", max_passage_tokens=8)
    assert other_budget.relevance is None and "carry no relevance probability" in caplog.text
    config = json.loads((calibrated / "headrank_config.json").read_text())
    (calibrated / "headrank_config.json").write_text(json.dumps({**config, "relevance": {"slope": 0,
                                                                                          "intercept": 1}}))
    with pytest.raises(ValueError, match="calibrated: relevance calibration: slope must be > 0"):
        HeadRanker.from_pretrained(str(calibrated), device="cpu")


def test_windowed_lists_carry_each_passage_s_last_window_score(calibrated):
    """Windows of 3 over 5 passages run from the bottom up; the final top three were last read together, in a
    prompt of three passages: their probabilities read their scores as shares of three."""
    from headrank.engine.ranker import HeadRanker

    ranker = HeadRanker.from_pretrained(str(calibrated), device="cpu", window=3)
    ranking = ranker.rank("query about solar", DOCS, fuse_first_stage=0)
    assert all(r.windowed and r.model_score is not None for r in ranking)
    top = ranking[:3]
    last_window = ranker.score("query about solar", [DOCS[r.corpus_id] for r in sorted(top, key=lambda r: r.corpus_id)],
                               fuse_first_stage=0, safety_valve=False)
    assert sorted(r.model_score for r in top) == pytest.approx(sorted(last_window), abs=1e-5)
    for r in top:
        assert r.relevance == pytest.approx(_sigmoid(2.0 * r.model_score * 3 - 1.5), abs=1e-9)


def test_served_scores_are_calibrated_probabilities_not_fusion_values(calibrated, tmp_path):
    httpx = pytest.importorskip("httpx")
    from test_serve import Server

    from headrank.engine.ranker import HeadRanker

    local = HeadRanker.from_pretrained(str(calibrated), device="cpu")
    server = Server(str(calibrated))
    try:
        body = {"query": "query about solar", "documents": DOCS, "return_ranking_scores": True}
        out = httpx.post(f"{server.url}/v2/rerank", json=body).json()
        want = local.rank("query about solar", DOCS)
        assert [r["index"] for r in out["results"]] == [r.corpus_id for r in want]  # the fused order
        for got, r in zip(out["results"], want):
            assert got["relevance_score"] == pytest.approx(r.relevance, abs=1e-6)
            assert got["ranking_score"] == pytest.approx(r.score, abs=1e-6)  # the fused score, on request only
            assert got["model_score"] == pytest.approx(r.model_score, abs=1e-6)
        assert max(g["relevance_score"] for g in out["results"]) < 1.0  # not min-max: the top is not always 1
        assert "P(relevant)" in out["meta"]["headrank"]["scores"]
        raw = httpx.post(f"{server.url}/v1/rerank", json={**body, "raw_scores": True}).json()["results"]
        assert [g["relevance_score"] for g in raw] == pytest.approx([r.model_score for r in want], abs=1e-6)
        tei = httpx.post(f"{server.url}/rerank", json={"query": "query about solar", "texts": DOCS[::-1]}).json()
        reversed_list = {r.corpus_id: r.relevance for r in local.rank("query about solar", DOCS[::-1])}
        assert all(row["score"] == pytest.approx(reversed_list[row["index"]], abs=1e-6) for row in tei)
        info = httpx.get(f"{server.url}/info").json()
        assert info["relevance_calibration"]["slope"] == 2.0 and "P(relevant)" in info["scores"]
        schema = httpx.get(f"{server.url}/openapi.json").json()
        assert "probability" in json.dumps(schema["components"]["schemas"]["RerankResult"])
    finally:
        server.stop()


def _calibrate(model, tmp_path, *extra, sets="cisi,npl", queries="2", depth="8"):
    report, cache = tmp_path / "report.json", tmp_path / "cache"
    command = [sys.executable, "-m", "headrank.cli", "calibrate", str(model), "--sets", sets,
               "--queries", queries, "--depth", depth, "--report", str(report), "--cache", str(cache),
               "--device", "cpu", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600), report, cache


@pytest.mark.integration
def test_calibrate_command_fits_writes_and_resumes(tmp_path):
    """On a copy of the small shipped preset (real SmolLM2, real DL21 validation and CISI lists)."""
    import shutil

    from headrank.engine.presets import load_preset
    from headrank.engine.ranker import HeadRanker

    data_path("classic", "cisi")
    preset = tmp_path / "smol"
    shutil.copytree(load_preset("headrank-smollm2-135m").path, preset)
    real = dict(sets="dl21-val,cisi", queries="3", depth="20")
    done, report, cache = _calibrate(preset, tmp_path, "--write", **real)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(report.read_text())
    assert out["calibration"]["lists"] == 6 and out["calibration"]["pairs"] == 120
    assert out["calibration"]["fitted_on"] == ["dl21-val", "cisi"] and out["calibration"]["slope"] > 0
    assert {"brier", "ece", "bins"} <= out["held_out_two_folds"].keys() and set(out["per_set"]) == {"dl21-val", "cisi"}
    config = json.loads((preset / "headrank_config.json").read_text())
    assert config["relevance"] == out["calibration"]
    assert "P(relevant)" in (preset / "README.md").read_text()  # the card says how scores read
    assert HeadRanker.from_pretrained(str(preset), device="cpu").relevance.slope == out["calibration"]["slope"]
    scored = next(cache.glob("relevance-*.jsonl"))
    lines = scored.read_text().splitlines()
    assert len(lines) == 6
    scored.write_text("\n".join(lines[:5]) + '\n{"key": "torn', encoding="utf-8")  # interrupted in list 6
    again, _, _ = _calibrate(preset, tmp_path, **real)
    assert again.returncode == 0, again.stderr[-2000:]
    refit = json.loads(report.read_text())["calibration"]
    assert refit["slope"] == pytest.approx(out["calibration"]["slope"], rel=1e-6)  # five cached, one recomputed
    assert scored.read_text().splitlines()[5:] == ['{"key": "torn', lines[5]]  # the new line starts on its own


def test_calibrate_command_refuses_reporting_sets_and_inverted_heads(calibrated, tmp_path):
    data_path("classic", "cisi")
    bad, _, _ = _calibrate(calibrated, tmp_path, "--sets", "dl19")
    assert bad.returncode == 2 and "validation sets only" in bad.stderr and "Traceback" not in bad.stderr
    # The tiny random model's two heads happen to score CISI/NPL's relevant passages lower: refused, not written.
    inverted, report, _ = _calibrate(calibrated, tmp_path, "--write", "--queries", "3")
    assert inverted.returncode == 2 and "do not rise with relevance" in inverted.stderr
    assert "Traceback" not in inverted.stderr and not report.exists()
    assert json.loads((calibrated / "headrank_config.json").read_text())["relevance"] == CALIBRATION


@pytest.mark.parametrize("preset", ["headrank-qwen2.5-coder-0.5b", "headrank-smollm2-135m"])
def test_shipped_calibrations_and_card_numbers_come_from_the_recorded_result(preset):
    """What the preset ships (config, card) is what ``headrank calibrate`` recorded in results/, not typed."""
    from conftest import REPO

    from headrank.engine.presets import load_preset

    path = load_preset(preset).path
    recorded = json.loads((REPO / "results" / f"relevance-{preset}.json").read_text())
    config = json.loads((path / "headrank_config.json").read_text())
    assert config["relevance"] == recorded["calibration"] and recorded["calibration"]["slope"] > 0
    assert set(recorded["calibration"]["fitted_on"]) <= {"dl21-val", "nfcorpus-dev", "cranfield", "cisi", "npl"}
    held = recorded["held_out_two_folds"]
    assert config["card"]["relevance_held_out"] == {k: held[k] for k in ("passages", "relevant_rate", "brier",
                                                                        "brier_base_rate", "ece")}
    card = (path / "README.md").read_text()
    assert f"expected calibration error {held['ece']:.4f}" in card and f"{held['brier']:.4f}" in card
