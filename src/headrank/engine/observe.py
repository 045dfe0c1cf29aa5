"""One capture of every head per list, cached, scored as ICR or as any head set.

Evaluating training-free rerankers of one model (ICR, the QRHead-style preset, untrained HeadRank, shallower
head sets) on the same lists repeats the same forward pass: they only differ in which heads they sum and
how. A full-depth capture of all heads with the N/A tail keeps, per list, each head's passage mass (raw
and calibrated) and the all-head token sums that ICR masks, which is enough to score every one of them.
Scores equal the ranker's: ICR's exactly (same sums in the same order), a head set's up to float
summation order (per-head passage masses are summed instead of per-token masses).

Observations are cached on disk per list, keyed by the weights' fingerprint, the prompt settings, the
query and the passages in the order fed; so a long evaluation resumes where it stopped and a second
method over the same lists costs nothing. A trained checkpoint changes the weights and cannot share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from headrank.engine.heads import HeadSet
from headrank.engine.mass import head_passage_mass, masked_calibrated_scores
from headrank.engine.prompt import normalize_text
from headrank.engine.rule import ScoringRule


@dataclass
class ListObservation:
    """Everything the training-free scorers need from one list's capture."""

    kept: list[int]  # indices (feed order) of the non-empty passages the model saw
    raw: torch.Tensor  # (heads, len(kept)) passage mass per head
    calibrated: torch.Tensor  # (heads, len(kept)) minus the N/A query's mass
    token_sums: torch.Tensor  # (2, prefix_len): all-head token mass for the query and for N/A (ICR)
    spans: list[tuple[int, int]]
    latency_s: float  # the capture that produced it (full depth, all heads, both tails)


def observe_list(ranker, query: str, passages: Sequence[str]) -> ListObservation:
    """Capture every head of ``ranker`` (the ICR preset: all heads, N/A tail) on one list; not cached."""
    kept = [i for i, p in enumerate(passages) if normalize_text(p)]
    if not kept:
        raise ValueError("every passage of the list is empty")
    prompt = ranker.builder.build(query, [passages[i] for i in kept])
    if len(prompt) > ranker.max_length:
        raise ValueError(f"the list needs {len(prompt)} tokens, over the context ({ranker.max_length}); "
                         "observing heads needs lists that fit (lower --depth or --max-passage-tokens)")
    started = time.perf_counter()
    att, cal = ranker.capture([prompt])[0]
    raw = head_passage_mass(att, prompt.passage_spans)
    return ListObservation(
        kept=kept, raw=raw, calibrated=raw - head_passage_mass(cal, prompt.passage_spans),
        token_sums=torch.stack([att.token_mass.sum(dim=0), cal.token_mass.sum(dim=0)]),
        spans=list(prompt.passage_spans), latency_s=time.perf_counter() - started,
    )



@dataclass
class HeadObservations:
    """Per query: every observed head's passage mass, raw and N/A-calibrated, (H, N) each."""

    heads: list[tuple[int, int]]
    qids: list[str]
    docids: list[list[str]]
    raw: list[torch.Tensor]
    calibrated: list[torch.Tensor]

    def subset(self, qids: Sequence[str]) -> HeadObservations:
        index = {q: i for i, q in enumerate(self.qids)}
        pick = [index[q] for q in qids]
        return HeadObservations(self.heads, [self.qids[i] for i in pick], [self.docids[i] for i in pick],
                                [self.raw[i] for i in pick], [self.calibrated[i] for i in pick])

    def save(self, path: Path) -> None:
        torch.save({"heads": self.heads, "qids": self.qids, "docids": self.docids, "raw": self.raw,
                    "calibrated": self.calibrated}, path)

    @classmethod
    def load(cls, path: Path) -> HeadObservations:
        data = torch.load(path, weights_only=True)
        return cls([tuple(h) for h in data["heads"]], data["qids"], data["docids"], data["raw"], data["calibrated"])


