"""Request bodies of every API family, the service's error, and the per-request score normalization."""

from __future__ import annotations

import math
from collections.abc import Sequence

from typing import Annotated

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
    raw_scores: bool = False
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
    truncate: bool = True
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
    """Listwise scores to [0, 1] within one request: min-max over the non-empty passages; empty ones 0."""
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [0.0] * len(scores)
    low, high = min(finite), max(finite)
    if high == low:
        return [0.5 if math.isfinite(s) else 0.0 for s in scores]
    return [(s - low) / (high - low) if math.isfinite(s) else 0.0 for s in scores]


TEI_ROUTES = ("/rerank",)


def envelope(path: str, status: int, message: str, error_type: str, headers: dict | None = None):
    """An error in the envelope of the route's API family: TEI's ``{error, error_type}``, else ``{message}``."""
    from fastapi.responses import JSONResponse

    body = {"error": message, "error_type": error_type} if path in TEI_ROUTES else {"message": message}
    return JSONResponse(body, status_code=status, headers=headers)
