"""Fit a checkpoint's relevance calibration (``headrank.engine.relevance``) on validation lists and store it in its
config, so the service's ``relevance_score`` is a probability that means the same in every request.

Validation sets only (never a reporting set): ``dl21-val`` (the DL21 validation queries the head set was
chosen with), ``nfcorpus-dev``, and the classic domains ``cranfield``, ``cisi``, ``npl`` (BEIR folders under
``<data root>/classic``). Each list is a query's first-stage top ``depth`` in first-stage order, read by the
heads alone (no fusion, no valve). Scores are cached per list, keyed on the checkpoint's files, the
quantization and the list's text, so an interrupted run resumes and a changed checkpoint recomputes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from headrank.engine.checkpoint import CONFIG_NAME, HEADSET_NAME, load_checkpoint_config
from headrank.engine.relevance import Observation, RelevanceCalibration, fit, reliability, reliability_of

logger = logging.getLogger(__name__)

VALIDATION_SETS = ("dl21-val", "nfcorpus-dev", "cranfield", "cisi", "npl")


@dataclass
class ValidationList:
    set_name: str
    qid: str
    query: str
    texts: list[str]
    relevant: list[bool]


def validation_lists(set_name: str, head_set, queries: int, depth: int, data_root: Path | None = None,
                     cache_dir: Path | None = None) -> list[ValidationList]:
    """The first ``queries`` judged queries of a validation set (in the set's order: a rule, not a pick), each
    with its first-stage top ``depth`` and which passages count as relevant (the set's relevance grade)."""
    from headrank.data.benchmarks import load_set

    if set_name not in VALIDATION_SETS:
        raise ValueError(f"unknown validation set {set_name!r}; choose from {', '.join(VALIDATION_SETS)}")
    bench = load_set("dl21" if set_name == "dl21-val" else set_name, data_root, cache_dir)
    if set_name == "dl21-val":
        keep = set(head_set.split_queries("val"))
        if not keep:
            raise ValueError("dl21-val: the head set records no DL21 validation queries; use other sets")
        qids = [q for q in bench.queries if q in keep]
    else:
        qids = list(bench.queries)
    out = []
    for qid in qids[:queries]:
        top = bench.candidates[qid][:depth]
        grades = bench.qrels[qid]
        out.append(ValidationList(set_name, qid, bench.queries[qid], [c.text for c in top],
                                  [grades.get(c.docid, 0) >= bench.relevant_grade for c in top]))
    return out


def checkpoint_digest(path: Path, quantize: str | None) -> str:
    """What a list's scores depend on besides its text: the checkpoint's config (minus its card and its own
    calibration), head set, adapter files, and the quantization the scores were read with."""
    config = load_checkpoint_config(path)
    config = {k: v for k, v in config.items() if k not in ("card", "relevance")}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    h.update((path / HEADSET_NAME).read_bytes())
    for item in sorted((path / "adapter").glob("*")) if (path / "adapter").is_dir() else []:
        h.update(item.name.encode() + item.read_bytes())
    h.update(str(quantize).encode())
    return h.hexdigest()[:16]


def _list_key(digest: str, item: ValidationList) -> str:
    return hashlib.sha256(json.dumps([digest, item.query, item.texts]).encode()).hexdigest()[:20]


def score_lists(ranker, lists: Sequence[ValidationList], digest: str, cache: Path,
                on_list: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """The heads' scores of each list (no fusion, no valve), from ``cache`` (a JSON-lines file) where present."""
    done: dict[str, list[float]] = {}
    if cache.is_file():
        for number, line in enumerate(cache.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            try:
                row = json.loads(line)
                done[row["key"]] = [float(s) for s in row["scores"]]
            except (ValueError, KeyError, TypeError):
                logger.warning("%s line %d is not a cached list (torn write?); it is recomputed", cache, number)
    cache.parent.mkdir(parents=True, exist_ok=True)
    out = []
    torn = cache.is_file() and cache.stat().st_size and not cache.read_bytes().endswith(b"\n")
    with cache.open("a", encoding="utf-8") as sink:
        if torn:  # an interrupted write left half a line: new lines start on their own
            sink.write("\n")
        for i, item in enumerate(lists):
            key = _list_key(digest, item)
            if key not in done:
                done[key] = ranker.score(item.query, item.texts, fuse_first_stage=0, safety_valve=False)
                sink.write(json.dumps({"key": key, "set": item.set_name, "qid": item.qid,
                                       "scores": done[key]}) + "\n")
                sink.flush()
            out.append(done[key])
            if on_list:
                on_list(i + 1, len(lists))
    return out


def observations(lists: Sequence[ValidationList], scores: Sequence[Sequence[float]]) -> list[Observation]:
    """One observation per read passage (empty passages are not read and carry no evidence)."""
    out = []
    for item, list_scores in zip(lists, scores):
        read = sum(1 for s in list_scores if s != float("-inf"))
        out += [Observation(s, read, rel) for s, rel in zip(list_scores, item.relevant) if s != float("-inf")]
    return out


def fit_calibration(lists: Sequence[ValidationList], scores: Sequence[Sequence[float]]) -> tuple[
        RelevanceCalibration, dict]:
    """The calibration on every list, and a report: reliability in sample, and held out by two folds per set
    (queries alternately assigned: each half's probabilities come from a fit on the other half)."""
    obs = observations(lists, scores)
    slope, intercept = fit(obs)
    if slope <= 0:
        raise ValueError(f"on these lists the heads' scores do not rise with relevance (fitted slope {slope:.3g}): "
                         "no calibration is written; check the head set on validation data first")
    sets = tuple(dict.fromkeys(item.set_name for item in lists))
    calibration = RelevanceCalibration(slope, intercept, sets, len(lists), len(obs), sum(o.relevant for o in obs),
                                       max((len(s) for s in scores), default=0))
    held_out: list[tuple[float, bool]] = []
    for fold in (0, 1):
        train = [i for i in range(len(lists)) if _fold(lists, i) != fold]
        test = [i for i in range(len(lists)) if _fold(lists, i) == fold]
        a, b = fit(observations([lists[i] for i in train], [scores[i] for i in train]))
        part = RelevanceCalibration(a, b)
        held_out += [(part.probability(o.score, o.passages), o.relevant)
                     for o in observations([lists[i] for i in test], [scores[i] for i in test])]
    report = {"in_sample": reliability(calibration, obs),
              "held_out_two_folds": reliability_of(held_out),
              "per_set": {s: reliability(calibration, observations(
                  [x for x in lists if x.set_name == s], [sc for x, sc in zip(lists, scores) if x.set_name == s]))
                          for s in sets}}
    return calibration, report


def _fold(lists: Sequence[ValidationList], index: int) -> int:
    """Alternate queries of each set between two folds."""
    name = lists[index].set_name
    return sum(1 for item in lists[:index] if item.set_name == name) % 2


def write_calibration(path: Path, calibration: RelevanceCalibration, held_out: dict | None = None) -> None:
    """Store the calibration in the checkpoint's config and, for a preset, its held-out reliability in the card
    (re-rendered)."""
    config_path = Path(path) / CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["relevance"] = calibration.to_dict()
    if config.get("card") is not None and held_out:
        config["card"]["relevance_held_out"] = {k: held_out[k] for k in ("passages", "relevant_rate", "brier",
                                                                         "brier_base_rate", "ece")}
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    if config.get("card") is not None:
        from headrank.engine.presets import CARD_NAME
        from headrank.learn.card import render_card

        (Path(path) / CARD_NAME).write_text(render_card(config, path))