class SharedCapture:
    """Caches ``ranker``'s all-head observations; ``scorer(...)`` gives a score function per method."""

    def __init__(self, ranker, cache_dir: Path) -> None:
        if ranker.method != "icr" or not ranker.scoring.calibrate:
            raise ValueError("a shared capture needs the ICR preset ranker (every head, N/A calibration)")
        self.ranker = ranker
        self.heads = list(ranker.heads.heads)
        self.cache_dir = Path(cache_dir)
        settings = json.dumps(dataclasses.asdict(ranker.prompt_settings), sort_keys=True)
        from headrank.engine.mass import SCORING_VERSION
        from headrank.engine.prompt import prompt_hash

        model = ranker.model  # the fingerprint ignores dtype; cached scores do not, so the dtype joins the key
        probe = prompt_hash(model.tokenizer, ranker.prompt_settings)  # template, instructions, tokenizer
        self._salt = (f"{SCORING_VERSION}|{model.fingerprint}|{model.dtype}|{settings}|{probe}|"
                      f"{model.num_layers}x{model.num_heads}")
        self.through_layer = ranker.heads.deepest_layer
        if self.through_layer < model.num_layers - 1:  # a capture that stops early is another capture
            self._salt += f"|through-layer-{self.through_layer}"

    def path_of(self, query: str, passages: Sequence[str]) -> Path:
        """The cache file of this list (a pool index names it)."""
        h = hashlib.sha256(self._salt.encode())
        for text in (query, *passages):
            h.update(text.encode())
            h.update(b"\0")
        return self.cache_dir / f"{h.hexdigest()[:24]}.pt"

    def observe(self, query: str, passages: Sequence[str]) -> ListObservation:
        """The cached observation of this list, capturing it first if needed."""
        path = self.path_of(query, passages)
        if path.is_file():
            return ListObservation(**torch.load(path, weights_only=True))
        obs = observe_list(self.ranker, query, passages)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        torch.save(dataclasses.asdict(obs), partial)
        partial.replace(path)  # never leave a torn file behind an interruption
        return obs

    def scorer(self, head_set: HeadSet | None = None, calibrate: bool = True):
        """Score function for ``rerank_benchmark``: ICR when ``head_set`` is None, else that head set."""
        rule = None
        if head_set is not None:
            rule = ScoringRule.of(head_set, calibrate=calibrate)
            missing = [h for h in rule.heads if h not in set(self.heads)]
            if missing:
                raise ValueError(f"heads {missing[:3]} are not in the captured model")
        elif not calibrate:
            raise ValueError("ICR is defined with calibration")
        elif self.through_layer < self.ranker.model.num_layers - 1:
            raise ValueError("ICR reads every layer; this capture stops after layer "
                             f"{self.through_layer}")

        def score(query: str, passages: Sequence[str]) -> tuple[list[float], dict]:
            obs = self.observe(query, passages)
            if rule is None:
                values = masked_calibrated_scores(obs.token_sums[0], obs.token_sums[1], obs.spans)
            else:
                values = rule.from_head_masses(obs.raw, obs.calibrated, self.heads)
            out = [-math.inf] * len(passages)
            for i, v in zip(obs.kept, values.tolist()):
                out[i] = v
            return out, {"latency_s": obs.latency_s, "shared_capture": True}

        return score


def all_head_observer(ranker, through_layer: int | None = None):
    """A ranker that reads every head of ``ranker``'s model (merged adapter included) with the N/A tail and
    the same prompt: what ``SharedCapture`` needs to re-select or re-weight heads of a trained preset. With
    ``through_layer`` only the heads of layers 0..through_layer, and the forward stops there (cheaper)."""
    from headrank.engine.mass import ScoringConfig
    from headrank.engine.ranker import HeadRanker

    model = ranker.model
    heads = HeadSet.all_heads(model.num_layers, model.num_heads, model=model.name)
    if through_layer is not None:
        if not 0 <= through_layer < model.num_layers:
            raise ValueError(f"through_layer must be a layer of the model (0..{model.num_layers - 1})")
        heads = HeadSet(heads=tuple(h for h in heads.heads if h[0] <= through_layer), num_layers=model.num_layers,
                        num_heads=model.num_heads, model=model.name)
    return HeadRanker(model, heads, scoring=ScoringConfig(calibrate=True, token_mask=True),
                      prompt=ranker.prompt_settings, method="icr", verify_fingerprint=False,
                      max_length=ranker.max_length)


def observe_cached(shared: SharedCapture, lists: Sequence[tuple[str, str, list[tuple[str, str]]]],
                   on_list=None):
    """``selection.HeadObservations`` of (qid, query, [(docid, text)]) lists through the shared capture's cache."""

    qids, docids, raw, calibrated = [], [], [], []
    for done, (qid, query, docs) in enumerate(lists, start=1):
        obs = shared.observe(query, [t for _, t in docs])
        qids.append(qid)
        docids.append([docs[i][0] for i in obs.kept])
        raw.append(obs.raw)
        calibrated.append(obs.calibrated)
        if on_list:
            on_list(done, len(lists))
    return HeadObservations(list(shared.heads), qids, docids, raw, calibrated)
