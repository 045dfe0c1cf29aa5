"""The one vocabulary of method names. The CLI, the Python API (``HeadRanker``, ``load_reranker``), the
service, ``evaluate`` and ``bench`` all resolve a name here, so a name means the same thing everywhere and an
unknown one gets the same message. Imports nothing: the CLI reads it without torch."""

from __future__ import annotations

from enum import Enum


class Method(str, Enum):
    """A reranking method; its value is the canonical name that records, run folders and responses carry."""

    HEADS = "heads"  # HeadRank: a preset's, a checkpoint's or a given head set (backend rerankers/headrank.py)
    ICR = "icr"  # every head, full depth, N/A calibration (Chen et al., ICLR 2025)
    GENERATIVE = "generative"  # RankGPT-style sliding windows that write a permutation
    POINTWISE = "pointwise"  # log P("yes") - log P("no") per passage
    BM25 = "bm25"  # the first stage's own order (BM25 in evaluate; any given list's order elsewhere)

    @property
    def backend(self) -> str:
        """The backend module under ``headrank.rerankers`` that runs this method."""
        return {Method.HEADS: "headrank", Method.BM25: "firststage"}.get(self, self.value)

    @property
    def reads_attention(self) -> bool:
        return self in ATTENTION

    @property
    def is_baseline(self) -> bool:
        return self in BASELINES


ATTENTION = (Method.ICR, Method.HEADS)  # one forward, heads read
BASELINES = (Method.GENERATIVE, Method.POINTWISE)  # generate or score pairs
# Other names accepted for the same methods: the backends' module names and the product's name.
ALIASES = {"headrank": Method.HEADS, "firststage": Method.BM25}


def names(methods=tuple(Method)) -> tuple[str, ...]:
    return tuple(m.value for m in methods)


def resolve(name: object, allowed=tuple(Method)) -> Method:
    """The method a name (or alias) stands for, if ``allowed``; else a ValueError listing the valid names."""
    if isinstance(name, Method):
        found = name
    elif isinstance(name, str):
        found = ALIASES.get(name.strip().lower()) or next((m for m in Method if m.value == name.strip().lower()), None)
    else:
        found = None
    if found is None or found not in allowed:
        valid = ", ".join(names(allowed))
        aliases = [a for a, m in ALIASES.items() if m in allowed]
        also = f" (also {', '.join(f'{a}={ALIASES[a].value}' for a in aliases)})" if aliases else ""
        raise ValueError(f"unknown method {name!r}; choose one of {valid}{also}")
    return found
