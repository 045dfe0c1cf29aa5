"""``ScoreReranker``: any ``score(query, passages) -> list[float]`` made into a full ``Reranker`` (the interface,
defined with the result types in ``headrank.engine.results``): input checks, empty passages last, fusion with the input
order, top_k, with the same rules and result types as ``HeadRanker``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from headrank.engine.checkpoint import InferenceSettings
from headrank.engine.results import ListJob, Ranking, Reranker, list_jobs


def check_baseline_options(max_passage_tokens, fuse_first_stage) -> None:
    """A baseline's options by the same rules as HeadRanker's, checked before its model loads."""
    from headrank.engine.prompt import PromptSettings
    from headrank.engine.rule import fusion_weight

    PromptSettings(max_passage_tokens=max_passage_tokens)
    fusion_weight(None, fuse_first_stage)


def loaded_base_model(model, device: str = "auto", dtype: str = "auto"):
    """A backend's model: an already loaded ``LoadedModel`` as is (bench loads once for every method), else the
    base model of a name, preset or checkpoint (default: the default preset's base model)."""
    if hasattr(model, "tokenizer"):
        return model
    from headrank.defaults import DEFAULT_MODEL
    from headrank.engine.models import load_model
    from headrank.engine.presets import base_model_of

    return load_model(base_model_of(model or DEFAULT_MODEL), device=device, dtype=dtype)


class ScoreReranker(Reranker):
    """A reranker from a score function over the non-empty passages of one list (input order). The function may
    return ``(scores, info)`` with per-list counters (the generative baseline's windows), which
    ``score_with_info`` passes on; ``model`` is the ``LoadedModel`` it runs (None: no model), which evaluate's
    run keys record."""

    def __init__(self, name: str, score_fn: Callable[[str, list[str]], list[float] | tuple[list[float], dict]],
                 fuse_first_stage: float | None = None, model=None) -> None:
        from headrank.engine.rule import fusion_weight

        fusion_weight(None, fuse_first_stage)  # the rule of every call, checked once at construction too
        self.name, self._score_fn, self.fuse_first_stage, self.model = name, score_fn, fuse_first_stage, model

    def __repr__(self) -> str:
        return f"ScoreReranker({self.name!r}, fuse_first_stage={self.fuse_first_stage})"

    def explain(self, *args, **kwargs):
        raise NotImplementedError(f"the {self.name} reranker does not read attention; explanations need headrank")

    def score(self, query: str, docs: Sequence[str], fuse_first_stage: float | None = None,
              safety_valve=None) -> list[float]:
        """Scores in input order (an empty passage gets -inf), fused with the input order when this call's or the
        reranker's fusion weight says so (as ``HeadRanker.score``)."""
        from headrank.engine.rule import final_scores, fusion_weight

        self._no_valve(safety_valve)
        fuse = fusion_weight(self.fuse_first_stage, fuse_first_stage)
        scores = self.score_with_info(query, docs)[0]
        if fuse is None:
            return scores
        kept = [i for i, s in enumerate(scores) if s != float("-inf")]
        fused = final_scores([scores[i] for i in kept], fuse, None).scores
        for i, s in zip(kept, fused):
            scores[i] = s
        return scores

    def _no_valve(self, safety_valve) -> None:
        if safety_valve not in (None, False):
            raise ValueError(f"the {self.name} reranker has no safety valve (it reads no attention); pass "
                             "safety_valve=None or False")

    def score_with_info(self, query: str, docs: Sequence[str]) -> tuple[list[float], dict]:
        """``score`` and the backend's per-list counters (empty when it keeps none)."""
        job = ListJob.make(query, docs, 0)
        result = self._score_fn(job.query, [job.docs[i] for i in job.kept]) if job.kept else []
        kept, info = result if isinstance(result, tuple) else (result, {})
        out = [float("-inf")] * len(docs)
        for i, s in zip(job.kept, kept):
            out[i] = float(s)
        return out, info

    def rank_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str | Mapping]], top_k: int | None = None,
                   return_documents: bool = True, batch_size: int = 4, doc_ids: Sequence[Sequence] | None = None,
                   metadata: Sequence[Sequence] | None = None, fuse_first_stage: float | None = None,
                   safety_valve=None) -> list[Ranking]:
        """Each list scored on its own (``batch_size`` is accepted for the common signature)."""
        from headrank.engine.rule import fusion_weight

        if isinstance(queries, str) or len(queries) != len(docs):
            raise ValueError("rank_batch takes a list of queries and one list of passages per query")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for name, given in (("doc_ids", doc_ids), ("metadata", metadata)):
            if given is not None and (isinstance(given, (str, bytes)) or len(given) != len(queries)):
                raise ValueError(f"{name} must hold one list per query ({len(queries)})")
        self._no_valve(safety_valve)
        fuse = fusion_weight(self.fuse_first_stage, fuse_first_stage)
        out = []
        for job in list_jobs(queries, docs, doc_ids, metadata):
            job.scores = [s for s in self.score_with_info(job.query, list(job.docs))[0] if s != float("-inf")]
            out.append(Ranking(job.results(top_k, return_documents, fuse), InferenceSettings(fuse_first_stage=fuse),
                               query=job.query))
        return out
