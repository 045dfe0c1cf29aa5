"""Adapt a preset to a user's domain: re-select (and re-weight) its heads on a few dozen judged queries, or on
queries the preset's base LLM writes for the user's corpus (``headrank.learn.synthetic``, ``adapt --corpus``).

Heads chosen in one domain travel poorly to another, and heads chosen in-domain on a few dozen queries beat
heads chosen elsewhere (docs/research/adaptation.md, "Adapting to a domain"). ``adapt_preset`` keeps the preset's base model
and LoRA adapter, captures every head of that model once per judged list (cached, resumable), and picks on
a validation split of the user's queries among: the preset's heads, the top-K heads by discriminability
on the training split (plain sum), and non-negative per-head weights fit over the top-M heads
(``weighting.fit_head_weights``), each at the preset's own fusion weight and the others tried, within the
preset's depth (an adapted preset is never slower; the capture stops there too) and with the preset's safety
valve. Candidates are scored and chosen by ``learn.choose`` (its tables and rule, on one domain: the
validation split), the code that chose the shipped default and that build-preset uses. The winner is written
as a new checkpoint directory (same adapter, new head set, chosen inference settings) that every headrank
entry point loads by path. The preset itself is one of the candidates, so the result is never worse than
the preset on the validation split; that split chose it, so report quality on queries it never saw. With
``require_p`` (the default for written queries) the best candidate must also beat the preset on that split by a
paired test, else the preset is written unchanged: written queries are a stand-in for real ones.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from headrank.engine.checkpoint import (
    ADAPTER_DIR,
    CONFIG_NAME,
    HEADSET_NAME,
    InferenceSettings,
    load_checkpoint_config,
    uses_adapter,
)
from headrank.engine.heads import HeadSet
from headrank.engine.observe import SharedCapture, all_head_observer, observe_cached
from headrank.engine.rule import SafetyValve, ScoringRule
from headrank.learn.choose import Domain, ScoredList, Setting, Table, choose
from headrank.learn.selection import HeadObservations, discriminability, order_lists, split_queries
from headrank.learn.weighting import WeightConfig, fit_head_weights

logger = logging.getLogger(__name__)


VALIDATION = "validation"  # the one domain adapt chooses on: the user's validation split
PRESET, PRESET_UNCHANGED = "preset heads", "preset unchanged"
FEW_VALIDATION_QUERIES = 50  # below this, adapt warns that its choice is noisy (docs/research/adaptation.md)


@dataclass(frozen=True)
class AdaptConfig:
    """The search space. ``ks``: plain top-K sets; ``pools``/``l2s``: weighted sets over the top-M heads;
    ``fusion``: first-stage fusion weights tried (None = no fusion); ``keep_fusion``: try only the preset's own
    weight (written queries cannot judge fusion: their first stage is their own source's words);
    ``val_fraction``/``seed``: the split; ``require_p``: adopt the best candidate only when it beats the preset
    on the validation split with a paired sign-flip p below this, else keep the preset (written queries are an
    imperfect stand-in for real ones: a change they cannot back clearly is not worth the risk)."""

    depth: int = 20
    val_fraction: float = 0.3
    seed: int = 0
    ks: tuple[int, ...] = (4, 8, 16, 32)
    pools: tuple[int, ...] = (8, 16, 32, 64)
    l2s: tuple[float, ...] = (0.001, 0.01, 0.1)
    fusion: tuple[float | None, ...] = (None, 0.5)
    keep_fusion: bool = False
    require_p: float | None = None

    def __post_init__(self) -> None:
        if self.depth < 2:
            raise ValueError("depth must be >= 2 passages per list")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be between 0 and 1")
        if any(k < 1 for k in (*self.ks, *self.pools)):
            raise ValueError("K and pool sizes must be >= 1")
        if not self.fusion:
            raise ValueError("need at least one fusion setting (None = no fusion)")
        if self.require_p is not None and not 0 < self.require_p <= 1:
            raise ValueError("require_p must be in (0, 1]")


@dataclass
class Candidate:
    label: str
    heads: list[tuple[int, int]]
    weights: list[float] | None
    fuse: float | None
    val_ndcg: float
    per_query: dict[str, float] = field(default_factory=dict)


@dataclass
class AdaptReport:
    """Before (the preset, its own settings) and after (the chosen candidate) on the validation split."""

    preset: str
    benchmark: str
    train_queries: list[str]
    val_queries: list[str]
    before: Candidate
    after: Candidate
    candidates: list[Candidate]
    out: str
    warning: str | None = None  # set when few validation queries chose something other than the preset
    p_value: float | None = None  # best candidate vs the preset on the validation split (paired sign-flip)
    kept_preset: str | None = None  # why the preset was kept although a candidate scored higher

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("before", "after"):
            data[key].pop("per_query")
        data["candidates"] = [{k: v for k, v in c.items() if k != "per_query"} for c in data["candidates"]]
        return data


def usable_queries(bench, depth: int) -> list[str]:
    """Queries whose top-``depth`` list holds a judged relevant and a non-relevant passage: only they can
    tell one head from another."""
    out = []
    for qid in bench.queries:
        grades = [bench.qrels[qid].get(c.docid, 0) for c in bench.candidates[qid][:depth]]
        if any(g >= bench.relevant_grade for g in grades) and any(g < bench.relevant_grade for g in grades):
            out.append(qid)
    return out


def judged_benchmark(benchmark: str, split: str = "train", data_root: Path | None = None,
                     queries: Path | None = None, max_queries: int | None = None, depth: int = 20, seed: int = 0,
                     cache_dir: Path | None = Path("runs") / "cache"):
    """``adapt --data``: the judged queries (never a reporting set), restricted to the ids listed in
    ``queries`` and/or a seeded sample of ``max_queries`` when asked."""
    from headrank.data.benchmarks import check_training_set, load_benchmark
    from headrank.data.formats import read_text_file, text_lines

    check_training_set(benchmark, split)
    bench = load_benchmark(benchmark, data_root=data_root, cache_dir=cache_dir, split=split)
    if queries is not None:
        bench = restrict_queries(bench, text_lines(read_text_file(queries)))
    if max_queries is not None:
        bench = sample_queries(bench, max_queries, depth, seed)
    return bench


def sample_queries(bench, n: int, depth: int, seed: int = 0):
    """The benchmark restricted to a seeded sample of at most ``n`` usable queries."""
    qids = sorted(usable_queries(bench, depth))
    random.Random(f"adapt/{seed}").shuffle(qids)
    keep = set(qids[:n])
    if not keep:
        raise ValueError(f"{bench.name}: no query has a judged relevant and a non-relevant passage in the top {depth}")
    return replace(bench, queries={q: t for q, t in bench.queries.items() if q in keep})


def restrict_queries(bench, qids):
    """The benchmark restricted to the listed query ids (blank lines ignored); unknown ids are an error."""
    wanted = [q.strip() for q in qids if q.strip()]
    unknown = [q for q in wanted if q not in bench.queries]
    if unknown:
        raise ValueError(f"{bench.name}: {len(unknown)} listed queries are not judged queries with candidates, e.g. "
                         f"{unknown[0]!r}")
    if not wanted:
        raise ValueError("the query list is empty")
    keep = set(wanted)
    return replace(bench, queries={q: t for q, t in bench.queries.items() if q in keep})


def scored_domain(obs: HeadObservations, heads: Sequence[tuple[int, int]], weights: Sequence[float] | None,
                  qrels, reversed_obs: HeadObservations | None = None) -> Domain:
    """The observed lists (first-stage order) scored by a (weighted) head set before fusion, as a one-domain
    ``learn.choose.Domain``; with ``reversed_obs`` (the same lists read backwards) each passage gets the mean of
    its two scores, as a preset that reads both orders does."""
    rule = ScoringRule(tuple(heads), None if weights is None else tuple(weights), True, False)
    backwards = {} if reversed_obs is None else {q: i for i, q in enumerate(reversed_obs.qids)}
    lists = []
    for i, (docids, qid) in enumerate(zip(obs.docids, obs.qids)):
        scores = rule.from_head_masses(obs.raw[i], obs.calibrated[i], obs.heads)
        if reversed_obs is not None:
            j = backwards[qid]
            back = rule.from_head_masses(reversed_obs.raw[j], reversed_obs.calibrated[j], reversed_obs.heads)
            where = {d: k for k, d in enumerate(reversed_obs.docids[j])}
            scores = (scores + back[[where[d] for d in docids]]) / 2
        lists.append(ScoredList(qid, tuple(docids), tuple(scores.tolist())))
    return Domain(VALIDATION, lists, qrels, len(lists))


def domain_table(domain: Domain, fusions: Sequence[float | None], valve: SafetyValve | None) -> Table:
    """The domain's ``learn.choose.Table`` at every first-stage weight the settings can apply."""
    return Table.build(domain, [f or 0.0 for f in fusions] + ([valve.weight] if valve else []))


def score_lists(obs: HeadObservations, heads: Sequence[tuple[int, int]], weights: Sequence[float] | None,
                fuse: float | None, qrels, reversed_obs: HeadObservations | None = None,
                valve: SafetyValve | None = None) -> dict[str, float]:
    """Per-query nDCG@10 of a (weighted) head set on observed lists, with fusion and the valve as they run."""
    table = domain_table(scored_domain(obs, heads, weights, qrels, reversed_obs), [fuse], valve)
    return dict(zip((x.qid for x in table.domain.lists), table.per_query(Setting(fuse or 0.0, valve))))


def head_sets(train: HeadObservations, qrels, preset_heads: HeadSet,
              config: AdaptConfig) -> list[tuple[str, list[tuple[int, int]], list[float] | None]]:
    """The head sets the search compares, the preset's first: top-K by discriminability on the training lists
    and weights fitted over the top M, within the preset's depth (an adapted preset is never slower)."""
    sets = [(PRESET, list(preset_heads.heads), None if preset_heads.weights is None else list(preset_heads.weights))]
    d = discriminability(train, qrels)
    depth = preset_heads.deepest_layer
    order = [i for i in torch.argsort(d, descending=True, stable=True).tolist() if train.heads[i][0] <= depth]
    for k in config.ks:
        sets.append((f"top-{k} heads", [train.heads[i] for i in order[:k]], None))
    for m in config.pools:
        for l2 in config.l2s:
            pool = order[:m]
            try:
                w = fit_head_weights(train, qrels, pool, WeightConfig(l2=l2))
            except ValueError as err:  # e.g. every weight went to zero: this candidate drops out, the rest stay
                logger.warning("skipping weighted top-%d (l2 %g): %s", m, l2, err)
                continue
            keep = [(train.heads[i], float(x)) for i, x in zip(pool, w.tolist()) if x > 0]
            sets.append((f"weighted top-{m} (l2 {l2})", [h for h, _ in keep], [x for _, x in keep]))
    return sets


@dataclass
class Search:
    """Every candidate scored on the validation split (the preset unchanged first) and the one the every-domain
    rule (``learn.choose.choose``, one domain) picks."""

    candidates: list[Candidate]
    best: Candidate


def search(train: HeadObservations, val: HeadObservations, qrels, preset_heads: HeadSet,
           preset_fuse: float | None, config: AdaptConfig,
           val_reversed: HeadObservations | None = None, valve: SafetyValve | None = None) -> Search:
    """Every head set (``head_sets``) at every fusion weight tried (the preset's own first), each with the
    preset's safety valve as it will run, scored on ``val`` (in both orders when ``val_reversed`` is given)
    through ``learn.choose``'s tables; the choice is ``learn.choose.choose``'s, ties to the earlier candidate
    (the preset unchanged first)."""
    fusions = [preset_fuse] + ([] if config.keep_fusion else [f for f in config.fusion if f != preset_fuse])
    sets = head_sets(train, qrels, preset_heads, config)
    tables = {label: {VALIDATION: domain_table(scored_domain(val, heads, weights, qrels, val_reversed), fusions,
                                               valve)} for label, heads, weights in sets}
    settings = [Setting(f or 0.0, valve) for f in fusions]
    candidates, by_key = [], {}
    for label, heads, weights in sets:
        table = tables[label][VALIDATION]
        for fuse, setting in zip(fusions, settings):
            per_query = dict(zip((x.qid for x in table.domain.lists), table.per_query(setting)))
            name = PRESET_UNCHANGED if (label, fuse) == (PRESET, preset_fuse) else label
            candidates.append(Candidate(name, heads, weights, fuse, table.mean(setting), per_query))
            by_key[(label, setting)] = candidates[-1]
    choice = choose(tables, settings=settings)
    return Search(candidates, by_key[(choice.label, choice.setting)])


def guarded_choice(candidates: Sequence[Candidate], best: Candidate,
                   require_p: float | None) -> tuple[Candidate, float | None, str | None]:
    """``best`` (the rule's pick), its paired p-value against the preset (``candidates[0]``) on the validation
    split, and, when ``require_p`` is set and the best does not clear it, the preset with the reason it was kept."""
    from headrank.eval.compare import sign_flip_p_value

    preset = candidates[0]
    if best is preset:
        return preset, None, None
    p = sign_flip_p_value([best.per_query[q] - preset.per_query[q] for q in preset.per_query])
    if require_p is not None and p >= require_p:
        return preset, p, (f"{best.label} scored {best.val_ndcg:.4f} against the preset's {preset.val_ndcg:.4f} on "
                           f"the validation split, p {p:.3f} >= {require_p:g}: not clearly better, the preset is kept")
    return best, p, None


def check_adapt_output(preset: str | Path, out: str | Path, overwrite: bool = False) -> None:
    """Before any model loads: ``out`` is a new or empty folder, or (with ``overwrite``) a checkpoint to replace;
    never the checkpoint being adapted, and never a folder that holds anything else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; adapt writes a checkpoint folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / CONFIG_NAME).is_file():
        raise FileExistsError(f"{out} exists and is not a checkpoint directory; refusing to overwrite it")
    if Path(preset).exists() and Path(preset).resolve() == out.resolve():
        raise FileExistsError(f"{out} is the checkpoint being adapted; write the adapted one to another folder")
    if not overwrite:
        raise FileExistsError(f"{out} already holds a checkpoint; pass --overwrite (overwrite=True) to replace it "
                              "(its head set, adapter, settings and model card), or choose another folder")


def adapt_preset(preset: str | Path, bench, out: str | Path, config: AdaptConfig = AdaptConfig(), *,
                 cache_dir: Path | None = None, device: str = "auto", dtype: str = "auto",
                 on_list: Callable[[str, int, int], None] | None = None, overwrite: bool = False) -> AdaptReport:
    """Re-select and re-weight a preset's heads on ``bench`` (judged queries), write the result to ``out``
    (an existing checkpoint there only with ``overwrite``)."""
    from headrank.engine.checkpoint import is_checkpoint
    from headrank.engine.presets import available_presets, is_preset_name
    from headrank.engine.ranker import HeadRanker

    if not (is_preset_name(str(preset)) or is_checkpoint(preset)):
        raise ValueError(f"unknown preset {str(preset)!r}: adapt starts from a shipped preset "
                         f"({', '.join(available_presets())}) or a checkpoint directory")
    out = Path(out)
    check_adapt_output(preset, out, overwrite)
    ranker = HeadRanker.from_pretrained(str(preset), device=device, dtype=dtype)
    if ranker.window:
        raise ValueError("adapt scores whole lists; the preset must not use sliding windows")
    qids = usable_queries(bench, config.depth)
    if len(qids) < 4:
        raise ValueError(f"{bench.name}: {len(qids)} usable judged queries (a relevant and a non-relevant passage in "
                         f"the top {config.depth}); adapting needs at least 4, better a few dozen")
    train_q, val_q = split_queries(qids, config.val_fraction, config.seed)
    lists = {q: (q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q][: config.depth]]) for q in qids}
    # candidates stay within the preset's depth (search), so the capture stops there too
    shared = SharedCapture(all_head_observer(ranker, ranker.heads.deepest_layer),
                           Path(cache_dir or out.parent / f".{out.name}-capture"))
    progress = (lambda stage: (lambda done, total: on_list(stage, done, total))) if on_list else (lambda stage: None)
    # training lists shuffled (a head must follow relevance, not position); validation as users feed them
    train = observe_cached(shared, order_lists([lists[q] for q in train_q], "shuffled", config.seed),
                           progress("observing training lists"))
    val = observe_cached(shared, [lists[q] for q in val_q], progress("observing validation lists"))
    val_reversed = None
    if ranker.both_orders:  # the preset reads both orders: so does every candidate
        val_reversed = observe_cached(shared, order_lists([lists[q] for q in val_q], "reversed"),
                                      progress("observing reversed validation lists"))
    found = search(train, val, bench.qrels, ranker.heads, ranker.fuse_first_stage, config, val_reversed,
                   ranker.safety_valve)
    candidates, before = found.candidates, found.candidates[0]
    after, p_value, kept_preset = guarded_choice(candidates, found.best, config.require_p)
    write_adapted(Path(ranker.model.path), out, ranker.heads, after, bench.name, train_q, val_q, str(preset), config)
    logger.info("adapted %s on %s: validation nDCG@10 %.4f -> %.4f (%s)", preset, bench.name, before.val_ndcg,
                after.val_ndcg, after.label)
    warning = None
    if len(val_q) < FEW_VALIDATION_QUERIES and after is not before:
        warning = (f"{len(val_q)} validation queries chose among {len(candidates)} candidates; with so few the choice "
                   "is noisy (docs/research/adaptation.md: 18 NFCorpus queries picked a set that lost on the test "
                   "queries): measure it on held-out queries")
    return AdaptReport(str(preset), bench.name, train_q, val_q, before, after, candidates, str(out), warning,
                       p_value, kept_preset)


def write_adapted(source: Path, out: Path, preset_heads: HeadSet, chosen: Candidate, benchmark: str,
                  train_q: list[str], val_q: list[str], preset: str, config: AdaptConfig) -> None:
    """A checkpoint directory: the preset's config and adapter, the chosen head set and inference settings. A
    model card left by an earlier checkpoint there is removed: it would describe another model."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").unlink(missing_ok=True)
    head_set = replace(preset_heads, heads=tuple(chosen.heads),
                       weights=None if chosen.weights is None else tuple(chosen.weights),
                       name=f"adapted-{benchmark}",
                       selection={"adapted_from": preset, "benchmark": benchmark, "candidate": chosen.label,
                                  "train_queries": train_q, "val_queries": val_q, "val_ndcg@10": chosen.val_ndcg,
                                  "search": asdict(config)})
    head_set.save(out / HEADSET_NAME)
    cfg = load_checkpoint_config(source)
    shutil.rmtree(out / ADAPTER_DIR, ignore_errors=True)
    if uses_adapter(source, cfg):
        shutil.copytree(source / ADAPTER_DIR, out / ADAPTER_DIR)
    inference = InferenceSettings.from_dict(cfg.get("inference"))
    cfg["inference"] = replace(inference, fuse_first_stage=chosen.fuse).to_dict()
    cfg.pop("card", None)
    cfg.pop("preset", None)  # not a shipped preset: it is loaded by its path
    cfg["adapted_from"] = {"preset": preset, "benchmark": benchmark, "candidate": chosen.label,
                           "val_queries": len(val_q), "val_ndcg@10": chosen.val_ndcg}
    (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
