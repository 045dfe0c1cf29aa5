"""Evaluation: rerank benchmark candidate lists, then metrics (ir-measures), middle-zone selectivity,
homogenization, plots, and TREC runs. Runs are resumable: every finished query is appended to
``progress.jsonl`` at once, and a restarted run skips the queries already there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ir_measures
from ir_measures import RR, R, nDCG

from headrank.data.benchmarks import Benchmark, data_hash
from headrank.data.formats import Qrels, appendable_lines, write_trec_run
from headrank.engine.mass import SCORING_VERSION
from headrank.engine.rule import SafetyValve, final_scores

logger = logging.getLogger(__name__)

# A reranker for evaluation: (query, passages in input order) -> one score per passage, same order;
# it may also return (scores, info) where info is a dict of per-query counters saved with the query
# (``latency_s`` in info replaces the measured wall time: scores read from a shared capture's cache).
ScoreFn = Callable[[str, Sequence[str]], "list[float] | tuple[list[float], dict]"]
ORDERS = ("first-stage", "reversed", "both")  # both: the mean of the two orders' scores (debiases position)


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes a run's output; a run directory is keyed by it."""

    method: str
    depth: int = 20
    order: str = "first-stage"
    model: str | None = None
    heads: str | None = None
    max_passage_tokens: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    calibrate: bool = True
    capture: str = "own"  # "shared": scores read from one cached all-head capture per list (observe.py)
    window: int | None = None  # passages per sliding window (None: the whole list in one prompt)
    content: str | None = None  # content_key(): the data, weights, head set and prompt behind the run
    quantize: str | None = None  # "int8": int8 MLP layers on the CPU (headrank.engine.quantize); None / "none": float

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError("depth must be >= 1")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
        if self.capture not in ("own", "shared"):
            raise ValueError("capture must be own or shared")
        if self.window is not None and self.window < 2:
            raise ValueError("window must be >= 2 passages")

    def to_dict(self) -> dict:
        """The settings as recorded; default capture and window are left out so older run folders keep their keys."""
        fields = asdict(self)
        if fields["capture"] == "own":
            del fields["capture"]
        if fields["window"] is None:
            del fields["window"]
        if fields["content"] is None:
            del fields["content"]
        if fields["quantize"] in (None, "none"):  # float runs keep the keys they had before int8 existed
            del fields["quantize"]
        return fields

    @property
    def key(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    @property
    def slug(self) -> str:
        window = f"-w{self.window}" if self.window is not None else ""
        return f"{self.method}-k{self.depth}{window}-{self.order}-{self.key}"


# Bump when what a run's records hold changes but captures do not: run folders change, capture caches stay.
# 2: a preset's safety valve no longer leaks into the raw (unfused) records.
RECORDS_VERSION = 2


def content_key(bench: Benchmark, depth: int, model_fingerprint: str | None, prompt_hash: str | None,
                head_set: dict | None) -> str:
    """Key of everything behind a run's numbers besides its settings: data, weights, head set, prompt, code version.

    A run folder named by it can only be resumed by the same computation; anything else gets a new folder.
    """
    heads = None if head_set is None else {k: head_set.get(k) for k in ("heads", "prompt", "fingerprint")}
    blob = json.dumps([SCORING_VERSION, RECORDS_VERSION, data_hash(bench, depth), model_fingerprint, prompt_hash,
                       heads], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


@dataclass
class QueryRecord:
    """One reranked list: docids and scores in first-stage order, and the reranking latency."""

    qid: str
    docids: list[str]
    scores: list[float]
    latency_s: float
    info: dict = field(default_factory=dict)  # e.g. generative windows: {"windows_total", "windows_valid"}

    def ranking(self) -> list[tuple[str, float]]:
        """Best first; ties broken by first-stage position."""
        order = sorted(range(len(self.docids)), key=lambda i: (-self.scores[i], i))
        return [(self.docids[i], self.scores[i]) for i in order]


@dataclass
class BenchmarkResult:
    benchmark: str
    settings: dict
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    selectivity: dict[str, float]
    homogenization: dict[str, float]
    mean_latency_s: float
    queries: int
    run_file: str
    measure_names: list[str] = field(default_factory=list)  # ir-measures names: nDCG@10, MRR@10, Recall@K
    plot_file: str | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- metrics


def measures(relevant_grade: int, depth: int) -> list:
    """nDCG@10 (graded), MRR@10 and Recall@depth (binary at the benchmark's relevance grade)."""
    return [nDCG @ 10, RR(rel=relevant_grade) @ 10, R(rel=relevant_grade) @ depth]


def compute_metrics(records: Sequence[QueryRecord], qrels: Qrels, relevant_grade: int, depth: int):
    """Aggregate and per-query metrics with trec_eval semantics (pytrec_eval via ir-measures)."""
    run = [ir_measures.ScoredDoc(r.qid, d, s) for r in records for d, s in _trec_scores(r)]
    wanted = measures(relevant_grade, depth)
    judged = {q: d for q, d in qrels.items() if q in {r.qid for r in records}}
    qrels_list = [ir_measures.Qrel(q, d, g) for q, docs in judged.items() for d, g in docs.items()]
    aggregate = {str(m): float(v) for m, v in ir_measures.calc_aggregate(wanted, qrels_list, run).items()}
    per_query: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(wanted, qrels_list, run):
        per_query.setdefault(metric.query_id, {})[str(metric.measure)] = float(metric.value)
    return aggregate, per_query


def order_ndcg(grades: dict[str, int], order: Sequence[str], k: int = 10) -> float:
    """nDCG@k of one list in the given order (best first) against one query's judgments (ir-measures)."""
    measure = nDCG @ k
    run = [ir_measures.ScoredDoc("q", d, float(len(order) - i)) for i, d in enumerate(order)]
    qrels = [ir_measures.Qrel("q", d, g) for d, g in grades.items()]
    return float(ir_measures.calc_aggregate([measure], qrels, run)[measure])


def _trec_scores(record: QueryRecord) -> list[tuple[str, float]]:
    """Scores that trec_eval sorts into exactly our ranking (it breaks ties by docid, we by position)."""
    ranking = record.ranking()
    n = len(ranking)
    return [(d, float(n - i)) for i, (d, _) in enumerate(ranking)]


# ---------------------------------------------------------------------------- diagnostics


def middle_zone(n: int) -> range:
    """0-based input positions of the middle zone: 1-based r with N/4 < r <= 3N/4."""
    return range(math.floor(n / 4), math.floor(3 * n / 4))


def middle_zone_selectivity(records: Sequence[QueryRecord], qrels: Qrels, relevant_grade: int) -> dict[str, float]:
    """Share of relevant (grade >= relevant_grade) and of non-relevant middle-zone candidates (first-stage
    positions N/4 < r <= 3N/4) that the reranker puts in its top quartile (rank <= N/4), pooled over
    queries; the gap in percentage points. Unjudged candidates count as non-relevant (grade 0).
    """
    counts = {"rel": [0, 0], "nonrel": [0, 0]}  # [in top quartile, total]
    for record in records:
        n = len(record.docids)
        top = {d for d, _ in record.ranking()[: max(1, math.floor(n / 4))]}
        grades = qrels.get(record.qid, {})
        for i in middle_zone(n):
            docid = record.docids[i]
            kind = "rel" if grades.get(docid, 0) >= relevant_grade else "nonrel"
            counts[kind][1] += 1
            counts[kind][0] += docid in top
    rel = 100.0 * counts["rel"][0] / counts["rel"][1] if counts["rel"][1] else float("nan")
    nonrel = 100.0 * counts["nonrel"][0] / counts["nonrel"][1] if counts["nonrel"][1] else float("nan")
    return {
        "relevant_top_quartile_pct": rel,
        "nonrelevant_top_quartile_pct": nonrel,
        "gap_pp": rel - nonrel,
        "relevant_middle": counts["rel"][1],
        "nonrelevant_middle": counts["nonrel"][1],
    }


def homogenization(records: Sequence[QueryRecord]) -> dict[str, float]:
    """Spread of middle-zone scores against the list ends: mean over queries of
    std(scores at middle positions) / std(scores at end positions). Values well below 1 mean the middle
    of the context gets near-identical scores (attention homogenization).
    """
    ratios = []
    for record in records:
        n = len(record.docids)
        zone = set(middle_zone(n))
        finite = [s if math.isfinite(s) else None for s in record.scores]
        middle = [s for i, s in enumerate(finite) if i in zone and s is not None]
        ends = [s for i, s in enumerate(finite) if i not in zone and s is not None]
        if len(middle) > 1 and len(ends) > 1 and statistics.pstdev(ends) > 0:
            ratios.append(statistics.pstdev(middle) / statistics.pstdev(ends))
    return {"middle_to_ends_std_ratio": statistics.fmean(ratios) if ratios else float("nan"), "lists": len(ratios)}


def formatting_success(records: Sequence[QueryRecord]) -> dict[str, float]:
    """For generative rerankers: share of windows whose output was a valid permutation without repair, and share
    answered with the input order itself (valid, but no reranking)."""
    total = sum(r.info.get("windows_total", 0) for r in records)
    if not total:
        return {}
    valid = sum(r.info.get("windows_valid", 0) for r in records)
    generated = sum(r.info.get("tokens_generated", 0) for r in records)
    out = {"formatting_success": valid / total, "windows": total, "tokens_generated_per_window": generated / total}
    if all("windows_identity" in r.info for r in records):  # runs older than the counter do not have it
        out["identity_share"] = sum(r.info["windows_identity"] for r in records) / total
    return out


def plot_diagnostics(records: Sequence[QueryRecord], qrels: Qrels, relevant_grade: int, title: str, path: Path) -> None:
    """Left: share of each first-stage position that lands in the top quartile, relevant vs not.
    Right: per-list z-scored score by first-stage position (mean and spread), middle zone shaded."""
    from headrank.plots import pyplot

    plt = pyplot()

    n = max(len(r.docids) for r in records)
    hits = {"rel": [[0, 0] for _ in range(n)], "nonrel": [[0, 0] for _ in range(n)]}
    zscores: list[list[float]] = [[] for _ in range(n)]
    for record in records:
        m = len(record.docids)
        top = {d for d, _ in record.ranking()[: max(1, m // 4)]}
        grades = qrels.get(record.qid, {})
        finite = [s for s in record.scores if math.isfinite(s)]
        mu = statistics.fmean(finite) if finite else 0.0
        sd = statistics.pstdev(finite) if len(finite) > 1 else 0.0
        for i, docid in enumerate(record.docids):
            kind = "rel" if grades.get(docid, 0) >= relevant_grade else "nonrel"
            hits[kind][i][1] += 1
            hits[kind][i][0] += docid in top
            if sd > 0 and math.isfinite(record.scores[i]):
                zscores[i].append((record.scores[i] - mu) / sd)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    positions = list(range(1, n + 1))
    zone = middle_zone(n)
    for ax in (left, right):
        ax.axvspan(zone.start + 0.5, zone.stop + 0.5, color="0.9", label="middle zone")
    for kind, color, label in (("rel", "tab:green", "relevant"), ("nonrel", "tab:red", "non-relevant")):
        share = [100.0 * h / t if t else float("nan") for h, t in hits[kind]]
        left.plot(positions, share, marker="o", ms=3, color=color, label=label)
    left.set(xlabel="first-stage position", ylabel="% put in top quartile", title="selectivity by input position")
    left.legend(fontsize=8)
    means = [statistics.fmean(z) if z else float("nan") for z in zscores]
    sds = [statistics.pstdev(z) if len(z) > 1 else 0.0 for z in zscores]
    right.errorbar(positions, means, yerr=sds, fmt="o", ms=3, capsize=2)
    right.set(xlabel="first-stage position", ylabel="score (z per list)", title="score spread by input position")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- runs


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def load_progress(path: Path) -> dict[str, QueryRecord]:
    """Finished queries of an interrupted run; a torn last line (killed mid-write) is dropped from the file."""
    done: dict[str, QueryRecord] = {}
    if not path.is_file():
        return done
    for line in appendable_lines(path):
        try:
            rec = QueryRecord(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        done[rec.qid] = rec
    return done


def rerank_benchmark(
    bench: Benchmark,
    score_fn: ScoreFn,
    settings: EvalSettings,
    run_dir: Path,
    on_query: Callable[[str, bool], None] | None = None,
) -> list[QueryRecord]:
    """Rerank every query's top-``depth`` candidates, appending each finished query to progress.jsonl.

    ``on_query(qid, resumed)`` is told about every query in order; ``resumed``: read back from an earlier run,
    not computed now (a progress bar's ETA must not count those as this run's speed)."""
    if settings.order == "both":
        raise ValueError("order 'both' combines two runs: use rerank_both_orders")
    run_dir.mkdir(parents=True, exist_ok=True)
    settings_path = run_dir / "settings.json"
    wanted = {"benchmark": bench.name, **settings.to_dict()}
    if settings_path.is_file() and json.loads(settings_path.read_text()) != wanted:
        raise ValueError(f"{run_dir} holds a run with other settings; use another --out directory")
    settings_path.write_text(json.dumps(wanted, indent=2))
    progress_path = run_dir / "progress.jsonl"
    done = load_progress(progress_path)
    with progress_path.open("a") as progress:
        for qid, query in bench.queries.items():
            resumed = qid in done
            if not resumed:
                candidates = bench.candidates[qid][: settings.depth]
                texts = [c.text for c in candidates]
                feed = texts[::-1] if settings.order == "reversed" else texts
                started = time.perf_counter()
                out = score_fn(query, feed)
                latency = time.perf_counter() - started
                scores, info = (list(out[0]), dict(out[1])) if isinstance(out, tuple) else (list(out), {})
                latency = info.pop("latency_s", latency)  # a shared capture reports the pass that made the scores
                if settings.order == "reversed":
                    scores = scores[::-1]
                done[qid] = QueryRecord(qid, [c.docid for c in candidates], scores, latency, info)
                progress.write(json.dumps(asdict(done[qid])) + "\n")
                progress.flush()
            if on_query:
                on_query(qid, resumed)
    return [done[q] for q in bench.queries]


def rerank_both_orders(
    bench: Benchmark,
    score_fn: ScoreFn,
    settings: EvalSettings,
    out: Path,
    on_query: Callable[[str, bool], None] | None = None,
) -> list[QueryRecord]:
    """Each list fed in first-stage and in reversed order; a passage's score is the mean of its two scores.

    Attention rerankers favour passages by position (first and last fed win), and reversing the list
    swaps which passages that bias helps, so the mean cancels much of it at twice the cost. Each order
    is its own resumable run folder (``out/<benchmark>-<slug>``), so a finished first-stage or reversed
    run is reused, not recomputed; the latency is the sum of the two passes.
    """
    if settings.order != "both":
        raise ValueError("rerank_both_orders needs settings with order='both'")
    both_dir = out / f"{bench.name}-{settings.slug}"
    both_dir.mkdir(parents=True, exist_ok=True)
    (both_dir / "settings.json").write_text(json.dumps({"benchmark": bench.name, **settings.to_dict()}, indent=2))
    runs = []
    for order in ("first-stage", "reversed"):
        one = replace(settings, order=order)
        runs.append(rerank_benchmark(bench, score_fn, one, out / f"{bench.name}-{one.slug}", on_query=on_query))
    return [QueryRecord(a.qid, a.docids, [(x + y) / 2 for x, y in zip(a.scores, b.scores)],
                        a.latency_s + b.latency_s, _summed_counters(a.info, b.info))
            for a, b in zip(*runs)]


def _summed_counters(a: dict, b: dict) -> dict:
    """Per-query counters of two passes (e.g. generative windows), added up."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()
            if isinstance(a.get(k, 0), (int, float)) and isinstance(b.get(k, 0), (int, float))}


def fused_records(records: Sequence[QueryRecord], weight: float | None,
                  valve: SafetyValve | None = None) -> list[QueryRecord]:
    """The same runs fused with the first-stage order (records keep first-stage order, whatever the input order),
    with the safety valve when given (``info["valve_fired"]`` says where it fired)."""
    out = []
    for r in records:
        final = final_scores(r.scores, weight, valve)
        info = {**r.info, "valve_fired": final.valve_fired} if valve else r.info
        out.append(QueryRecord(r.qid, r.docids, final.scores, r.latency_s, info))
    return out


@dataclass(frozen=True)
class RulePlacement:
    """Where a run's fusion and valve act: on the records afterwards (one scoring pass serves the raw and the
    fused report), or inside the ranker for windowed runs, whose rank-derived scores cannot be fused
    afterwards (then only the fused run is reported, under the fused method's name)."""

    settings: EvalSettings
    in_ranker: tuple[float | None, SafetyValve | None]
    afterwards: tuple[float | None, SafetyValve | None]


def place_rule(settings: EvalSettings, fuse: float | None, valve: SafetyValve | None) -> RulePlacement:
    if settings.window is None or (fuse is None and valve is None):
        return RulePlacement(settings, (None, None), (fuse, valve))
    if settings.order != "first-stage":  # the ranker takes its input order as the first stage
        raise ValueError(f"with --window, fusion and the safety valve act inside the ranker, which reads the input "
                         f"order as the first stage: use --order first-stage, not {settings.order}")
    return RulePlacement(replace(settings, method=fused_method(settings.method, fuse, valve)), (fuse, valve),
                         (None, None))


def fused_method(method: str, weight: float | None, valve: SafetyValve | None) -> str:
    """The run label of a fused variant: 'heads+rrf0.5', 'heads+rrf0.5+valve'."""
    return method + (f"+rrf{weight:g}" if weight else "") + ("+valve" if valve else "")


def summarize(bench: Benchmark, records: list[QueryRecord], settings: EvalSettings, run_dir: Path,
              extra: dict | None = None, plot: bool = True) -> BenchmarkResult:
    """Write the TREC run, metrics.json and the diagnostics plot of one benchmark run."""
    run_file = run_dir / "run.trec"
    write_trec_run(run_file, {r.qid: [(d, s) for d, s in _trec_scores(r)] for r in records},
                   tag=f"headrank-{settings.method}")
    aggregate, per_query = compute_metrics(records, bench.qrels, bench.relevant_grade, settings.depth)
    plot_file = None
    from headrank.plots import PLOTS_EXTRA, plots_available

    if plot and not plots_available():
        logger.warning("no diagnostics plot: matplotlib is not installed (%s)", PLOTS_EXTRA)
    elif plot:
        plot_file = run_dir / "diagnostics.png"
        plot_diagnostics(records, bench.qrels, bench.relevant_grade, f"{bench.name} - {settings.method} "
                         f"(K={settings.depth}, {settings.order})", plot_file)
    result = BenchmarkResult(
        benchmark=bench.name,
        settings={"benchmark": bench.name, **settings.to_dict(), "data": data_hash(bench, settings.depth)},
        metrics=aggregate,
        per_query=per_query,
        selectivity=middle_zone_selectivity(records, bench.qrels, bench.relevant_grade),
        homogenization=homogenization(records),
        mean_latency_s=statistics.fmean(r.latency_s for r in records),
        queries=len(records),
        run_file=str(run_file),
        measure_names=[str(m) for m in measures(bench.relevant_grade, settings.depth)],
        plot_file=str(plot_file) if plot_file else None,
        extra={**(extra or {}), **formatting_success(records)},
    )
    (run_dir / "metrics.json").write_text(json.dumps(asdict(result), indent=2, default=_json_default))
    return result


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)


def markdown_table(results: Sequence[BenchmarkResult]) -> str:
    """One row per benchmark run, plus the average over benchmarks when there are several."""
    head = ("| benchmark | method | K | order | queries | nDCG@10 | MRR@10 | R@K | middle: rel % top-quartile | "
            "middle: non-rel % | gap (pp) | mid/ends std | latency (s/query) |")
    with_format = any("formatting_success" in r.extra for r in results)
    if with_format:
        head += " format OK | answer = input order |"
    lines = [head, "|" + "---|" * (13 + 2 * with_format)]
    for r in results:
        m = r.metrics
        _, mrr, rec = (m[name] for name in r.measure_names)
        s = r.selectivity
        depth = f"{r.settings['depth']}" + (f" (windows of {r.settings['window']})" if r.settings.get("window") else "")
        lines.append(
            f"| {r.benchmark} | {r.settings['method']} | {depth} | {r.settings['order']} | {r.queries} | "
            f"{m['nDCG@10']:.4f} | {mrr:.4f} | {rec:.4f} | {s['relevant_top_quartile_pct']:.1f} | "
            f"{s['nonrelevant_top_quartile_pct']:.1f} | {s['gap_pp']:.1f} | "
            f"{r.homogenization['middle_to_ends_std_ratio']:.2f} | {r.mean_latency_s:.2f} |"
            + (f" {100 * r.extra.get('formatting_success', float('nan')):.1f}% |"
               f" {100 * r.extra.get('identity_share', float('nan')):.1f}% |" if with_format else "")
        )
    methods = list(dict.fromkeys(r.settings["method"] for r in results))
    for method in methods:
        group = [r for r in results if r.settings["method"] == method]
        if len(group) > 1:
            avg = statistics.fmean(r.metrics["nDCG@10"] for r in group)
            mrr = statistics.fmean(r.metrics[r.measure_names[1]] for r in group)
            label = "**average**" if len(methods) == 1 else f"**average {method}**"
            lines.append(f"| {label} | | | | | {avg:.4f} | {mrr:.4f} |" + " |" * (6 + 2 * with_format))
    return "\n".join(lines) + "\n"


@dataclass
class Evaluation:
    """What one ``run_evaluation`` produced: per-benchmark results, their fused variants, and the summary files."""

    results: list[BenchmarkResult]
    fused: list[BenchmarkResult]
    summary: dict
    table: str
    summary_file: Path


def run_evaluation(benches: Sequence[Benchmark], scorer, settings: EvalSettings, out: Path,
                   fuse_first_stage: float | None = None, plot: bool = True,
                   on_query: Callable[[str, str, bool], None] | None = None,
                   safety_valve: SafetyValve | None = None) -> Evaluation:
    """Rerank every benchmark with ``scorer`` (``scorers.build_scorer``), resumably, and write runs and metrics.

    With ``fuse_first_stage`` and/or ``safety_valve`` the same runs are also reported fused (``fused_records``).

    Each benchmark's run folder is ``out/<benchmark>-<slug>``, its key covering the settings and the content
    behind the numbers (``content_key``). ``on_query(benchmark, qid, resumed)`` is told about every finished
    query (``resumed``: read back from an earlier run's progress, not computed now).
    """
    if not benches:
        raise ValueError("no benchmark to evaluate")
    extra = {**scorer.record, "commit": git_commit()}
    started = time.perf_counter()
    results, fused = [], []
    for bench in benches:
        key = content_key(bench, settings.depth, scorer.model_fingerprint, scorer.prompt_hash, scorer.head_set)
        bench_settings = replace(settings, content=key)
        run_dir = out / f"{bench.name}-{bench_settings.slug}"
        tick = (lambda qid, resumed, name=bench.name: on_query(name, qid, resumed)) if on_query else None
        if settings.order == "both":
            records = rerank_both_orders(bench, scorer.score, bench_settings, out, on_query=tick)
        else:
            records = rerank_benchmark(bench, scorer.score, bench_settings, run_dir, on_query=tick)
        results.append(summarize(bench, records, bench_settings, run_dir, extra=extra, plot=plot))
        if fuse_first_stage is not None or safety_valve is not None:
            fused_settings = replace(bench_settings, method=fused_method(settings.method, fuse_first_stage,
                                                                         safety_valve))
            fused_dir = out / f"{bench.name}-{fused_settings.slug}"
            fused_dir.mkdir(parents=True, exist_ok=True)
            fused.append(summarize(bench, fused_records(records, fuse_first_stage, safety_valve), fused_settings,
                                   fused_dir,
                                   extra={**extra, "fused_from": str(run_dir)}, plot=plot))
    wall = time.perf_counter() - started
    table = markdown_table(results + fused)
    summary = {
        "settings": settings.to_dict(), "benchmarks": [b.name for b in benches], "wall_time_s": wall, **extra,
        "average_ndcg@10": sum(r.metrics["nDCG@10"] for r in results) / len(results),
        "results": [asdict(r) | {"per_query": None} for r in results],
    }
    if fused:
        summary["fused_first_stage_weight"] = fuse_first_stage
        summary["safety_valve"] = safety_valve.to_dict() if safety_valve else None
        summary["fused_average_ndcg@10"] = sum(r.metrics["nDCG@10"] for r in fused) / len(fused)
        summary["fused_results"] = [asdict(r) | {"per_query": None} for r in fused]
    stem = out / f"summary-{settings.slug}-{'_'.join(b.name for b in benches)}"
    json_file, md_file = (stem.parent / f"{stem.name}{suffix}" for suffix in (".json", ".md"))  # the slug may hold a '.'
    json_file.write_text(json.dumps(summary, indent=2, default=str))
    md_file.write_text(table)
    return Evaluation(results, fused, summary, table, json_file)
