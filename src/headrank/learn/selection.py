"""Entropy-regularized head selection (docs/method.md, section 4).

Every head of the model is observed once per training list (one capture of all heads, plus the N/A
tail). From those observations: discriminability ``D_h`` (mean nDCG@10 of the ranking by the head's
own passage mass) and focus ``E_h`` (mean normalized entropy of its attention distribution over the
passages). The top-K heads by ``D_h - lambda * E_h`` form the head set; lambda and K are chosen on a
validation split. Everything after the observation is cheap, since a head set's score is the sum of
its heads' masses, so the whole sweep reuses the same observations.

nDCG@10 here is a vectorized re-implementation of trec_eval's (linear gains, log2 discount, ideal
from all judged passages of the query), checked against ir-measures in the tests; evaluation reports
always come from ir-measures.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from headrank.data.formats import Qrels
from headrank.engine.observe import HeadObservations, observe_list  # noqa: F401 (HeadObservations re-exported)
from headrank.engine.rule import ScoringRule

logger = logging.getLogger(__name__)

SELECTION_ORDERS = ("first-stage", "reversed", "shuffled")


def order_lists(lists: Sequence[tuple[str, str, list[tuple[str, str]]]], order: str,
                seed: int = 0) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Feed order of the selection lists. In first-stage order a head that merely favours the first (or
    last) positions copies the BM25 order and looks discriminative; shuffled lists (fixed per query and
    seed) credit only heads that follow relevance."""
    if order not in SELECTION_ORDERS:
        raise ValueError(f"order must be one of {', '.join(SELECTION_ORDERS)}")
    out = []
    for qid, query, docs in lists:
        docs = list(docs)
        if order == "reversed":
            docs.reverse()
        elif order == "shuffled":
            random.Random(f"{seed}/{qid}").shuffle(docs)
        out.append((qid, query, docs))
    return out


def observe_heads(ranker, lists: Sequence[tuple[str, str, list[tuple[str, str]]]],
                  on_list: Callable[[], None] | None = None) -> HeadObservations:
    """Capture all of ``ranker``'s heads on (qid, query, [(docid, text)]) lists.

    ``ranker`` must read every head with calibration (the ICR preset does). Empty passages are left out.
    """
    raw, calibrated, docids, qids = [], [], [], []
    for qid, query, docs in lists:
        obs = observe_list(ranker, query, [t for _, t in docs])
        raw.append(obs.raw)
        calibrated.append(obs.calibrated)
        docids.append([docs[i][0] for i in obs.kept])  # empty passages are not shown to the model
        qids.append(qid)
        if on_list:
            on_list()
    return HeadObservations(list(ranker.heads.heads), qids, docids, raw, calibrated)


def _ideal_dcg(grades: Sequence[int], k: int = 10) -> float:
    top = sorted((g for g in grades if g > 0), reverse=True)[:k]
    return sum(g / math.log2(i + 2) for i, g in enumerate(top))


def ndcg_at_10(scores: torch.Tensor, docids: Sequence[str], judged: dict[str, int]) -> torch.Tensor:
    """nDCG@10 of every row of ``scores`` (rows: rankings of the same passages): (rows,)."""
    ideal = _ideal_dcg(list(judged.values()))
    if ideal == 0:
        return torch.zeros(scores.shape[0], device=scores.device)
    gains = torch.tensor([max(judged.get(d, 0), 0) for d in docids], dtype=torch.float32, device=scores.device)
    k = min(10, scores.shape[1])
    order = torch.sort(scores.float(), dim=1, descending=True, stable=True).indices[:, :k]
    discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float32, device=scores.device) + 2)
    return (gains[order] * discount).sum(dim=1) / ideal


def discriminability(obs: HeadObservations, qrels: Qrels, calibrated: bool = True) -> torch.Tensor:
    """D_h: mean over queries of the nDCG@10 of each head's own ranking: (H,)."""
    masses = obs.calibrated if calibrated else obs.raw
    per_query = [ndcg_at_10(m, d, qrels.get(q, {})) for m, d, q in zip(masses, obs.docids, obs.qids)]
    return torch.stack(per_query).mean(dim=0)


def focus_entropy(obs: HeadObservations) -> torch.Tensor:
    """E_h: mean over queries of the normalized entropy of p_h(i) = a_h(i) / sum_k a_h(k): (H,), in [0, 1]."""
    values = []
    for mass in obs.raw:
        p = mass.clamp(min=1e-12)
        p = p / p.sum(dim=1, keepdim=True)
        values.append(-(p * p.log()).sum(dim=1) / math.log(max(mass.shape[1], 2)))
    return torch.stack(values).mean(dim=0)


