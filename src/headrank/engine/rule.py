"""The scoring rule's last step: from attention scores (input order) to the scores that rank.

Two settings act here, per list: ``fuse_first_stage`` (weighted reciprocal rank fusion with the input order,
``headrank.engine.fusion``) and the safety valve. The valve reads one reliability signal from the list's own
attention scores; when it is below the valve's threshold, the list is ranked with the valve's (larger)
first-stage weight instead, so a query the heads cannot read moves toward the first-stage order. Signals are
small functions registered in ``SIGNALS``: add one by decorating a function ``scores -> float`` with
``@signal("name")``. Thresholds are chosen on validation domains only (``headrank choose``, ``learn.choose``).
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from headrank.engine.fusion import fuse_with_first_stage, rank_positions

SIGNALS: dict[str, Callable[[Sequence[float]], float]] = {}


def signal(name: str):
    """Register a reliability signal: a function of one list's attention scores (input order), larger = surer."""

    def register(fn: Callable[[Sequence[float]], float]) -> Callable[[Sequence[float]], float]:
        SIGNALS[name] = fn
        return fn

    return register


def _finite(scores: Sequence[float]) -> list[float]:
    return [float(s) for s in scores if math.isfinite(s)]


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@signal("agreement")
def agreement(scores: Sequence[float]) -> float:
    """Spearman correlation of the attention ranking with the input order (1: same order, -1: reversed)."""
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    n = len(finite)
    if n < 3:
        return 1.0
    ranks = rank_positions([scores[i] for i in finite])
    return 1.0 - 6.0 * sum((r - (k + 1)) ** 2 for k, r in enumerate(ranks)) / (n * (n * n - 1))


@signal("top_z")
def top_z(scores: Sequence[float]) -> float:
    """How far the best passage stands above the list: (max - mean) / std, divided by its largest possible value
    sqrt(n - 1) so that lists of any length compare (1: one passage takes all; 0: a flat list). Undivided, a
    threshold chosen on 20-passage lists would fire on nearly every short list (the bound is 2.6 at n = 8)."""
    values = _finite(scores)
    if len(values) < 2:
        return math.inf
    std = _std(values)
    return 0.0 if std == 0 else (max(values) - sum(values) / len(values)) / (std * math.sqrt(len(values) - 1))


@signal("top_gap")
def top_gap(scores: Sequence[float]) -> float:
    """The gap between the two best passages in units of the list's std (0 for a tie at the top)."""
    values = sorted(_finite(scores), reverse=True)
    if len(values) < 2:
        return math.inf
    std = _std(values)
    return 0.0 if std == 0 else (values[0] - values[1]) / std


