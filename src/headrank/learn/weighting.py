"""Per-head weights: a weighted sum over the head set instead of a plain one (docs/method.md, section 4).

Heads differ in scale and in how well they follow relevance, so a plain sum lets a loud head drown a
good one. Given all-head observations on training lists (``selection.HeadObservations``), the weights
``w_h >= 0`` of a candidate pool of heads are fit by a listwise loss on the calibrated passage masses,
``KL(y || softmax(sum_h w_h a_h))`` with ``y(i) ~ exp(grade_i / tau)``, plus an L2 penalty: a few dozen
parameters, seconds of CPU, no forward pass. Heads whose weight ends at zero drop out of the set.

Masses are standardized per head (by their spread over the training passages) while fitting, so the
penalty treats heads alike; the returned weights apply to raw calibrated masses, as the scorer sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from headrank.data.formats import Qrels
from headrank.learn.selection import HeadObservations


@dataclass(frozen=True)
class WeightConfig:
    """``l2``: penalty on the standardized weights; ``tau``: temperature of the graded target; ``steps``/``lr``:
    full-batch Adam on all training lists at once (projected onto w >= 0 after each step)."""

    l2: float = 0.01
    tau: float = 1.0
    steps: int = 300
    lr: float = 0.05

    def __post_init__(self) -> None:
        if not (self.l2 >= 0 and self.tau > 0 and self.steps >= 1 and self.lr > 0):
            raise ValueError("weight fitting needs l2 >= 0, tau > 0, steps >= 1 and lr > 0")


def _grades(docids: Sequence[str], judged: dict[str, int]) -> torch.Tensor:
    return torch.tensor([max(judged.get(d, 0), 0) for d in docids], dtype=torch.float32)


def head_scale(obs: HeadObservations, heads: Sequence[int]) -> torch.Tensor:
    """Spread (std) of each head's calibrated passage mass over every observed passage: (len(heads),)."""
    idx = torch.tensor(list(heads))
    values = torch.cat([m.index_select(0, idx) for m in obs.calibrated], dim=1)
    return values.std(dim=1).clamp(min=1e-8)


def fit_head_weights(obs: HeadObservations, qrels: Qrels, heads: Sequence[int],
                     config: WeightConfig = WeightConfig()) -> torch.Tensor:
    """Non-negative weights (on raw calibrated mass) for the observed heads at indices ``heads``: (len(heads),).

    Lists without a judged positive teach nothing and are skipped; at least one must remain.
    """
    if not heads:
        raise ValueError("need at least one candidate head to weight")
    idx = torch.tensor(list(heads))
    scale = head_scale(obs, heads)
    features, targets = [], []
    for mass, docids, qid in zip(obs.calibrated, obs.docids, obs.qids):
        grades = _grades(docids, qrels.get(qid, {}))
        if grades.max() <= 0 or len(docids) < 2:
            continue
        features.append((mass.index_select(0, idx) / scale[:, None]).T)  # (n, k)
        targets.append(torch.softmax(grades / config.tau, dim=0))
    if not features:
        raise ValueError("no training list has a judged relevant passage; cannot fit head weights")
    width = max(x.shape[0] for x in features)
    x = torch.zeros(len(features), width, len(heads))  # lists padded to one width, padding masked out
    y = torch.zeros(len(features), width)
    pad = torch.ones(len(features), width, dtype=torch.bool)
    for i, (f, t) in enumerate(zip(features, targets)):
        x[i, : f.shape[0]], y[i, : f.shape[0]], pad[i, : f.shape[0]] = f, t, False
    v = torch.full((len(heads),), 1.0 / len(heads) ** 0.5, requires_grad=True)
    optimizer = torch.optim.Adam([v], lr=config.lr)
    for _ in range(config.steps):
        optimizer.zero_grad()
        logp = torch.log_softmax((x @ v).masked_fill(pad, float("-inf")), dim=1)
        kl = (y * (y.clamp(min=1e-30).log() - logp.masked_fill(pad, 0.0))).sum(dim=1)  # KL(y || softmax)
        loss = kl.mean() + config.l2 * (v * v).sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            v.clamp_(min=0.0)
    weights = (v.detach() / scale)
    if not bool((weights > 0).any()):
        raise ValueError("every head weight went to zero (penalty too strong for these lists); lower l2")
    return weights
