"""Request bodies of every API family, the service's error, and the per-request score normalization."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

FUSE_HELP = ("HeadRank extension: fusion weight with the input order for this request (0: off; default: the "
             "server's setting). Fusion treats the input order as a first-stage ranking, best first.")
VALVE_HELP = ("HeadRank extension: the model's safety valve for this request (false: off; default: the server's "
              "setting, else the model's). It moves a list the heads read poorly toward the input order.")


def _not_a_bool(value):
    """true / false are not weights: JSON's true would otherwise pass as 1.0 (fusion fully on the first stage)."""
    if isinstance(value, bool):
        raise ValueError("must be a number in [0, 1] (0: no fusion) or null, not true/false")
    return value


FuseWeight = Annotated[Annotated[float, Field(ge=0.0, le=1.0)] | None, BeforeValidator(_not_a_bool),
                       Field(description=FUSE_HELP)]


class Document(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class RerankRequest(BaseModel):
    """Cohere v1/v2, Jina and vLLM rerank requests (the union of their fields), plus ``fuse_first_stage``."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    query: str
    documents: list[str | Document]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    raw_scores: bool = Field(default=False, description="relevance_score is the heads' raw attention score.")
    return_ranking_scores: bool = Field(default=False, description="HeadRank extension: each result also carries "
                                        "ranking_score (what orders the results) and model_score.")
    fuse_first_stage: FuseWeight = None
    safety_valve: bool | None = Field(default=None, description=VALVE_HELP)


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    query: str
    documents: list[str | Document]
    fuse_first_stage: FuseWeight = None
    safety_valve: bool | None = Field(default=None, description=VALVE_HELP)


class TEIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = Field(default=True, description="Cut a text longer than the model's passage budget (false: "
                                                     "such a text is a 413, as in TEI).")
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        default="Right", description="Which end of a long text is kept: Right cuts the end, Left the beginning.")
    fuse_first_stage: FuseWeight = None
    safety_valve: bool | None = Field(default=None, description=VALVE_HELP)


class ServiceError(Exception):
    """An answer other than 200, with the status, message and error type each route's envelope shows."""

    def __init__(self, status: int, message: str, error_type: str = "Validation", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = status, message, error_type, headers or {}


def texts_of(documents: Sequence[str | Document]) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in documents]


def normalized_scores(scores: Sequence[float]) -> list[float]:
    """Scores to [0, 1] within one request: min-max over the read passages; unread (empty) ones 0. The
    fallback for a model without a relevance calibration."""
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [0.0] * len(scores)
    low, high = min(finite), max(finite)
    if high == low:
        return [0.5 if math.isfinite(s) else 0.0 for s in scores]
    return [(s - low) / (high - low) if math.isfinite(s) else 0.0 for s in scores]


def shown_scores(ranking, n: int, raw: bool) -> list[float | None]:
    """The score each input passage shows (input order): with ``raw``, the heads' own score (None: empty);
    else the calibrated P(relevant) when the ranking carries one, otherwise the heads' scores min-max scaled
    within the request. Never a fusion value: fusion orders the results, the score describes the passage."""
    model = [-math.inf] * n
    calibrated: list[float | None] = [None] * n
    for r in ranking:
        model[r.corpus_id] = r.model_score if r.model_score is not None else -math.inf
        calibrated[r.corpus_id] = r.relevance
    if raw:
        return [s if math.isfinite(s) else None for s in model]
    if all(c is not None for c in calibrated):
        return calibrated
    return normalized_scores(model)


def score_description(raw: bool, calibrated: bool) -> str:
    """What the route's score means for this answer (``meta``, ``/info``)."""
    if raw:
        return "the heads' raw attention score (input-order independent of fusion; comparable within a request)"
    if calibrated:
        return ("P(relevant): the heads' score through the model's relevance calibration (fitted on validation "
                "lists); comparable across requests and usable as a threshold")
    return ("the heads' score min-max scaled within the request (this model has no relevance calibration: "
            "not comparable across requests)")


SCORE_HELP = ("Default: the passage's probability of being relevant, from the model's relevance calibration "
              "(a logistic of the heads' attention score fitted on validation lists; comparable across requests, "
              "usable as a threshold). A model without a calibration returns the heads' scores min-max scaled "
              "within the request (see meta.headrank.scores). With raw_scores: the heads' attention score. "
              "Results are ordered by the ranking rule (fused with the input order when fusion is on), so the "
              "score need not decrease down the list.")


class RerankResult(BaseModel):
    index: int = Field(description="The document's position in the request.")
    relevance_score: float | None = Field(description=SCORE_HELP)
    ranking_score: float | None = Field(default=None, description="HeadRank extension, with return_ranking_scores: "
                                        "the score that orders the results (fused when fusion is on).")
    model_score: float | None = Field(default=None, description="HeadRank extension, with return_ranking_scores: "
                                      "the heads' attention score.")
    document: dict | None = Field(default=None, description="With return_documents: {text, ...} as sent.")


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="Best first by the ranking rule; top_n of them.")
    usage: dict
    meta: dict


class TEIResult(BaseModel):
    index: int
    score: float | None = Field(description=SCORE_HELP)
    text: str | None = Field(default=None, description="With return_text.")


TEI_ROUTES = ("/rerank",)


def envelope(path: str, status: int, message: str, error_type: str, headers: dict | None = None):
    """An error in the envelope of the route's API family: TEI's ``{error, error_type}``, else ``{message}``."""
    from fastapi.responses import JSONResponse

    body = {"error": message, "error_type": error_type} if path in TEI_ROUTES else {"message": message}
    return JSONResponse(body, status_code=status, headers=headers)
