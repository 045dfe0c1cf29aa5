"""Paired comparison of two rerankers' runs on the same queries: per-query differences, wins and losses,
and a two-sided paired randomization (sign-flip) test, because a 0.01 difference in mean nDCG@10 over a
few dozen queries is often noise.

Inputs are ``metrics.json`` files (or the run directories holding them) written by ``headrank evaluate``;
they carry every query's metrics, so no rerun is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class PairedComparison:
    """A against B on one benchmark (or ``label`` "all": every query of the benchmarks pooled)."""

    label: str
    measure: str
    queries: int
    mean_a: float
    mean_b: float
    wins: int  # queries where A > B
    losses: int
    ties: int
    p_value: float

    @property
    def mean_diff(self) -> float:
        return self.mean_a - self.mean_b


def sign_flip_p_value(diffs: Sequence[float], flips: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of a paired randomization test: how often randomly flipping the sign of each
    per-query difference gives a mean at least as far from 0 as the observed one ((count + 1) / (flips + 1))."""
    d = torch.tensor(list(diffs), dtype=torch.float64)
    if d.numel() == 0:
        raise ValueError("no paired queries to compare")
    observed = float(d.mean().abs())
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for start in range(0, flips, 1000):  # chunks keep memory at 1000 x queries
        signs = torch.randint(0, 2, (min(1000, flips - start), d.numel()), generator=generator).double() * 2 - 1
        count += int(((signs @ d).abs() / d.numel() >= observed - 1e-12).sum())
    return (count + 1) / (flips + 1)


def load_run_metrics(path: Path) -> dict:
    """A run's ``metrics.json`` (the file, or the run directory holding it)."""
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no metrics.json (is it a finished `headrank evaluate` run?)")
    try:
        data = json.loads(file.read_text())
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        return {"benchmark": data["benchmark"], "per_query": data["per_query"], "data": settings.get("data"),
                "path": str(path)}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{file}: not a headrank metrics file ({err})") from None


def compare_runs(runs_a: Sequence[dict], runs_b: Sequence[dict], measure: str = "nDCG@10", flips: int = 20000,
                 seed: int = 0) -> list[PairedComparison]:
    """One comparison per benchmark pair (A and B in the same order), then "all" when there are several."""
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError("give the same number (at least one) of runs for A and B, benchmark by benchmark")
    rows, pooled = [], ([], [])
    for a, b in zip(runs_a, runs_b):
        if a["benchmark"] != b["benchmark"]:
            raise ValueError(f"runs of different benchmarks paired: {a['benchmark']} vs {b['benchmark']}")
        if a.get("data") and b.get("data") and a["data"] != b["data"]:
            raise ValueError(f"{a['benchmark']}: the runs read different data (queries, candidates, depth or "
                             f"judgments differ: {a.get('path', 'A')} has {a['data']}, {b.get('path', 'B')} has "
                             f"{b['data']}); a paired test needs the same lists and qrels")
        if set(a["per_query"]) != set(b["per_query"]):
            raise ValueError(f"{a['benchmark']}: the two runs hold different queries; compare finished runs")
        try:
            qids = sorted(a["per_query"])
            va = [a["per_query"][q][measure] for q in qids]
            vb = [b["per_query"][q][measure] for q in qids]
        except KeyError:
            raise ValueError(f"{a['benchmark']}: measure {measure!r} not in both runs") from None
        rows.append(_row(a["benchmark"], measure, va, vb, flips, seed))
        pooled[0].extend(va)
        pooled[1].extend(vb)
    if len(rows) > 1:
        rows.append(_row("all", measure, pooled[0], pooled[1], flips, seed))
    return rows


def _row(label: str, measure: str, va: list[float], vb: list[float], flips: int, seed: int) -> PairedComparison:
    diffs = [x - y for x, y in zip(va, vb)]
    return PairedComparison(label=label, measure=measure, queries=len(diffs), mean_a=sum(va) / len(va),
                            mean_b=sum(vb) / len(vb), wins=sum(d > 1e-12 for d in diffs),
                            losses=sum(d < -1e-12 for d in diffs), ties=sum(abs(d) <= 1e-12 for d in diffs),
                            p_value=sign_flip_p_value(diffs, flips, seed))
