"""One interface for every reranker (the shape of the ``rerankers`` library): ``rank``, ``rank_batch``, ``score``
and, where the backend reads attention, ``explain``; one small module per backend behind one factory.

    from headrank.rerankers import load_reranker
    ranker = load_reranker("headrank")                            # the default preset (a HeadRanker)
    ranker = load_reranker("pointwise", model="smollm2-135m-instruct")
    ranker = load_reranker("firststage")                          # the input order itself: a baseline
    ranker.rank("how do vaccines work?", docs, top_k=5)          # a Ranking, best first

Backends, named by method (``headrank.methods``): ``heads`` (alias ``headrank``), ``icr``, ``generative``,
``pointwise``, ``bm25`` (alias ``firststage``: the input order). Each method's code is its backend module here
(``Method.backend``). A backend of your own is any importable module with ``load(model=None, **options) ->
Reranker``, given by its dotted name; adding one is adding one file.
"""

from __future__ import annotations

import importlib

from headrank.methods import ALIASES, Method, names
from headrank.rerankers.base import Reranker, ScoreReranker

BACKENDS = (*names(), *ALIASES)  # every name load_reranker takes besides a module of your own

__all__ = ["BACKENDS", "Reranker", "ScoreReranker", "load_attention_reranker", "load_reranker"]


def load_reranker(backend: str = "headrank", model: str | None = None, **options) -> Reranker:
    """A reranker by backend name (``BACKENDS``, or a module's dotted name for a backend of your own).

    ``model`` and ``options`` go to the backend's ``load`` (e.g. ``device``, ``dtype``, ``heads``,
    ``fuse_first_stage``)."""
    valid = f"choose one of {', '.join(BACKENDS)} or give an importable module's name"
    if isinstance(backend, Method):
        backend = backend.value
    if not isinstance(backend, str) or not all(part.isidentifier() for part in backend.split(".")):
        raise ValueError(f"reranker backend must be a name, got {backend!r}; {valid}")
    known = ALIASES.get(backend) or next((m for m in Method if m.value == backend), None)
    name = known.backend if known else backend
    module = None
    for module_name in (f"headrank.rerankers.{name}", name):  # ours first, then a module of your own
        try:
            module = importlib.import_module(module_name)
            break
        except ModuleNotFoundError as err:
            if err.name not in (module_name, "headrank.rerankers." + name.split(".")[0], name.split(".")[0]):
                raise  # the backend exists but needs something that is missing: say what
    if module is None:
        raise ValueError(f"unknown reranker backend {backend!r}; {valid}")
    if not _is_backend_load(getattr(module, "load", None)):
        raise ValueError(f"{module_name} is not a reranker backend: it has no load(model=None, **options); {valid}")
    reranker = module.load(model, **options)
    missing = [m for m in ("rank", "rank_batch", "score") if not callable(getattr(reranker, m, None))]
    if missing:
        raise TypeError(f"{module_name}.load returned {type(reranker).__name__}, which lacks {', '.join(missing)}")
    return reranker


def _is_backend_load(load) -> bool:
    """A backend's ``load`` takes ``model`` first (``json.load(fp)`` and the like are not backends)."""
    import inspect

    if not callable(load):
        return False
    try:
        first = next(iter(inspect.signature(load).parameters.values()), None)
    except (TypeError, ValueError):
        return False
    return first is not None and first.name == "model"


def load_attention_reranker(model: str | None = None, method: str | None = None, heads=None, **options) -> Reranker:
    """HeadRank or ICR through the factory, named as the CLI, the service and batch jobs name them: ``method``
    None (a preset's or checkpoint's trained heads; ``heads`` given: that head set), "heads" or "icr"."""
    if method == "icr":
        return load_reranker("icr", model, heads=heads, **options)
    return load_reranker("headrank", model, heads=heads, method=method, **options)
