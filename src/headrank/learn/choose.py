"""The every-domain choice: which heads, fusion weight and safety valve a preset ships, chosen on validation
domains by one rule, with the leave-one-domain-out estimate of what a new domain can expect.

The rule (issue 30): among all settings, the one with the largest mean gain in nDCG@10 over the first stage
across the domains, among those that gain at least ``floor`` on every domain; when none does, the one with the
largest worst-domain gain (``rule="worst"``: always the latter). A domain's mean is over all its judged queries
(a query without a relevant passage in the top K scores 0 under any order and counts as such). Settings: fusion
weights ``FUSIONS`` (0: off), with no valve or a valve per reliability signal (``rule.SIGNALS``) whose
threshold is a quantile (``VALVE_QUANTILES``) of the signal over the domains' lists and whose first-stage
weight is one of ``VALVE_WEIGHTS`` (above the fusion weight). Head candidates, when heads are chosen too, come
from an all-head pool (``engine.observe``): top-K by discriminability on training lists, or fitted weights.

Every ranking goes through ``rule.final_scores`` and ``rule.applied_weight``, the functions the ranker runs: a
list's nDCG is computed once per first-stage weight, and a setting picks, per list, the weight the rule gives it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from headrank.engine.observe import HeadObservations
from headrank.engine.rule import SIGNALS, SafetyValve, ScoringRule, applied_weight, final_scores
from headrank.learn.selection import discriminability, ndcg_at_10
from headrank.learn.weighting import WeightConfig, fit_head_weights

FUSIONS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
VALVE_WEIGHTS = (0.8, 1.0)
VALVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5)
RULES = ("floor-mean", "worst")
# The validation domains the shipped presets were chosen on: name -> benchmark set (data/benchmarks names).
VALIDATION_DOMAINS = {"dl21-val": "dl21", "nfcorpus-dev": "nfcorpus-dev", "cranfield": "cranfield", "cisi": "cisi",
                      "npl": "npl"}


def ndcg10(scores: Sequence[float], docids: Sequence[str], judged: Mapping[str, int]) -> float:
    """nDCG@10 of one list ranked by ``scores`` (ties keep the input order): selection's measure, one list."""
    return float(ndcg_at_10(torch.tensor([list(scores)], dtype=torch.float64), docids, dict(judged))[0])


@dataclass(frozen=True)
class ScoredList:
    """One query's list in first-stage order and a scorer's attention score for each passage."""

    qid: str
    docids: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass
class Domain:
    """One validation domain: its lists, judgments and how many judged queries its mean is over."""

    name: str
    lists: list[ScoredList]
    qrels: Mapping[str, Mapping[str, int]]
    total: int

    def __post_init__(self) -> None:
        if not self.lists:
            raise ValueError(f"domain {self.name!r} has no lists to choose on")
        if self.total < len(self.lists):
            raise ValueError(f"domain {self.name!r}: total {self.total} < {len(self.lists)} lists")
        self.first_stage = [ndcg10([-float(k) for k in range(len(x.docids))], x.docids, self.qrels.get(x.qid, {}))
                            for x in self.lists]

    def with_scores(self, scores: Sequence[Sequence[float]]) -> Domain:
        """The same lists under another scorer (a head candidate)."""
        lists = [ScoredList(x.qid, x.docids, tuple(map(float, s))) for x, s in zip(self.lists, scores, strict=True)]
        return Domain(self.name, lists, self.qrels, self.total)


@dataclass(frozen=True)
class Setting:
    """What ranks a list after the heads: a fusion weight with the first stage (0: off) and a safety valve."""

    fuse: float = 0.0
    valve: SafetyValve | None = None

    def describe(self) -> str:
        return f"fusion {self.fuse:g}, " + (self.valve.describe() if self.valve else "no valve")

    def to_dict(self) -> dict:
        return {"fuse": self.fuse, "valve": self.valve.to_dict() if self.valve else None}