def select_top(d: torch.Tensor, e: torch.Tensor, lam: float, k: int,
               allowed: Sequence[int] | None = None) -> list[int]:
    """Indices of the top-k heads by D - lambda * E among ``allowed`` (default all; ties: lower index first)."""
    utility = d - lam * e
    pool = range(len(utility)) if allowed is None else allowed
    order = sorted(pool, key=lambda i: (-float(utility[i]), i))
    return order[:k]


def set_ndcg(obs: HeadObservations, qrels: Qrels, indices: Sequence[int], calibrated: bool = True) -> float:
    """Mean nDCG@10 of the head-set sum over the observed queries."""
    rule = ScoringRule(tuple(obs.heads[i] for i in indices), calibrate=calibrated)
    values = [ndcg_at_10(rule.from_head_masses(r, c, obs.heads)[None], d, qrels.get(q, {}))[0]
              for r, c, d, q in zip(obs.raw, obs.calibrated, obs.docids, obs.qids)]
    return float(torch.stack(values).mean())


def split_queries(qids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic split by query: (train, validation)."""
    if not 0 < val_fraction < 1:
        raise ValueError("val_fraction must be between 0 and 1")
    shuffled = sorted(qids)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(shuffled) * val_fraction))
    if n_val >= len(shuffled):
        raise ValueError(f"{len(shuffled)} queries are too few to split off a validation set")
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


@dataclass
class Selection:
    heads: list[tuple[int, int]]
    lam: float
    k: int
    val_ndcg: float
    sweep: list[dict]
    d: torch.Tensor
    e: torch.Tensor


def sweep_selection(train: HeadObservations, val: HeadObservations, qrels: Qrels, lambdas: Sequence[float],
                    ks: Sequence[int], calibrated: bool = True, max_depth: int | None = None) -> Selection:
    """Score heads on ``train``; pick (lambda, K) by validation nDCG@10 (ties: smaller K, then smaller lambda).

    ``max_depth`` keeps only heads in the first ``max_depth`` layers, so the forward pass stops earlier:
    the knob that trades quality for latency.
    """
    if not lambdas or not ks or min(ks) < 1:
        raise ValueError("need at least one lambda and K values >= 1")
    allowed = None
    if max_depth is not None:
        allowed = [i for i, (layer, _) in enumerate(train.heads) if layer < max_depth]
        if not allowed:
            raise ValueError(f"no observed head lies in the first {max_depth} layers")
    d = discriminability(train, qrels, calibrated)
    e = focus_entropy(train)
    pool = len(d) if allowed is None else len(allowed)
    rows = []
    for lam in lambdas:
        for k in ks:
            chosen = select_top(d, e, lam, min(k, pool), allowed)
            rows.append({"lambda": lam, "k": k, "train_ndcg@10": set_ndcg(train, qrels, chosen, calibrated),
                         "val_ndcg@10": set_ndcg(val, qrels, chosen, calibrated)})
    best = max(rows, key=lambda r: (round(r["val_ndcg@10"], 6), -r["k"], -r["lambda"]))
    chosen = select_top(d, e, best["lambda"], min(best["k"], pool), allowed)
    return Selection([train.heads[i] for i in chosen], best["lambda"], best["k"], best["val_ndcg@10"], rows, d, e)


def plot_heatmaps(d: torch.Tensor, e: torch.Tensor, heads: Sequence[tuple[int, int]], chosen: Sequence[tuple[int, int]],
                  num_layers: int, num_heads: int, title: str, path: Path) -> None:
    """Layer x head heatmaps of D_h and E_h, selected heads marked (skipped with a warning without matplotlib)."""
    from headrank.plots import PLOTS_EXTRA, plots_available, pyplot

    if not plots_available():
        logger.warning("no heatmap: matplotlib is not installed (%s)", PLOTS_EXTRA)
        return
    plt = pyplot()

    grids = []
    for values in (d, e):
        grid = torch.full((num_layers, num_heads), float("nan"))
        for (layer, head), v in zip(heads, values.tolist()):
            grid[layer, head] = v
        grids.append(grid)
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.45 * num_heads * 2, 1.5 + 0.22 * num_layers))
    for ax, grid, label, cmap in zip(axes, grids, ("D_h: nDCG@10 of the head alone", "E_h: normalized entropy"),
                                     ("viridis", "magma")):
        image = ax.imshow(grid.numpy(), aspect="auto", origin="lower", cmap=cmap)
        ax.set(xlabel="head", ylabel="layer", title=label)
        fig.colorbar(image, ax=ax, shrink=0.8)
        for layer, head in chosen:
            ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _observations_file(ranker, bench, depth: int, order: str, seed: int, cache_dir: Path | None) -> Path | None:
    """Where the all-head observations of these lists are cached: keyed on the model's weights, the lists read,
    the prompt and the code version, not only on names."""
    if cache_dir is None:
        return None
    from headrank.data.benchmarks import data_hash
    from headrank.engine.mass import SCORING_VERSION
    from headrank.engine.prompt import prompt_hash

    cache_dir.mkdir(parents=True, exist_ok=True)
    loaded = ranker.model
    order_tag = "" if order == "first-stage" else f"-{order}" + (f"{seed}" if order == "shuffled" else "")
    dtype_tag = "" if loaded.dtype == torch.float32 else f"-{str(loaded.dtype).removeprefix('torch.')}"
    content = f"{SCORING_VERSION}|{data_hash(bench, depth)}|{prompt_hash(loaded.tokenizer, ranker.prompt_settings)}"
    content_tag = hashlib.sha256(content.encode()).hexdigest()[:8]
    budget = ranker.prompt_settings.max_passage_tokens
    return cache_dir / f"heads-{loaded.fingerprint}-{bench.name}-k{depth}-p{budget}{order_tag}{dtype_tag}-{content_tag}.pt"


def select_head_set(ranker, bench, *, depth: int = 20, order: str = "first-stage", preset: str = "headrank",
                    lambdas: Sequence[float] = (0.0, 0.1, 0.3, 1.0), ks: Sequence[int] = (4, 8, 16, 32),
                    val_fraction: float = 0.25, seed: int = 0, calibrate: bool = True, max_depth: int | None = None,
                    cache_dir: Path | None = None, on_list: Callable[[int, int], None] | None = None,
                    commit: str | None = None):
    """Choose a head set on a training benchmark: observe every head (cached), sweep lambda x K on validation.

    ``ranker`` is an ICR ranker of the model (every head observed); ``preset="qrhead"`` is the QRHead-style
    baseline (lambda 0, top 16, no sweep). Returns ``(HeadSet, Selection, HeadObservations)``; the head set
    records the model, its weights' fingerprint, the prompt, the split and the whole sweep.
    """
    import dataclasses

    from headrank.engine.heads import HeadSet

    if preset not in ("headrank", "qrhead"):
        raise ValueError("preset must be headrank or qrhead")
    if order not in SELECTION_ORDERS:
        raise ValueError(f"order must be one of {', '.join(SELECTION_ORDERS)}")
    lambda_values = [0.0] if preset == "qrhead" else list(lambdas)
    k_values = [16] if preset == "qrhead" else [int(k) for k in ks]
    train_q, val_q = split_queries(list(bench.queries), val_fraction, seed)
    loaded = ranker.model
    fingerprint = loaded.fingerprint
    obs_path = _observations_file(ranker, bench, depth, order, seed, cache_dir)
    if obs_path is not None and obs_path.is_file():
        observations = HeadObservations.load(obs_path)
    else:
        lists = [(q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q][:depth]]) for q in bench.queries]
        lists = order_lists(lists, order, seed)
        done = 0

        def advance() -> None:
            nonlocal done
            done += 1
            if on_list:
                on_list(done, len(lists))

        observations = observe_heads(ranker, lists, on_list=advance)
        if obs_path is not None:
            observations.save(obs_path)
    selection = sweep_selection(observations.subset(train_q), observations.subset(val_q), bench.qrels, lambda_values,
                                k_values, calibrated=calibrate, max_depth=max_depth)
    head_set = HeadSet(
        heads=tuple(selection.heads), num_layers=loaded.num_layers, num_heads=loaded.num_heads, model=loaded.name,
        name=f"{preset}-{bench.name}", prompt=dataclasses.asdict(ranker.prompt_settings), fingerprint=fingerprint,
        selection={
            "preset": preset, "benchmark": bench.name, "depth": depth, "order": order, "calibrated": calibrate,
            "seed": seed, "train_queries": train_q, "val_queries": val_q, "lambda": selection.lam, "k": selection.k,
            "max_depth": max_depth, "val_ndcg@10": selection.val_ndcg, "sweep": selection.sweep, "commit": commit,
        },
    )
    return head_set, selection, observations
