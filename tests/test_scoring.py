import pytest
import torch

from headrank.engine.capture import ListAttention
from headrank.engine.mass import ScoringConfig, masked_calibrated_scores, passage_mass, score_passages

SPANS = [(1, 3), (3, 6), (7, 8)]


def test_passage_mass_sums_spans():
    mass = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0] * 8])
    assert passage_mass(mass, SPANS).tolist() == [[3.0, 12.0, 7.0], [2.0, 3.0, 1.0]]


def test_head_sum_and_calibration():
    heads = [(0, 0), (1, 2)]
    att = ListAttention(heads, torch.tensor([[0.1] * 8, [0.2] * 8]))
    cal = ListAttention(heads, torch.tensor([[0.05] * 8, [0.05] * 8]))
    raw = score_passages(att, SPANS, ScoringConfig(calibrate=False))
    assert torch.allclose(raw, torch.tensor([0.6, 0.9, 0.3]))
    calibrated = score_passages(att, SPANS, ScoringConfig(calibrate=True), cal)
    assert torch.allclose(calibrated, torch.tensor([0.4, 0.6, 0.2]))
    with pytest.raises(ValueError, match="N/A"):
        score_passages(att, SPANS, ScoringConfig(calibrate=True))
    with pytest.raises(ValueError, match="different heads"):
        score_passages(att, SPANS, ScoringConfig(), ListAttention([(0, 0)], torch.zeros(1, 8)))


def test_icr_token_mask_drops_outliers_below_mean_minus_two_std():
    tokens = torch.tensor([1.0] * 10 + [-20.0] + [1.0] * 9)  # one token far below its passage's mean
    scores = masked_calibrated_scores(tokens, torch.zeros(20), [(0, 20), (0, 10)])
    assert scores.tolist() == [19.0, 10.0]


def test_token_mask_needs_calibration():
    with pytest.raises(ValueError, match="calibrate"):
        ScoringConfig(calibrate=False, token_mask=True)


def test_weighted_head_sum_and_calibration():
    heads = [(0, 0), (1, 2)]
    att = ListAttention(heads, torch.tensor([[0.1] * 8, [0.2] * 8]))
    cal = ListAttention(heads, torch.tensor([[0.05] * 8, [0.05] * 8]))
    weights = {(0, 0): 2.0, (1, 2): 0.5}
    raw = score_passages(att, SPANS, ScoringConfig(calibrate=False), weights=weights)
    assert torch.allclose(raw, torch.tensor([0.6, 0.9, 0.3]))  # 2 * 0.1 + 0.5 * 0.2 = 0.3 per token
    calibrated = score_passages(att, SPANS, ScoringConfig(calibrate=True), cal, weights=weights)
    assert torch.allclose(calibrated, torch.tensor([0.35, 0.525, 0.175]))  # 2 * 0.05 + 0.5 * 0.15 per token
    with pytest.raises(ValueError, match="no weight"):
        score_passages(att, SPANS, ScoringConfig(calibrate=False), weights={(0, 0): 1.0})