@dataclass
class Table:
    """One domain under one scorer: each list's nDCG@10 at every first-stage weight a setting can apply (via
    ``rule.final_scores``) and each reliability signal, so that settings compare without re-ranking."""

    domain: Domain
    weights: tuple[float, ...]
    ndcg: dict[float, list[float]] = field(default_factory=dict)
    signals: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def build(cls, domain: Domain, weights: Iterable[float] = (*FUSIONS, *VALVE_WEIGHTS)) -> Table:
        weights = tuple(sorted(set(weights)))
        table = cls(domain, weights)
        for w in weights:
            table.ndcg[w] = [ndcg10(final_scores(x.scores, w or None).scores, x.docids, domain.qrels.get(x.qid, {}))
                             for x in domain.lists]
        table.signals = {n: [fn(list(x.scores)) for x in domain.lists] for n, fn in SIGNALS.items()}
        return table

    def per_query(self, setting: Setting) -> list[float]:
        """Each list's nDCG@10 under ``setting``: the weight ``rule.applied_weight`` gives that list."""
        signal = self.signals[setting.valve.signal] if setting.valve else [None] * len(self.domain.lists)
        return [self.ndcg[applied_weight(setting.fuse, setting.valve, s)[0]][i] for i, s in enumerate(signal)]

    def gain(self, setting: Setting) -> float:
        """Mean gain over the first stage, over all the domain's judged queries."""
        return (sum(self.per_query(setting)) - sum(self.domain.first_stage)) / self.domain.total

    def mean(self, setting: Setting) -> float:
        return sum(self.per_query(setting)) / self.domain.total


def rule_floor(rule: str, floor: float = 0.0) -> float:
    """The worst-domain rule is the floor rule with a floor no setting meets: its fallback decides."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    return math.inf if rule == "worst" else floor


def objective(gains: Sequence[float], floor: float) -> tuple:
    """Larger is better: settings gaining ``floor`` everywhere first (by mean, then worst), then the rest by worst."""
    worst, mean = min(gains), sum(gains) / len(gains)
    return (1, round(mean, 6), round(worst, 6)) if worst >= floor else (0, round(worst, 6), round(mean, 6))


def valve_grid(tables: Iterable[Table]) -> list[SafetyValve | None]:
    """No valve, or one per signal, threshold at a quantile of the signal pooled over the tables' lists."""
    tables = list(tables)
    out: list[SafetyValve | None] = [None]
    for name in SIGNALS:
        pooled = torch.tensor([v for t in tables for v in t.signals[name]], dtype=torch.float64)
        pooled = pooled[torch.isfinite(pooled)]
        if pooled.numel() == 0:
            continue
        for q in VALVE_QUANTILES:
            out += [SafetyValve(name, float(torch.quantile(pooled, q)), w) for w in VALVE_WEIGHTS]
    return out


def settings_grid(tables: Iterable[Table], fusions: Sequence[float] = FUSIONS, valves: bool = True) -> list[Setting]:
    """Every setting the rule compares: each valve (or none, only, without ``valves``) with each fusion weight
    below the valve's weight."""
    grid = valve_grid(tables) if valves else [None]
    return [Setting(fuse, valve) for valve in grid for fuse in fusions if valve is None or valve.weight > fuse]


@dataclass(frozen=True)
class Choice:
    """The chosen candidate (a head set's label) and setting, and the rule's key for it."""

    label: str
    setting: Setting
    key: tuple


def choose(candidates: Mapping[str, Mapping[str, Table]], floor: float = 0.0, fusions: Sequence[float] = FUSIONS,
           valves: bool = True, settings: Sequence[Setting] | None = None) -> Choice:
    """The best (candidate, setting) by ``objective`` over the candidates' tables (label -> domain -> table);
    ties keep the first in candidate, valve and fusion order (list the cheaper first). ``settings``: an explicit
    grid instead of ``settings_grid`` (adapt keeps the preset's valve)."""
    best: Choice | None = None
    for label, tables in candidates.items():
        for setting in settings if settings is not None else settings_grid(tables.values(), fusions, valves):
            key = objective([t.gain(setting) for t in tables.values()], floor)
            if best is None or key > best.key:
                best = Choice(label, setting, key)
    if best is None:
        raise ValueError("no candidate to choose from")
    return best


def leave_one_domain_out(candidates_for: Callable[[list[str]], Mapping[str, Mapping[str, Table]]],
                         domains: Sequence[str], floor: float = 0.0) -> dict[str, tuple[Choice, float]]:
    """For each domain: the choice made without it (on candidates built from the other domains) and its gain on
    the held-out domain, what a new domain can expect. ``candidates_for(fold)`` must also hold the held-out
    domain's table for each candidate."""
    out = {}
    for held in domains:
        fold = [d for d in domains if d != held]
        candidates = candidates_for(fold)
        choice = choose({label: {d: t[d] for d in fold} for label, t in candidates.items()}, floor)
        out[held] = (choice, candidates[choice.label][held].gain(choice.setting))
    return out


