"""Where a pipeline component's scores come from: a HeadRank ranker in this process, or a running ``headrank
serve`` over HTTP. Both give the same thing, each passage's position and ranking score, best first."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from headrank.engine.rule import fusion_weight

URL_PREFIXES = ("http://", "https://")


@dataclass(frozen=True)
class Scored:
    """One passage of a ranked list: its position in the caller's list, its rank (1 = best) and its ranking
    score (the fused score when fusion is on; comparable within one call only). ``None``: an empty passage."""

    index: int
    rank: int
    score: float | None


def check_settings(fuse_first_stage: Any = None, safety_valve: Any = None) -> None:
    """The same rules as ``HeadRanker.rank``, checked when a component is built, not after a model ran."""
    fusion_weight(None, fuse_first_stage)
    if safety_valve is not None and not isinstance(safety_valve, bool):
        raise ValueError(f"safety_valve must be True, False or None (the ranker's setting), got {safety_valve!r}")


def merged(call: Any, component: Any) -> Any:
    """A per-call setting wins over the component's; None means "not set"."""
    return component if call is None else call


class LocalSource:
    """A ranker in this process: a loaded ``HeadRanker`` (or any object with its ``rank``), or a preset name /
    model path loaded on first use (``load()`` loads it now, e.g. from a framework's warm-up)."""

    def __init__(self, ranker: Any = None, name: str | None = None, **load_options: Any) -> None:
        self.ranker, self.name, self.load_options = ranker, name, load_options

    def load(self) -> Any:
        if self.ranker is None:
            from headrank.engine.ranker import HeadRanker

            self.ranker = HeadRanker.from_pretrained(self.name, **self.load_options)
        return self.ranker

    def rank_texts(self, query: str, texts: Sequence[str], fuse_first_stage: Any = None,
                   safety_valve: Any = None) -> list[Scored]:
        if not texts:
            return []
        ranking = self.load().rank(query, list(texts), fuse_first_stage=fuse_first_stage, safety_valve=safety_valve)
        return [Scored(r.corpus_id, r.rank, r.score if math.isfinite(r.score) else None) for r in ranking]


class RemoteSource:
    """A running ``headrank serve``: its ``POST /v1/rerank`` with ``return_ranking_scores``, so a pipeline on one machine
    can rank on a GPU service elsewhere. ``api_key``: the server's ``--api-key``; ``model``: a preset the server
    serves (None: its served model)."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None, timeout: float = 120.0):
        if not url.startswith(URL_PREFIXES):
            raise ValueError(f"a headrank serve URL starts with http:// or https://, got {url!r}")
        self.url, self.api_key, self.model, self.timeout = url.rstrip("/"), api_key, model, timeout

    def load(self) -> None:
        """Nothing to load: the server holds the model."""

    def rank_texts(self, query: str, texts: Sequence[str], fuse_first_stage: Any = None,
                   safety_valve: Any = None) -> list[Scored]:
        if not texts:
            return []
        body = {"query": query, "documents": list(texts), "return_ranking_scores": True, "model": self.model,
                "fuse_first_stage": fuse_first_stage, "safety_valve": safety_valve}
        answer = self._post("/v1/rerank", {k: v for k, v in body.items() if v is not None})
        return [Scored(row["index"], rank, row["ranking_score"])
                for rank, row in enumerate(answer["results"], start=1)]

    def _post(self, path: str, body: dict) -> dict:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, json.dumps(body).encode("utf-8"), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"headrank serve at {self.url} answered {err.code}: {_message(err)}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ConnectionError(f"cannot reach headrank serve at {self.url}: {reason}") from None


def _message(err: urllib.error.HTTPError) -> str:
    """The server's own message from its error envelope, else the HTTP reason."""
    try:
        body = json.loads(err.read().decode("utf-8"))
        return str(body.get("message") or body.get("error") or body)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return str(err.reason)


def source_for(reranker: Any, api_key: str | None = None, **load_options: Any) -> LocalSource | RemoteSource:
    """A preset name or model path (loaded lazily), a ``headrank serve`` URL, a loaded ranker, or a source."""
    if isinstance(reranker, (LocalSource, RemoteSource)):
        return reranker
    if isinstance(reranker, str) and reranker.startswith(URL_PREFIXES):
        return RemoteSource(reranker, api_key=api_key)
    if isinstance(reranker, str) and reranker.strip():
        return LocalSource(name=reranker, **load_options)
    if callable(getattr(reranker, "rank", None)):
        return LocalSource(ranker=reranker)
    raise TypeError("reranker must be a preset name or model path, the URL of a running `headrank serve` "
                    f"(http://...), or a loaded HeadRanker; got {type(reranker).__name__} {reranker!r}")