@dataclass(frozen=True)
class SafetyValve:
    """Rank a list with first-stage weight ``weight`` when ``SIGNALS[signal](scores) < threshold``."""

    signal: str
    threshold: float
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"unknown safety-valve signal {self.signal!r}; known: {', '.join(sorted(SIGNALS))}")
        for name, value in (("threshold", self.threshold), ("weight", self.weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"safety valve {name} must be a finite number, got {value!r}")
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"safety valve weight must be in (0, 1], got {self.weight!r}")

    @classmethod
    def from_dict(cls, data: dict | None) -> SafetyValve | None:
        if data is None:
            return None
        if not isinstance(data, dict) or set(data) - {"signal", "threshold", "weight"} or "signal" not in data \
                or "threshold" not in data:
            raise ValueError(f"a safety valve is {{'signal', 'threshold', 'weight'}}, got {data!r}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    def fires(self, scores: Sequence[float]) -> bool:
        return SIGNALS[self.signal](scores) < self.threshold

    def describe(self) -> str:
        return f"{self.signal} < {self.threshold:g} -> first-stage weight {self.weight:g}"


@dataclass(frozen=True)
class FinalScores:
    """What ranks one list (input order), the fusion weight that made it, and whether the valve fired."""

    scores: list[float]
    weight: float
    valve_fired: bool


def applied_weight(fuse: float | None, valve: SafetyValve | None, signal: float | None) -> tuple[float, bool]:
    """The first-stage weight one list gets, and whether the valve fired: the valve's weight when the list's
    reliability ``signal`` is below its threshold and it weighs more than the fusion, else the fusion weight.
    ``final_scores`` and the every-domain choice (``learn.choose``) both decide here."""
    weight = float(fuse or 0.0)
    if valve is not None and signal is not None and signal < valve.threshold and valve.weight > weight:
        return valve.weight, True
    return weight, False


def final_scores(scores: Sequence[float], fuse: float | None, valve: SafetyValve | None = None) -> FinalScores:
    """Apply the valve and the fusion to one list's attention scores (input order = first-stage order)."""
    scores = [float(s) for s in scores]
    signal = SIGNALS[valve.signal](scores) if valve is not None and scores else None
    weight, fired = applied_weight(fuse, valve, signal)
    if weight and scores:
        scores = fuse_with_first_stage(scores, weight)
    return FinalScores(scores, weight, fired)


def window_order(scores: Sequence[float], first_stage: Sequence[int], fuse: float | None,
                 valve: SafetyValve | None = None) -> tuple[list[int], bool]:
    """One sliding window's order (positions into the window, best first) and whether the valve fired.

    A window is a short list like those the settings were chosen on, so the rule runs per window; fusion and
    the valve read the members' first-stage ranks (``first_stage``: each member's position in the input list),
    not the order earlier windows left them in. Ties keep the window's order."""
    by_first_stage = sorted(range(len(scores)), key=lambda j: first_stage[j])
    final = final_scores([scores[j] for j in by_first_stage], fuse, valve)
    fused = [0.0] * len(scores)
    for k, j in enumerate(by_first_stage):
        fused[j] = final.scores[k]
    return sorted(range(len(scores)), key=lambda j: (-fused[j], j)), final.valve_fired


def fusion_weight(default: float | None, value) -> float | None:
    """A call's fusion weight: ``None`` keeps ``default``; ``0`` / ``False`` switch fusion off; else (0, 1]."""
    if value is None:
        return default
    if value is False:
        return None
    weight = _real(value)
    if weight == 0:
        return None
    if weight is None or not math.isfinite(weight) or not 0.0 < weight <= 1.0:
        raise ValueError(f"fuse_first_stage must be a weight in [0, 1] (0: no fusion) or None (the ranker's "
                         f"setting), got {value!r}")
    return weight


def _real(value) -> float | None:
    """A real number of any type (int, float, numpy scalars, Decimal, Fraction) as a float; None for anything
    else, booleans included (True is not a weight)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        return None
    return float(value)


def valve_setting(default: SafetyValve | None, value) -> SafetyValve | None:
    """A call's safety valve: ``None`` / ``True`` keep ``default``; ``False`` switches it off; a ``SafetyValve``
    (or its dict) replaces it."""
    if value is None or value is True:
        return default
    if value is False:
        return None
    if isinstance(value, SafetyValve):
        return value
    if isinstance(value, dict):
        return SafetyValve.from_dict(value)
    raise ValueError(f"safety_valve must be True / None (the ranker's setting), False (off) or a SafetyValve, "
                     f"got {value!r}")


@dataclass(frozen=True)
class ScoringRule:
    """The whole scoring rule of one head set, from captured attention to the scores that rank a list.

    ``heads`` and ``weights`` (None: a plain sum) combine per-head passage mass; ``calibrate`` subtracts the
    N/A query's; ``token_mask`` is ICR's masking (token level: only ``from_attention`` has the tokens);
    ``fuse_first_stage`` and ``safety_valve`` make the final scores (``final``). Every consumer calls it: the
    ranker on its own capture, shared captures, adaptation and the scripts' searches on per-head masses, so a
    change of rule is one change here.
    """

    heads: tuple[tuple[int, int], ...]
    weights: tuple[float, ...] | None = None
    calibrate: bool = True
    token_mask: bool = False
    fuse_first_stage: float | None = None
    safety_valve: SafetyValve | None = None
    combine: str = "sum"  # headrank.engine.mass.COMBINERS

    def __post_init__(self) -> None:
        from headrank.engine.mass import ScoringConfig

        ScoringConfig(self.calibrate, self.token_mask, self.combine)  # validates the three
        object.__setattr__(self, "heads", tuple((int(layer), int(head)) for layer, head in self.heads))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
            if len(self.weights) != len(self.heads):
                raise ValueError(f"{len(self.weights)} weights for {len(self.heads)} heads")

    @classmethod
    def of(cls, head_set, calibrate: bool = True, token_mask: bool = False, fuse_first_stage: float | None = None,
           safety_valve: SafetyValve | None = None, combine: str = "sum") -> ScoringRule:
        """The rule of a ``HeadSet`` (its heads and weights) with these settings."""
        return cls(tuple(head_set.heads), None if head_set.weights is None else tuple(head_set.weights), calibrate,
                   token_mask, fuse_first_stage, safety_valve, combine)

    def weight_map(self) -> dict[tuple[int, int], float] | None:
        return None if self.weights is None else dict(zip(self.heads, self.weights))

    def from_attention(self, attention, spans, calibration=None):
        """Attention scores (N,) of one list from the head set's captured token mass (and the N/A tail's)."""
        from headrank.engine.mass import COMBINERS, ScoringConfig, head_passage_mass, head_weight_vector, score_passages

        if self.combine == "sum":  # token mass combined first: ICR's masking needs the tokens
            return score_passages(attention, spans, ScoringConfig(self.calibrate, self.token_mask), calibration,
                                  self.weight_map())
        masses = head_passage_mass(attention, spans)
        if self.calibrate:
            if calibration is None:
                raise ValueError("calibrated scoring needs the attention of the N/A query")
            masses = masses - head_passage_mass(calibration, spans)
        return COMBINERS[self.combine](masses, head_weight_vector(attention, self.weight_map()))

    def from_head_masses(self, raw, calibrated, captured_heads):
        """Attention scores (N,) from per-head passage masses (captured heads x N) of an all-head capture."""
        import torch

        from headrank.engine.mass import COMBINERS

        if self.token_mask:
            raise ValueError("ICR's token masking needs token-level attention, not per-head passage masses")
        position = {tuple(h): i for i, h in enumerate(captured_heads)}
        missing = [h for h in self.heads if h not in position]
        if missing:
            raise ValueError(f"heads {missing[:3]} are not in the captured model")
        masses = calibrated if self.calibrate else raw
        picked = masses.index_select(0, torch.tensor([position[h] for h in self.heads], device=masses.device))
        weights = None if self.weights is None else torch.tensor(self.weights, dtype=picked.dtype, device=picked.device)
        return COMBINERS[self.combine](picked, weights)

    def token_terms(self, attention, calibration, start: int, end: int):
        """Per-token contributions to the passage at ``[start, end)``, summed over heads (T,) and per head (H, T);
        they add up to that passage's score from ``from_attention`` (what explanations show)."""
        from headrank.engine.mass import head_weight_vector, icr_token_keep

        if self.combine != "sum":
            raise ValueError(f"explanations split a summed score into tokens; the rule {self.combine!r} is not a sum")
        per_head = attention.token_mass[:, start:end]
        if self.calibrate:
            per_head = per_head - calibration.token_mass[:, start:end]
        weights = head_weight_vector(attention, self.weight_map())
        if weights is not None:  # a weighted head set: each head's term is its weighted mass
            per_head = per_head * weights[:, None]
        total = per_head.sum(dim=0)
        if self.token_mask:  # ICR: masked tokens contribute nothing, as in scoring
            keep = icr_token_keep(total)
            total, per_head = total * keep, per_head * keep
        return total, per_head

    def final(self, scores: Sequence[float]) -> FinalScores:
        """The scores that rank (input order = first-stage order): fusion and the safety valve."""
        return final_scores(scores, self.fuse_first_stage, self.safety_valve)