def report(choice: Choice, tables: Mapping[str, Table], lodo: Mapping[str, tuple[Choice, float]]) -> dict:
    """The chosen setting with the card's validation rows: first stage, chosen and leave-one-domain-out nDCG@10
    per domain (means over all judged queries) and the queries each mean is over."""
    return {"label": choice.label, "setting": choice.setting.to_dict(), "key": list(choice.key),
            "queries": {n: [len(t.domain.lists), t.domain.total] for n, t in tables.items()},
            "first_stage": {n: sum(t.domain.first_stage) / t.domain.total for n, t in tables.items()},
            "chosen": {n: t.mean(choice.setting) for n, t in tables.items()},
            "lodo": {n: sum(tables[n].domain.first_stage) / tables[n].domain.total + gain for n, (_, gain) in lodo.items()},
            "lodo_settings": {n: {"label": c.label, **c.setting.to_dict()} for n, (c, _) in lodo.items()}}


def choose_setting(domains: Mapping[str, Domain], floor: float = 0.0) -> dict:
    """The fusion weight and valve for one scorer's lists (the heads fixed), with the leave-one-domain-out rows."""
    tables = {n: Table.build(d) for n, d in domains.items()}
    choice = choose({"heads": tables}, floor)
    lodo = leave_one_domain_out(lambda fold: {"heads": tables}, list(tables), floor)
    return report(choice, tables, lodo)


def read_scored_lists(path: str | Path, column: str = "scores") -> dict[str, list[ScoredList]]:
    """Recorded per-list scores (JSONL: ``set``, ``qid``, ``docids`` in first-stage order, and ``column``)."""
    from headrank.data.formats import DataFormatError, jsonl_objects, read_text

    text, name = read_text(Path(path))
    out: dict[str, list[ScoredList]] = {}
    for lineno, row in jsonl_objects(text, name):
        values = row.get(column)
        if not isinstance(row.get("set"), str) or not isinstance(row.get("docids"), list) \
                or not isinstance(values, list) or len(values) != len(row["docids"]):
            raise DataFormatError(f"{name}:{lineno}: a scored list needs 'set', 'qid', 'docids' and as many "
                                  f"{column!r} scores")
        out.setdefault(row["set"], []).append(ScoredList(str(row["qid"]), tuple(map(str, row["docids"])),
                                                         tuple(float(v) for v in values)))
    return out


def domain_from_benchmark(name: str, lists: list[ScoredList], bench, depth: int = 20) -> Domain:
    """A domain of ``lists`` on ``bench``: the mean is over all judged queries when every query with a relevant
    passage in the top ``depth`` is listed (the rest score 0 under any order), else over the lists."""
    with_relevant = {q for q in bench.queries if any(bench.qrels.get(q, {}).get(c.docid, 0) >= bench.relevant_grade
                                                     for c in bench.candidates[q][:depth])}
    complete = with_relevant <= {x.qid for x in lists}
    return Domain(name, lists, bench.qrels, len(bench.queries) if complete else len(lists))


def validation_domains(scored: Mapping[str, list[ScoredList]], names: Mapping[str, str] = VALIDATION_DOMAINS,
                       data_root=None) -> dict[str, Domain]:
    """The named validation domains of recorded scores (domain name -> recorded set name)."""
    from headrank.data.benchmarks import load_set

    missing = [s for s in names.values() if s not in scored]
    if missing:
        raise ValueError(f"the recorded scores hold no lists of {', '.join(missing)} (they hold "
                         f"{', '.join(sorted(scored))})")
    return {n: domain_from_benchmark(n, scored[s], load_set(s, data_root)) for n, s in names.items()}


