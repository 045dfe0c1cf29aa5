"""Relevance probabilities: a logistic map from a passage's attention score to P(relevant), fitted on
validation lists and stored with a checkpoint, so that a score means the same in every request.

A listwise attention score is a share of one list's attention: the same passage scores about half as much
in a list twice as long (a list's scores sum to a query-dependent constant). The map therefore reads the
score as a multiple of an even share, ``score * passages`` (passages: how many the prompt held), and returns
``sigmoid(slope * share + intercept)``. The ranking itself is unchanged: order by the ranker's rule (fusion
and valve included); the probability is a per-passage reading of the model's score, usable as a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RelevanceCalibration:
    """``sigmoid(slope * score * passages + intercept)``, and where it was fitted (sets, lists, pairs, the
    relevance grade from which a passage counted as relevant on each set)."""

    slope: float
    intercept: float
    fitted_on: tuple[str, ...] = ()
    lists: int = 0
    pairs: int = 0
    positives: int = 0
    passages_per_list: int = 20
    command: str = ""  # how it was fitted (``headrank calibrate ...``)

    def __post_init__(self) -> None:
        for name in ("slope", "intercept"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"relevance calibration: {name} must be a finite number, got {value!r}")
        if self.slope <= 0:
            raise ValueError(f"relevance calibration: slope must be > 0 (a higher score cannot mean less "
                             f"relevant), got {self.slope}")
        object.__setattr__(self, "fitted_on", tuple(self.fitted_on))

    def probability(self, score: float, passages: int) -> float:
        """P(relevant) of a passage with attention ``score`` in a prompt of ``passages`` passages; 0.0 for a
        passage the model did not read (empty: score -inf)."""
        if not math.isfinite(score):
            return 0.0
        z = self.slope * score * passages + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    @classmethod
    def from_dict(cls, data: dict | None) -> RelevanceCalibration | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"relevance calibration must be a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"relevance calibration: unknown keys {', '.join(sorted(unknown))}")
        missing = {"slope", "intercept"} - set(data)
        if missing:
            raise ValueError(f"relevance calibration: missing {', '.join(sorted(missing))}")
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fitted_on"] = list(self.fitted_on)
        return out

    def describe(self) -> str:
        return (f"P(relevant) = sigmoid({self.slope:.4g} * score * passages {self.intercept:+.4g}), fitted on "
                f"{self.lists} validation lists ({', '.join(self.fitted_on)})")


@dataclass(frozen=True)
class Observation:
    """One passage of a validation list: its attention score, how many passages its prompt held, relevant?"""

    score: float
    passages: int
    relevant: bool


def fit(observations: Sequence[Observation]) -> tuple[float, float]:
    """Maximum-likelihood (slope, intercept) of the logistic map, by torch's L-BFGS on the mean log loss."""
    import torch

    points = [o for o in observations if math.isfinite(o.score)]
    labels = {o.relevant for o in points}
    if len(labels) < 2:
        raise ValueError("fitting a relevance calibration needs relevant and non-relevant passages; the lists "
                         f"have {'only relevant' if labels == {True} else 'no relevant'} ones")
    x = torch.tensor([o.score * o.passages for o in points], dtype=torch.float64)
    y = torch.tensor([float(o.relevant) for o in points], dtype=torch.float64)
    scale = float(x.std()) or 1.0  # the optimizer works on a standardized feature
    mean = float(x.mean())
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=200, tolerance_grad=1e-10,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(params[0] * (x - mean) / scale + params[1], y)
        value.backward()
        return value

    optimizer.step(loss)
    a, b = (float(v) for v in params.detach())
    slope = a / scale
    return slope, b - slope * mean


def reliability(calibration: RelevanceCalibration, observations: Sequence[Observation],
                bins: int = 10) -> dict:
    """How well ``calibration``'s probabilities hold on ``observations`` (``reliability_of``)."""
    return reliability_of([(calibration.probability(o.score, o.passages), o.relevant) for o in observations
                           if math.isfinite(o.score)], bins)


def reliability_of(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> dict:
    """How well probabilities hold against outcomes: Brier score (and the base rate's, for scale), log loss,
    expected calibration error over ``bins`` equal-width bins, and each bin's mean prediction and rate."""
    points = [(p, float(y)) for p, y in pairs]
    if not points:
        raise ValueError("no observations to measure reliability on")
    n = len(points)
    rate = sum(y for _, y in points) / n
    brier = sum((p - y) ** 2 for p, y in points) / n
    eps = 1e-12
    log_loss = -sum(y * math.log(max(p, eps)) + (1 - y) * math.log(max(1 - p, eps)) for p, y in points) / n
    table, ece = [], 0.0
    for k in range(bins):
        members = [(p, y) for p, y in points if min(int(p * bins), bins - 1) == k]
        if not members:
            continue
        mean_p = sum(p for p, _ in members) / len(members)
        mean_y = sum(y for _, y in members) / len(members)
        ece += len(members) / n * abs(mean_p - mean_y)
        table.append({"bin": f"{k / bins:.1f}-{(k + 1) / bins:.1f}", "passages": len(members),
                      "mean_probability": round(mean_p, 4), "relevant_rate": round(mean_y, 4)})
    return {"passages": n, "relevant_rate": round(rate, 4), "brier": round(brier, 4),
            "brier_base_rate": round(rate * (1 - rate), 4), "log_loss": round(log_loss, 4), "ece": round(ece, 4),
            "bins": table}
