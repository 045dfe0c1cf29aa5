"""Haystack: ``HeadRankRanker``, a ``@component`` ranker: ``run(query, documents, top_k)`` returns
``{"documents": [...]}``, best first, copies of the input documents (id, content and meta kept) with
``Document.score`` set to HeadRank's ranking score (it orders one call's documents; it is not a probability). The
documents' order is the first stage's (best first): it is what ``fuse_first_stage`` fuses with. A preset is
loaded by ``warm_up()`` (a ``Pipeline`` calls it) or on first use; ``to_dict`` / ``from_dict`` round-trip a
component built from a preset name, a model path or a server URL (the key as a Haystack ``Secret``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.utils import Secret, deserialize_secrets_inplace
except ImportError as err:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(f"headrank.integrations.haystack needs '{err.name}': pip install 'headrank[haystack]'") from err

from headrank.defaults import DEFAULT_PRESET
from headrank.integrations.source import URL_PREFIXES, check_settings, merged, source_for


@component
class HeadRankRanker:
    """Rerank documents with HeadRank. ``model``: a preset name or model path loaded in this process, or a loaded
    ``HeadRanker``; ``url``: a running ``headrank serve`` instead (``api_key``: its key, by default from
    ``$HEADRANK_API_KEY`` when set). ``load_options`` go to ``HeadRanker.from_pretrained`` (device, dtype, ...)."""

    def __init__(self, model: Any = DEFAULT_PRESET, url: str | None = None, top_k: int | None = 10,
                 fuse_first_stage: float | None = None, safety_valve: bool | None = None,
                 api_key: Secret | None = Secret.from_env_var("HEADRANK_API_KEY", strict=False),
                 load_options: dict | None = None) -> None:
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if url is not None and not url.startswith(URL_PREFIXES):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        check_settings(fuse_first_stage, safety_valve)
        self.model, self.url, self.top_k = model, url, top_k
        self.fuse_first_stage, self.safety_valve = fuse_first_stage, safety_valve
        self.api_key, self.load_options = api_key, dict(load_options or {})
        key = api_key.resolve_value() if api_key is not None else None
        self._source = source_for(url if url else model, api_key=key, **self.load_options)

    def warm_up(self) -> None:
        """Load the model now (a pipeline calls this before its first run)."""
        self._source.load()

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None,
            fuse_first_stage: float | None = None, safety_valve: bool | None = None) -> dict[str, Any]:
        """The ``top_k`` best documents (this call's ``top_k``, fusion weight and valve win over the component's)."""
        top_k = merged(top_k, self.top_k)
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        fuse, valve = merged(fuse_first_stage, self.fuse_first_stage), merged(safety_valve, self.safety_valve)
        check_settings(fuse, valve)
        scored = self._source.rank_texts(query, [d.content or "" for d in documents], fuse, valve)
        return {"documents": [replace(documents[s.index], score=s.score) for s in scored[:top_k]]}

    def to_dict(self) -> dict[str, Any]:
        if not isinstance(self.model, str):
            raise TypeError("a HeadRankRanker built from a loaded ranker cannot be serialised: build it from a "
                            "preset name, a model path or a server URL")
        return default_to_dict(self, model=self.model, url=self.url, top_k=self.top_k,
                               fuse_first_stage=self.fuse_first_stage, safety_valve=self.safety_valve,
                               api_key=self.api_key.to_dict() if self.api_key is not None else None,
                               load_options=self.load_options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadRankRanker:
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)
