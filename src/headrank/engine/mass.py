"""From captured attention to passage scores: per-head mass, head-set sum, calibration, ICR masking."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from headrank.engine.capture import ListAttention

# Bump when capture or scoring change what a pass yields: every run folder and capture cache key changes
# (evaluate's runs, observe's caches, selection's).
SCORING_VERSION = 2

# How per-head passage masses (heads x N) and the head set's weights (heads,) or None become one score per
# passage. "sum" is the method's rule; a new rule is one function decorated with @combiner("name"), in any
# module the caller imports, then ScoringConfig(combine="name").
COMBINERS: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {}


def combiner(name: str):
    """Register a head-combination rule: ``fn(masses (H, N), weights (H,) or None) -> scores (N,)``."""

    def register(fn):
        COMBINERS[name] = fn
        return fn

    return register


@combiner("sum")
def weighted_sum(masses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """s(i) = sum over the head set of w_h a_h(i) (w_h = 1 without weights)."""
    return masses.sum(dim=0) if weights is None else (masses * weights[:, None]).sum(dim=0)


@dataclass(frozen=True)
class ScoringConfig:
    """``calibrate``: subtract the scores of the content-free query ``N/A``.
    ``token_mask``: ICR's per-passage masking of tokens whose calibrated score is below mean - 2 std.
    ``combine``: the head-combination rule (``COMBINERS``; "sum" is the method's).
    """

    calibrate: bool = True
    token_mask: bool = False
    combine: str = "sum"

    def __post_init__(self) -> None:
        if self.token_mask and not self.calibrate:
            raise ValueError("ICR token masking is defined on calibrated scores; it needs calibrate=True")
        if self.combine not in COMBINERS:
            raise ValueError(f"unknown head-combination rule {self.combine!r}; registered: {', '.join(COMBINERS)}")
        if self.token_mask and self.combine != "sum":
            raise ValueError("ICR token masking is defined for the summed rule")


def passage_mass(token_mass: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Sum token mass over each passage span: (..., prefix_len) -> (..., N)."""
    padded = torch.nn.functional.pad(token_mass, (1, 0))
    cumulative = padded.cumsum(dim=-1)
    starts = torch.tensor([s for s, _ in spans], device=token_mass.device)
    ends = torch.tensor([e for _, e in spans], device=token_mass.device)
    return cumulative.index_select(-1, ends) - cumulative.index_select(-1, starts)


def head_passage_mass(attention: ListAttention, spans: list[tuple[int, int]]) -> torch.Tensor:
    """a_h(i) for every captured head: (len(heads), N)."""
    return passage_mass(attention.token_mass, spans)


def icr_token_keep(tokens: torch.Tensor) -> torch.Tensor:
    """ICR's token mask for one passage: keep tokens whose calibrated score is at least mean - 2 std.

    ">=": a passage of identical token scores keeps its tokens; a one-token passage keeps its token.
    """
    if tokens.numel() <= 1:
        return torch.ones_like(tokens, dtype=torch.bool)
    return tokens >= tokens.mean() - 2 * tokens.std()


def masked_calibrated_scores(
    token_scores: torch.Tensor, calibration: torch.Tensor, spans: list[tuple[int, int]]
) -> torch.Tensor:
    """ICR: per passage, drop tokens whose calibrated score is below mean - 2 std, sum the rest."""
    calibrated = token_scores - calibration
    scores = []
    for start, end in spans:
        tokens = calibrated[start:end]
        scores.append(tokens[icr_token_keep(tokens)].sum())
    return torch.stack(scores)


def head_weight_vector(attention: ListAttention, weights: Mapping[tuple[int, int], float] | None) -> torch.Tensor | None:
    """The head set's weights in the order the capture returned the heads (None: a plain sum)."""
    if weights is None:
        return None
    try:
        values = [weights[tuple(h)] for h in attention.heads]
    except KeyError as err:
        raise ValueError(f"no weight for captured head {err.args[0]}") from None
    return torch.tensor(values, dtype=attention.token_mass.dtype, device=attention.token_mass.device)


def combine_heads(attention: ListAttention, weights: Mapping[tuple[int, int], float] | None = None) -> torch.Tensor:
    """Token mass summed over the head set, each head times its weight when the set has weights: (prefix_len,)."""
    vector = head_weight_vector(attention, weights)
    if vector is None:
        return attention.token_mass.sum(dim=0)
    return (attention.token_mass * vector[:, None]).sum(dim=0)


def score_passages(
    attention: ListAttention,
    spans: list[tuple[int, int]],
    config: ScoringConfig,
    calibration: ListAttention | None = None,
    weights: Mapping[tuple[int, int], float] | None = None,
) -> torch.Tensor:
    """s(i) = sum over the head set of w_h a_h(i) (w_h = 1 without weights), optionally minus the same for
    ``N/A``: (N,)."""
    token_scores = combine_heads(attention, weights)
    if not config.calibrate:
        return passage_mass(token_scores, spans)
    if calibration is None:
        raise ValueError("calibrated scoring needs the attention of the N/A query")
    if calibration.heads != attention.heads or calibration.token_mass.shape != attention.token_mass.shape:
        raise ValueError("calibration attention was captured on different heads or another prompt")
    calibration_scores = combine_heads(calibration, weights)
    if config.token_mask:
        return masked_calibrated_scores(token_scores, calibration_scores, spans)
    return passage_mass(token_scores - calibration_scores, spans)