def write_choice(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ heads from a pool


@dataclass
class PoolDomain:
    """A validation domain observed on every head (``engine.observe``): lists in the same order as ``obs``."""

    domain: Domain
    obs: HeadObservations

    def tables(self, idx: Sequence[int], weights: torch.Tensor) -> Table:
        """The domain's table under the head set ``idx`` (indices into the pool's heads) with ``weights``."""
        rule = ScoringRule(tuple(self.obs.heads[j] for j in idx), tuple(weights.tolist()))
        scores = [rule.from_head_masses(self.obs.raw[i], self.obs.calibrated[i], self.obs.heads).tolist()
                  for i in range(len(self.obs.qids))]
        return Table.build(self.domain.with_scores(scores))


@dataclass(frozen=True)
class HeadCandidate:
    label: str
    idx: tuple[int, ...]
    weights: torch.Tensor = field(compare=False)


TOP_K = (4, 8, 16, 32)
TRAIN_FITS = ((16, 0.01), (16, 0.1), (32, 0.01), (32, 0.1), (64, 0.01), (64, 0.1))  # (top M, l2)
FOLD_FITS = ((32, 0.1),)  # fits are the slow part; the fold-dependent orderings get one


def head_orderings(d_train: Mapping[str, torch.Tensor], d_val: Mapping[str, torch.Tensor],
                   allowed: Sequence[int]) -> dict[str, list[int]]:
    """Allowed heads ordered by D_h on the training lists, and by the mean / the minimum of per-domain D_h over
    the training lists and the fold's validation domains."""
    both = torch.stack(list(d_train.values()) + list(d_val.values()))
    ranked = {"train D_h": torch.stack(list(d_train.values())).mean(0), "mean D_h": both.mean(0),
              "min D_h": both.min(0).values}
    return {name: sorted(allowed, key=lambda i: (-float(v[i]), i)) for name, v in ranked.items()}


def head_candidates(orderings: Mapping[str, list[int]], train: HeadObservations, train_qrels: Mapping,
                    fits: dict) -> list[HeadCandidate]:
    """Top-K of each ordering as a plain sum, and non-negative weights fitted on the training lists over its top
    M (``fits`` caches fits across folds)."""
    out = []
    for name, order in orderings.items():
        out += [HeadCandidate(f"{name} top-{k}", tuple(order[:k]), torch.ones(k)) for k in TOP_K if k <= len(order)]
        for m, l2 in TRAIN_FITS if name == "train D_h" else FOLD_FITS:
            if m > len(order):
                continue
            key = (tuple(order[:m]), l2)
            if key not in fits:
                fits[key] = fit_head_weights(train, dict(train_qrels), order[:m], WeightConfig(l2=l2))
            w = fits[key]
            keep = tuple(i for i, x in zip(order[:m], w.tolist()) if x > 0)
            if keep:
                out.append(HeadCandidate(f"{name} weights over top-{m} (l2 {l2})", keep, w[w > 0]))
    return out


def choose_heads(domains: Mapping[str, PoolDomain], train: HeadObservations, train_qrels: Mapping,
                 d_train: Mapping[str, torch.Tensor], cap: int, floor: float = 0.0) -> dict:
    """Heads (below layer ``cap``), weights, fusion and valve by the every-domain rule, each fold's candidates
    ordered with that fold's domains only; the shipped choice uses all domains."""
    heads = train.heads
    allowed = [i for i, h in enumerate(heads) if h[0] < cap]
    if not allowed:
        raise ValueError(f"no observed head lies below layer {cap}")
    d_val = {n: discriminability(pd.obs, pd.domain.qrels) for n, pd in domains.items()}
    fits: dict = {}
    cache: dict = {}
    made: dict[str, HeadCandidate] = {}

    def candidates_for(fold: list[str]) -> dict[str, dict[str, Table]]:
        out = {}
        for c in head_candidates(head_orderings(d_train, {n: d_val[n] for n in fold}, allowed), train,
                                 train_qrels, fits):
            key = (c.idx, tuple(round(x, 8) for x in c.weights.tolist()))
            if key not in cache:
                cache[key] = {n: pd.tables(c.idx, c.weights) for n, pd in domains.items()}
            label = f"{c.label} [{'+'.join(fold)}]"
            made[label] = c
            out[label] = cache[key]
        return out

    everything = candidates_for(list(domains))
    choice = choose(everything, floor)
    lodo = leave_one_domain_out(candidates_for, list(domains), floor)
    result = report(choice, everything[choice.label], lodo)
    chosen = made[choice.label]
    result.update(label=chosen.label, heads=[list(heads[i]) for i in chosen.idx],
                  weights=[round(x, 4) for x in chosen.weights.tolist()],
                  deepest=max(heads[i][0] for i in chosen.idx) + 1, cap=cap)
    return result


def write_to_preset(result: dict, preset: str | Path) -> None:
    """Write a choice into a preset or checkpoint folder: its inference settings (fusion and valve) and, when
    heads were chosen, its head set (heads, weights and how they were chosen)."""
    import dataclasses

    from headrank.engine.checkpoint import CONFIG_NAME, HEADSET_NAME, load_checkpoint_config
    from headrank.engine.heads import HeadSet

    preset = Path(preset)
    if not (preset / CONFIG_NAME).is_file():
        raise ValueError(f"{preset} is not a preset or checkpoint folder (no {CONFIG_NAME})")
    config = load_checkpoint_config(preset)  # refuses a folder that is not a checkpoint
    setting = result["setting"]
    config["inference"] = {**(config.get("inference") or {}), "both_orders": False, "window": None,
                           "fuse_first_stage": setting["fuse"] or None, "safety_valve": setting["valve"]}
    if "heads" in result:
        shipped = HeadSet.load(preset / HEADSET_NAME)
        plain = all(abs(w - 1.0) < 1e-12 for w in result["weights"])
        dataclasses.replace(shipped, heads=tuple(tuple(h) for h in result["heads"]),
                            weights=None if plain else tuple(result["weights"]),
                            selection={**shipped.selection, "recipe": result["label"],
                                       "chosen_by": "headrank choose (learn.choose)"}).save(preset / HEADSET_NAME)
    (preset / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
