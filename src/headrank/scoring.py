"""From captured attention to passage scores: per-head mass, head-set sum, calibration, ICR masking."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headrank.capture import ListAttention


@dataclass(frozen=True)
class ScoringConfig:
    """``calibrate``: subtract the scores of the content-free query ``N/A``.
    ``token_mask``: ICR's per-passage masking of tokens whose calibrated score is below mean - 2 std.
    """

    calibrate: bool = True
    token_mask: bool = False

    def __post_init__(self) -> None:
        if self.token_mask and not self.calibrate:
            raise ValueError("ICR token masking is defined on calibrated scores; it needs calibrate=True")


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


def score_passages(
    attention: ListAttention,
    spans: list[tuple[int, int]],
    config: ScoringConfig,
    calibration: ListAttention | None = None,
) -> torch.Tensor:
    """s(i) = sum over the head set of a_h(i), optionally minus the same for ``N/A``: (N,)."""
    token_scores = attention.token_mass.sum(dim=0)
    if not config.calibrate:
        return passage_mass(token_scores, spans)
    if calibration is None:
        raise ValueError("calibrated scoring needs the attention of the N/A query")
    if calibration.heads != attention.heads or calibration.token_mass.shape != attention.token_mass.shape:
        raise ValueError("calibration attention was captured on different heads or another prompt")
    calibration_scores = calibration.token_mass.sum(dim=0)
    if config.token_mask:
        return masked_calibrated_scores(token_scores, calibration_scores, spans)
    return passage_mass(token_scores - calibration_scores, spans)
