"""The ``headrank`` command line."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from headrank.data import DataFormatError, read_rerank_input
from headrank.heads import HeadSet
from headrank.defaults import (ATTENTION_METHODS, BASELINE_METHODS, DEFAULT_MODEL, DEFAULT_PRESET,
                               ModelUnavailableError)

app = typer.Typer(
    help="Decoding-free passage reranking from a decoder LLM's attention heads.",
    no_args_is_help=True,
    add_completion=False,
)
err_console = Console(stderr=True, soft_wrap=True)  # no hard wraps inside error messages

DEMO_QUERY = "How do vaccines train the immune system?"
DEMO_PASSAGES = [  # a keyword search's typical mistake: the "trains ... system" passage shares the most words
    "The Great Wall of China stretches for thousands of kilometres across northern China.",
    "Vaccines expose the immune system to a harmless piece or weakened form of a pathogen, so that it "
    "learns to produce antibodies and memory cells that recognise the real pathogen later.",
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough.",
    "Memory B and T cells formed after vaccination let the body respond faster and more strongly when it "
    "meets the actual virus.",
    "The stock market fell sharply on Tuesday after new inflation figures were released.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A booster shot teaches the body's defences to recognise a virus protein, so antibodies are ready before "
    "infection.",
    "How do trains system work? The city train system trains drivers; the immune-to-delay timetable explained.",
]


Method = Enum("Method", {m: m for m in (*ATTENTION_METHODS[::-1], *BASELINE_METHODS)}, type=str)  # icr first
AttentionMethod = Enum("AttentionMethod", {m: m for m in ATTENTION_METHODS[::-1]}, type=str)  # what explain reads


class ExplainOutput(str, Enum):
    table = "table"
    json = "json"


class Output(str, Enum):
    table = "table"
    json = "json"
    trec = "trec"


class InputFormat(str, Enum):
    auto = "auto"
    rankgpt = "rankgpt"
    jsonl = "jsonl"
    tsv = "tsv"


def parse_heads(value: str) -> HeadSet:
    """A head set JSON file, or an inline list like ``14:3,15:7``."""
    return HeadSet.coerce(value)


class _Progress(Progress):
    """rich's progress display; when stderr is not a terminal (a log file, ``nohup``), where rich draws
    nothing until the end, each task also prints a plain line at every tenth of its total."""

    def __init__(self, *columns, **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self._printed: dict = {}  # task id -> tenths already printed

    def update(self, task_id, **changes) -> None:
        super().update(task_id, **changes)
        self._report(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def reset(self, task_id, **kwargs) -> None:
        super().reset(task_id, **kwargs)
        self._printed.pop(task_id, None)

    def _report(self, task_id) -> None:
        if self.console.is_terminal:
            return
        task = next((t for t in self.tasks if t.id == task_id), None)
        if task is None or not task.total:
            return
        tenth = int(10 * min(task.completed, task.total) / task.total)
        if tenth > self._printed.get(task_id, 0):
            self._printed[task_id] = tenth
            self.console.print(f"{task.description}: {int(task.completed)}/{int(task.total)} "
                               f"({time.strftime('%H:%M:%S')})", markup=False, highlight=False)


def _setup_logging() -> None:
    """Library progress (model fetch, conversions, fallbacks) on stderr; other libraries' warnings only."""
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(message)s", force=True,
                        handlers=[RichHandler(console=err_console, show_time=False, show_path=False,
                                              show_level=False, markup=False)])
    logging.getLogger("headrank").setLevel(logging.INFO)


def _fail(message: str, code: int = 2) -> None:
    # The message is plain text: brackets in it (head lists, file names) must not be read as markup.
    err_console.print(Text("error: ", style="bold red") + Text(message))
    raise typer.Exit(code)


SAFETY_VALVE = typer.Option(None, "--safety-valve/--no-safety-valve",
                            help="Move lists the heads read poorly toward the input order (the preset's valve, "
                                 "headrank.rule). Default: the preset's setting.")


def _load_ranker(model, method, heads, max_passage_tokens, device, dtype, calibrate, max_length, window=None,
                 both_orders=None, fuse_first_stage=None, safety_valve=None):
    """A HeadRanker; ``None`` settings keep a preset's inference settings (see HeadRanker.from_pretrained)."""
    from transformers.utils import logging as hf_logging

    from headrank.ranker import HeadRanker  # torch/transformers import only when needed

    hf_logging.disable_progress_bar()  # the CLI prints its own output; no per-load weight bars

    head_set = parse_heads(heads) if heads else None
    return HeadRanker.from_pretrained(
        model,
        heads=head_set,
        method=method.value if method else None,
        device=device,
        dtype=dtype,
        max_passage_tokens=max_passage_tokens,
        calibrate=calibrate,
        max_length=max_length,
        window=window,
        both_orders=both_orders,
        fuse_first_stage=fuse_first_stage,
        safety_valve=safety_valve,
    )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _print_results(results, docids, qid, output: Output, tag: str, console: Console, title: str) -> None:
    if output is Output.json:
        rows = [{**r.to_dict(), "docid": docids[r.corpus_id], "score": _finite(r.score)} for r in results]
        print(json.dumps({"qid": qid, "results": rows}, ensure_ascii=False, indent=2))
    elif output is Output.trec:
        from headrank.data import trec_lines

        lines = trec_lines(qid or "q", [(docids[r.corpus_id], r.score) for r in results], tag)
        print("\n".join(lines))
    else:
        table = Table(title=title, show_lines=False)
        table.add_column("rank", justify="right")
        table.add_column("score", justify="right")
        table.add_column("input #", justify="right")
        table.add_column("docid")
        table.add_column("passage", overflow="fold")
        for r in results:
            text = " ".join((r.text or "").split())
            table.add_row(str(r.rank), f"{r.score:.4f}", str(r.corpus_id + 1), docids[r.corpus_id],
                          text[:160] + ("…" if len(text) > 160 else ""))
        console.print(table)


def _check_trec_fields(tag: str, qid: str, docids: list[str]) -> None:
    from headrank.data import check_trec_token

    try:
        check_trec_token(tag, "--tag")
        check_trec_token(qid, "qid")
        for docid in docids:
            check_trec_token(docid, "docid")
    except ValueError as err:
        _fail(str(err))


def _read_candidates(input: str, input_format: InputFormat, entry: int, query: str | None, depth: int | None):
    """The input file's candidates (first ``depth``) and the query; exits with a clear error otherwise."""
    try:
        data = read_rerank_input(input, input_format.value, entry)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    q = query if query is not None else data.query
    if q is None:
        _fail("no query: pass --query or use an input file that holds one")
    candidates = data.candidates[:depth] if depth else data.candidates
    if not candidates:
        _fail(f"{input}: no candidate passages")
    return data, q, candidates


@app.command()
def rerank(
    input: str = typer.Argument(..., help="Candidates: RankGPT/rank_llm JSON, JSONL, TSV; '-' reads stdin."),
    query: str = typer.Option(None, "--query", "-q", help="The query (default: the one in the input file)."),
    input_format: InputFormat = typer.Option(InputFormat.auto, "--format", help="Input format."),
    entry: int = typer.Option(0, min=0, help="Which query of a multi-query RankGPT file (0-based)."),
    depth: int = typer.Option(None, min=1, help="Rerank only the first N candidates (first-stage order)."),
    top_k: int = typer.Option(None, "--top-k", "-k", min=1, help="Print only the best K."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, json or a TREC run."),
    model: str = typer.Option(DEFAULT_PRESET, help="Preset (headrank presets), checkpoint directory, named model, "
                                                   "hub id, local model directory or .gguf file."),
    method: Method = typer.Option(None, help="icr (all heads, calibrated), heads (a head set), or the "
                                             "generative / pointwise baselines; default: the preset's or "
                                             "checkpoint's trained heads, heads if --heads is given, else icr. "
                                             "With a preset, icr / --heads / baselines run on its base model."),
    heads: str = typer.Option(None, help="Head set: JSON file or 'layer:head,...'."),
    max_passage_tokens: int = typer.Option(None, min=1, help="Per-passage token budget (default 100)."),
    max_length: int = typer.Option(None, min=1, help="Max prompt tokens before windowing (default: model context)."),
    window: int = typer.Option(None, min=0, help="Rank longer lists in sliding windows of this many passages "
                                                 "(small models read 50-passage prompts poorly; head sets are chosen "
                                                 "on 20). 0: no window. Default: the preset's setting."),
    both_orders: bool = typer.Option(None, "--both-orders/--one-order",
                                     help="Read the list as given and reversed and average each passage's two "
                                          "scores: less position bias, twice the work (icr, heads). Default: the "
                                          "preset's setting."),
    calibrate: bool = typer.Option(True, help="Subtract the N/A-query scores (heads method)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    tag: str = typer.Option("headrank", help="Run tag for TREC output."),
    fuse_first_stage: float = typer.Option(None, min=0.0, max=1.0,
                                           help="Fuse with the input (first-stage) order: weighted RRF with "
                                                "this weight on the first stage; 0.5 = plain RRF; 0 = no fusion. "
                                                "Default: the preset's setting."),
    safety_valve: bool = SAFETY_VALVE,
) -> None:
    """Rerank one query's candidate passages with the default HeadRank preset (or --model) and print the ranking."""
    _setup_logging()
    if window is not None and window == 1:
        _fail("--window must be 0 (no window) or at least 2 passages")
    if window and method in (Method.generative, Method.pointwise):
        _fail("--window works for icr, heads and checkpoints (the generative baseline windows by itself)")
    if both_orders and method in (Method.generative, Method.pointwise):
        _fail("--both-orders works for icr, heads and checkpoints")
    data, q, candidates = _read_candidates(input, input_format, entry, query, depth)
    texts = [c.text for c in candidates]
    if output is Output.trec:  # a tag or ids that cannot go into a run are refused before the model loads
        _check_trec_fields(tag, data.qid or "q", [c.docid for c in candidates])
    try:
        if method in (Method.generative, Method.pointwise):
            from headrank.rerankers import load_reranker

            ranker = load_reranker(method.value, model, device=device, dtype=dtype,
                                   max_passage_tokens=max_passage_tokens or 100, fuse_first_stage=fuse_first_stage)
        else:
            ranker = _load_ranker(model, method, heads, max_passage_tokens, device, dtype, calibrate, max_length,
                                  window, both_orders, fuse_first_stage, safety_valve)
        started = time.perf_counter()
        results = ranker.rank(q, texts, top_k=top_k)
        elapsed = time.perf_counter() - started
        label = _ranker_label(ranker)
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _fail(str(err))
    windowed = bool(results) and results[0].windowed
    out_console = Console()
    title = f"{q}  ({len(candidates)} passages, {label}, {elapsed:.2f} s)"
    try:
        _print_results(results, [c.docid for c in candidates], data.qid, output, tag, out_console, title)
    except ValueError as err:  # an id that cannot go into a TREC run
        _fail(str(err))
    if windowed:
        err_console.print("note: the list was ranked in sliding windows (it exceeded the context or --window); "
                          "scores are rank-derived")


@app.command()
def explain(
    input: str = typer.Argument(..., help="Candidates: RankGPT/rank_llm JSON, JSONL, TSV; '-' reads stdin."),
    query: str = typer.Option(None, "--query", "-q", help="The query (default: the one in the input file)."),
    input_format: InputFormat = typer.Option(InputFormat.auto, "--format", help="Input format."),
    entry: int = typer.Option(0, min=0, help="Which query of a multi-query RankGPT file (0-based)."),
    depth: int = typer.Option(20, min=1, help="Explain the first N candidates (first-stage order)."),
    model: str = typer.Option(DEFAULT_PRESET, help="Preset, checkpoint, named model, hub id or directory."),
    method: AttentionMethod = typer.Option(None, help="icr or heads (default: the preset's trained heads)."),
    heads: str = typer.Option(None, help="Head set: JSON file or 'layer:head,...'."),
    html: Path = typer.Option(None, help="Write a self-contained HTML page (no network fetches) here."),
    png: Path = typer.Option(None, help="Write a figure of the passages' text, each token shaded by its "
                                        "contribution, here ('.png' is added without an extension)."),
    output: ExplainOutput = typer.Option(ExplainOutput.table, "--output", "-o", help="table or json."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    fuse_first_stage: float = typer.Option(None, min=0.0, max=1.0,
                                           help="Fusion weight with the input order (0: off). Default: the "
                                                "preset's setting."),
) -> None:
    """Show which tokens earned each passage its score (the selected heads' mass, from the same single pass)."""
    _setup_logging()
    for what, target in (("--html", html), ("--png", png)):  # checked before the model runs
        if target is not None and not target.parent.is_dir():
            _fail(f"{what} {target}: the folder {target.parent} does not exist")
    data, q, candidates = _read_candidates(input, input_format, entry, query, depth)
    texts = [c.text for c in candidates]
    try:
        ranker = _load_ranker(model, Method(method.value) if method else None, heads, None, device, dtype, True,
                              None)
        started = time.perf_counter()
        explanations = ranker.explain(q, texts, fuse_first_stage=fuse_first_stage)
        elapsed = time.perf_counter() - started
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _fail(str(err))
    from headrank.explain import plot_explanations, render_html

    label = f"{_ranker_label(ranker, fuse_first_stage)}, {elapsed:.2f} s"
    if html:
        html.write_text(render_html(q, explanations, title="HeadRank explanation", meta=label), encoding="utf-8")
        err_console.print(f"wrote {html}")
    if png:
        err_console.print(f"wrote {plot_explanations(q, explanations, png)}")
    if output is ExplainOutput.json:
        rows = [{**e.to_dict(), "docid": candidates[e.corpus_id].docid} for e in explanations]
        print(json.dumps({"qid": data.qid, "query": q, "ranker": label, "results": rows}, ensure_ascii=False,
                         indent=2))
        return
    _print_explanations(q, explanations, candidates, label)


def _print_explanations(q: str, explanations, candidates, label: str) -> None:
    """The explanation table: the score that ranks, and with fusion its parts beside the attention score."""
    fused = any(e.fused_score is not None for e in explanations)
    table = Table(title=f"{q}  ({len(candidates)} passages, {label})")
    columns = ["rank", "ranking score (fused)", "attention rank", "input rank"] if fused else ["rank"]
    for col in (*columns, "attention score", "docid", "tokens that added most"):
        table.add_column(col)
    for e in explanations:
        best = sorted((t for t in e.tokens if t.start is not None), key=lambda t: -t.contribution)[:6]
        words = ", ".join(f"{(e.text or '')[t.start:t.end].strip() or t.token!r} {t.contribution:+.2g}" for t in best)
        score = f"{e.score:.4g}" if math.isfinite(e.score) else "empty"
        parts = ([f"{e.fused_score:.4g}", str(e.attention_rank), str(e.first_stage_rank)]
                 if fused and e.fused_score is not None else ["", "", ""] if fused else [])
        table.add_row(str(e.rank), *parts, score, candidates[e.corpus_id].docid, words)
    Console().print(table)


def _ranker_label(ranker, fuse_first_stage: float | None = None) -> str:
    """What ran: preset (or model) and method, and the inference settings (with this call's fusion weight)."""
    if not hasattr(ranker, "settings_for"):  # a baseline behind the Reranker interface
        fuse = ranker.fuse_first_stage if fuse_first_stage is None else fuse_first_stage
        return ranker.name + (f", fused with the first stage (RRF, w={fuse:g})" if fuse else "")
    who = f"preset {ranker.preset}" if ranker.preset else ranker.model.name
    return f"{who}, {ranker.method}, {ranker.settings_for(fuse_first_stage).describe()}"


@app.command()
def demo(
    model: str = typer.Option(DEFAULT_PRESET, help="Preset, checkpoint or model to run the demo with."),
    method: Method = typer.Option(None, help="icr to see the ICR baseline on the same base model."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Rerank a built-in example with the default HeadRank preset and print the ranking.

    The example's eight passages first go through BM25 (the first stage a preset's fusion expects), then
    through the reranker; the table shows both positions.
    """
    _setup_logging()
    if method in (Method.generative, Method.pointwise):
        _fail("the demo runs icr or the preset's heads; use `headrank rerank --method ...` for the baselines")
    try:
        ranker = _load_ranker(model, method, None, None, device, "auto", True, None)
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _fail(str(err))
    from headrank.firststage import bm25_search

    corpus = {str(i + 1): p for i, p in enumerate(DEMO_PASSAGES)}
    first_stage = [docid for docid, _ in bm25_search(corpus, {"demo": DEMO_QUERY}, len(corpus))["demo"]]
    results, heads_alone, elapsed = _demo_rankings(ranker, [corpus[d] for d in first_stage])
    console = Console()
    title = (f"{DEMO_QUERY}  (BM25 over {len(corpus)} passages, then {_ranker_label(ranker)}, {elapsed:.2f} s; "
             "'input #' is the BM25 rank, 'docid' the example's passage number)")
    _print_results(results, first_stage, None, Output.table, "demo", console, title)
    moved = [f"{first_stage[r.corpus_id]} ({r.corpus_id + 1} -> {r.rank})" for r in results if r.rank != r.corpus_id + 1]
    lines = [f"Moved against BM25 (passage: BM25 rank -> HeadRank rank): {', '.join(moved) or 'none'}",
             "The heads alone, before fusion with BM25 (docids, best first): "
             + ", ".join(first_stage[i] for i in heads_alone)]
    settings = results.settings
    if settings.fuse_first_stage or results.valve_fired:
        lines.append(f"This preset fuses the heads' ranking with BM25's ({settings.describe()}): chosen so that it "
                     "does not make a first stage worse on a new domain, it keeps BM25's order where the two "
                     "disagree by little" + ("; here the safety valve kept BM25's order" if results.valve_fired
                                              else "") + ". `headrank rerank --fuse-first-stage 0 "
                     "--no-safety-valve` ranks by the heads alone.")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    console.print("\n".join([
        "Try next:",
        "  .venv/bin/headrank rerank ../shared/data/msmarco-passage/dl19/bm25-top100.json --depth 20"
        "   # a real query's BM25 top 20",
        "  .venv/bin/headrank explain candidates.jsonl -q 'your query' --html why.html"
        "   # which tokens earned each score",
        "  .venv/bin/headrank serve   # Cohere / Jina / TEI rerank API on http://127.0.0.1:8000 (playground at /)",
        "  (or 'source .venv/bin/activate' once, then plain 'headrank ...')",
    ]), markup=False, highlight=False, soft_wrap=True)


def _demo_rankings(ranker, docs: list[str]):
    """The demo's ranking in the ranker's own settings and the heads' order alone, from one forward."""
    from headrank.results import ListJob

    started = time.perf_counter()
    raw = ranker.score(DEMO_QUERY, docs, fuse_first_stage=0, safety_valve=False)
    elapsed = time.perf_counter() - started
    job = ListJob.make(DEMO_QUERY, docs, 0)
    job.scores = [raw[i] for i in job.kept]
    ranking = job.ranking(None, True, ranker.settings_for())
    heads_alone = sorted(range(len(docs)), key=lambda i: (-raw[i], i))  # empty passages (-inf) last
    return ranking, heads_alone, elapsed


@app.command()
def evaluate(
    benchmarks: str = typer.Option("dl19,dl20", "--benchmarks", "-b",
                                   help="Comma-separated: dl19, dl20, dl21, noveleval, nfcorpus, a path, "
                                        "or ir_datasets:<id>."),
    method: str = typer.Option("heads", help="bm25 (first-stage passthrough), icr, heads (a head set, or the "
                                             "trained heads of the preset or checkpoint given as --model), "
                                             "generative (RankGPT-style) or pointwise."),
    depth: int = typer.Option(20, "--depth", "-K", help="Rerank the first K candidates."),
    order: str = typer.Option("first-stage", help="Input order: first-stage, reversed (first-stage top next "
                                                  "to the query), or both (mean of the two orders' scores: "
                                                  "less position bias, two passes; reuses finished runs)."),
    model: str = typer.Option(DEFAULT_PRESET, help="Preset, checkpoint, named model, hub id, local directory or "
                                                   ".gguf file; with a preset, icr, --heads and the baselines run "
                                                   "on its base model. Default: the default preset."),
    heads: str = typer.Option(None, help="Head set for --method heads: JSON file or 'layer:head,...'."),
    max_passage_tokens: int = typer.Option(100, help="Per-passage token budget."),
    calibrate: bool = typer.Option(True, help="Subtract the N/A-query scores (heads method)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks (default: $HEADRANK_DATA "
                                              "or ../shared/data)."),
    out: Path = typer.Option(Path("runs"), help="Output folder: per-run TREC files, metrics, plots."),
    split: str = typer.Option("test", help="BEIR split for BEIR benchmarks."),
    plot: bool = typer.Option(True, help="Draw the diagnostics PNG of each run."),
    fuse_first_stage: float = typer.Option(None, min=0.0, max=1.0,
                                           help="Also report the method fused with the first-stage ranking "
                                                "(weighted RRF, this weight on the first stage; 0.5 = plain "
                                                "RRF). Reuses the method's run: no extra model work (with "
                                                "--window: fused in each window, only the fused run)."),
    safety_valve: bool = typer.Option(False, help="Also apply the safety valve of the preset or checkpoint "
                                                  "given as --model to the fused report (no extra model work; "
                                                  "with --window: in each window)."),
    shared_capture: bool = typer.Option(False, help="icr / heads: read scores from one cached all-head capture "
                                                    "per list, shared by every method on the same weights (a "
                                                    "checkpoint's merged weights have their own; latency: that "
                                                    "full-depth pass)."),
    window: int = typer.Option(None, min=2, help="icr / heads: rank the K candidates in sliding windows of this "
                                                 "many passages (RankGPT-style, bottom up, half overlap)."),
) -> None:
    """Rerank benchmark candidates and report nDCG@10, MRR@10, Recall@K and middle-zone diagnostics.

    Resumable: rerun the same command after an interruption and finished queries are kept.
    """
    from headrank.datasets import load_benchmark
    from headrank.evaluate import EvalSettings, place_rule
    from headrank.scorers import build_scorer

    _setup_logging()
    _check_evaluate_options(method, order, fuse_first_stage, shared_capture, window)
    valve = _preset_valve(model) if safety_valve else None  # before anything loads
    try:
        settings = EvalSettings(
            method=method, depth=depth, order=order,
            model=None if method == "bm25" else model,
            heads=heads if method == "heads" else None,
            max_passage_tokens=None if method == "bm25" else max_passage_tokens,
            device=device, dtype=dtype, calibrate=calibrate, capture="shared" if shared_capture else "own",
            window=window,
        )
        names = [b.strip() for b in benchmarks.split(",") if b.strip()]
        if not names:
            raise ValueError(f"--benchmarks {benchmarks!r} names no benchmark")
        loaded = [load_benchmark(n, data_root=data_root, cache_dir=out / "cache", split=split) for n in names]
    except (ValueError, FileNotFoundError, DataFormatError, ImportError) as err:  # ImportError: ir_datasets
        _fail(str(err))
    placed = place_rule(settings, fuse_first_stage, valve)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the CLI prints its own output; no per-load weight bars
        scorer = build_scorer(method, model, heads, max_passage_tokens, device, dtype, calibrate, window,
                              shared_capture, out / "cache" / "shared", *placed.in_ranker)
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _fail(str(err))
    fuse_after, valve_after = placed.afterwards
    evaluation = _evaluate_with_progress(loaded, scorer, placed.settings, out, fuse_after, plot, valve_after)
    print(evaluation.table)
    err_console.print(f"wall time {evaluation.summary['wall_time_s']:.1f} s; summary: {evaluation.summary_file}")


def _preset_valve(model: str):
    """The safety valve a preset or checkpoint was shipped with; a clear error when it has none."""
    from headrank.presets import load_preset

    try:
        valve = load_preset(model).inference.safety_valve
    except ValueError as err:
        _fail(f"--safety-valve needs a preset or checkpoint as --model: {err}")
    if valve is None:
        _fail(f"{model} has no safety valve in its inference settings")
    return valve


def _evaluate_with_progress(loaded, scorer, settings, out: Path, fuse_first_stage, plot: bool, valve=None):
    """``run_evaluation`` under a progress bar (queries of every benchmark, with an ETA); Ctrl-C keeps what is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from headrank.evaluate import run_evaluation

    label = f"{settings.method} K={settings.depth}"
    total = sum(len(b.queries) for b in loaded) * (2 if settings.order == "both" else 1)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with _Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(label, total=total)

        def on_query(bench_name: str, qid: str) -> None:
            progress.update(task, advance=1, description=f"{label} {bench_name}")

        try:
            return run_evaluation(loaded, scorer, settings, out, fuse_first_stage, plot, on_query, safety_valve=valve)
        except ValueError as err:
            _fail(str(err))
        except KeyboardInterrupt:
            progress.stop()
            _fail(f"interrupted; finished queries are saved under {out}: rerun the same command to resume", code=130)


def _training_callbacks(progress: _Progress) -> dict:
    """train_head_set's progress callbacks drawing on ``progress``: steps of an epoch, the epoch's line, and the
    passes without a loss (reference, validation) as bars of their own."""
    task = progress.add_task("epoch 1", total=None)
    phases: dict[str, int] = {}

    def on_start(total: int) -> None:
        progress.update(task, total=total)

    def on_step(epoch: int, step: int, loss: float) -> None:
        progress.update(task, completed=step, description=f"epoch {epoch} loss {loss:.4f}")

    def on_epoch(epoch: int, loss: float, val: float) -> None:
        progress.console.print(f"epoch {epoch}: train loss {loss:.4f}, validation nDCG@10 {val:.4f}")
        progress.reset(task)

    def on_phase(name: str, done: int, total: int) -> None:
        if name not in phases:
            phases[name] = progress.add_task(name, total=total)
        progress.update(phases[name], completed=done)
        if done == total:
            progress.remove_task(phases.pop(name))
            if name == "reference":
                progress.console.print(f"reference pass: {total} training lists scored with the adapters off")

    return {"on_start": on_start, "on_step": on_step, "on_epoch": on_epoch, "on_phase": on_phase}


def _check_evaluate_options(method: str, order: str, fuse_first_stage, shared_capture: bool, window) -> None:
    """Combinations of evaluate's options that cannot run, refused before anything loads."""
    from headrank.scorers import METHODS

    if method not in METHODS:
        _fail(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "bm25" and order != "first-stage":
        _fail(f"--method bm25 is the first-stage order itself; --order {order} does not apply")
    if method == "bm25" and fuse_first_stage is not None:
        _fail("--fuse-first-stage fuses a reranker with the first stage; --method bm25 is the first stage")
    if shared_capture and method not in ("icr", "heads"):
        _fail("--shared-capture works for --method icr and heads")
    if window is not None and (method not in ("icr", "heads") or shared_capture):
        _fail("--window works for --method icr and heads with their own capture (not --shared-capture)")


def _floats(value: str, name: str, low: float | None = None) -> list[float]:
    """Comma-separated finite numbers (nan and inf are refused), each >= ``low`` when given."""
    try:
        values = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {value!r}") from None
    bad = [v for v in values if not math.isfinite(v) or (low is not None and v < low)]
    if bad or not values:
        need = "finite numbers" + (f" >= {low:g}" if low is not None else "")
        raise ValueError(f"{name}: expected comma-separated {need}, got {value!r}")
    return values


def _ints(value: str, name: str, low: int = 1) -> list[int]:
    """Comma-separated whole numbers >= ``low``."""
    values = _floats(value, name, low)
    if any(v != int(v) for v in values):
        raise ValueError(f"{name}: expected comma-separated whole numbers >= {low}, got {value!r}")
    return [int(v) for v in values]


@app.command()
def compare(
    runs_a: str = typer.Argument(..., help="Run directories (or metrics.json) of reranker A, comma-separated."),
    runs_b: str = typer.Argument(..., help="Those of reranker B on the same benchmarks, in the same order."),
    measure: str = typer.Option("nDCG@10", help="Per-query measure as named in metrics.json."),
    flips: int = typer.Option(20000, min=100, help="Random sign flips of the paired randomization test."),
    seed: int = typer.Option(0),
) -> None:
    """A against B per query: mean difference, wins / losses / ties, paired sign-flip test p-value."""
    from headrank.compare import compare_runs, load_run_metrics

    try:
        a = [load_run_metrics(Path(p)) for p in runs_a.split(",") if p]
        b = [load_run_metrics(Path(p)) for p in runs_b.split(",") if p]
        rows = compare_runs(a, b, measure=measure, flips=flips, seed=seed)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    from rich import box

    table = Table(title=f"{measure}, A - B; p: paired sign-flip test ({flips} flips, seed {seed})",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for column in ("benchmark", "n", "A", "B", "A - B", "wins", "losses", "ties", "p"):
        table.add_column(column, justify="left" if column == "benchmark" else "right", min_width=len(column),
                         overflow="fold")
    for r in rows:
        table.add_row(r.label, str(r.queries), f"{r.mean_a:.4f}", f"{r.mean_b:.4f}", f"{r.mean_diff:+.4f}",
                      str(r.wins), str(r.losses), str(r.ties),
                      f"{r.p_value:.3f}" if r.p_value >= 0.001 else "<0.001")
    Console().print(table)


@app.command("select-heads")
def select_heads(
    out: Path = typer.Option(..., "--out", "-o", help="Head set JSON to write (a heatmap PNG is written beside it)."),
    model: str = typer.Option(DEFAULT_MODEL, help="Named model, hub id, local directory or .gguf file (a preset "
                                                  "means its base model). Default: the default preset's base "
                                                  "model."),
    benchmark: str = typer.Option("dl21", help="Training benchmark (never an evaluation set)."),
    depth: int = typer.Option(20, "--depth", "-K", help="Candidates per training list (the first-stage top K)."),
    order: str = typer.Option("first-stage", help="Feed order of the training lists: first-stage, reversed or "
                                                   "shuffled (fixed per query and --seed)."),
    max_passage_tokens: int = typer.Option(100, help="Per-passage token budget (saved with the head set)."),
    preset: str = typer.Option("headrank", help="headrank (sweep lambda and K on validation) or qrhead "
                                                "(lambda 0, top 16, no sweep)."),
    lambdas: str = typer.Option("0,0.1,0.3,1", help="Lambda values to sweep."),
    ks: str = typer.Option("4,8,16,32", help="Head-set sizes to sweep."),
    val_fraction: float = typer.Option(0.25, help="Share of training queries held out for choosing lambda, K."),
    seed: int = typer.Option(0, help="Seed of the train/validation split."),
    calibrate: bool = typer.Option(True, help="Rank by N/A-calibrated mass (D_h and the head set's scores)."),
    max_depth: int = typer.Option(None, min=1, help="Only heads in the first N layers (a shallower L*: faster, "
                                                    "usually less accurate)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks."),
    cache: Path = typer.Option(Path("runs") / "cache", help="Where head observations are cached."),
    split: str = typer.Option("train", help="BEIR split of a BEIR training benchmark (e.g. nfcorpus train/dev)."),
) -> None:
    """Choose a head set: D_h (nDCG@10 of each head) and E_h (its entropy) on training queries."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from headrank.datasets import check_training_set, load_benchmark
    from headrank.evaluate import git_commit
    from headrank.presets import base_model_of
    from headrank.selection import plot_heatmaps, select_head_set

    _setup_logging()
    from headrank.selection import SELECTION_ORDERS

    if preset not in ("headrank", "qrhead"):
        _fail("--preset must be headrank or qrhead")
    if order not in SELECTION_ORDERS:
        _fail(f"--order must be one of {', '.join(SELECTION_ORDERS)}")
    try:
        lambda_values = _floats(lambdas, "--lambdas", 0.0)
        k_values = _ints(ks, "--ks")
        check_training_set(benchmark, split)
        bench = load_benchmark(benchmark, data_root=data_root, cache_dir=cache, split=split)
        ranker = _load_ranker(base_model_of(model), Method.icr, None, max_passage_tokens, device, dtype, True, None)
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, FileNotFoundError, DataFormatError) as err:
        _fail(str(err))
    columns = (TextColumn("observing heads"), BarColumn(), MofNCompleteColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with _Progress(*columns, console=err_console) as progress:
        task = progress.add_task("observe", total=None)
        try:
            head_set, selection, observations = select_head_set(
                ranker, bench, depth=depth, order=order, preset=preset, lambdas=lambda_values, ks=k_values,
                val_fraction=val_fraction, seed=seed, calibrate=calibrate, max_depth=max_depth, cache_dir=cache,
                on_list=lambda done, total: progress.update(task, completed=done, total=total), commit=git_commit())
        except ValueError as err:
            _fail(str(err))
    loaded = ranker.model
    train_q, val_q = head_set.selection["train_queries"], head_set.selection["val_queries"]
    out.parent.mkdir(parents=True, exist_ok=True)
    head_set.save(out)
    plot_heatmaps(selection.d, selection.e, observations.heads, selection.heads, loaded.num_layers,
                  loaded.num_heads, f"{loaded.name} on {bench.name} train ({len(train_q)} queries)",
                  out.with_suffix(".png"))
    table = Table(title=f"sweep on {bench.name}: {len(train_q)} train / {len(val_q)} validation queries")
    for col in ("lambda", "K", "train nDCG@10", "val nDCG@10"):
        table.add_column(col, justify="right")
    for row in selection.sweep:
        mark = " *" if (row["lambda"], row["k"]) == (selection.lam, selection.k) else ""
        table.add_row(f"{row['lambda']:g}", str(row["k"]), f"{row['train_ndcg@10']:.4f}", f"{row['val_ndcg@10']:.4f}{mark}")
    Console().print(table)
    err_console.print(f"chose lambda={selection.lam:g}, K={selection.k} (L*={head_set.deepest_layer}); "
                      f"wrote {out} and {out.with_suffix('.png')}")


@app.command()
def train(
    heads: Path = typer.Option(..., help="Head set JSON (from select-heads); its train/validation split is reused."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write."),
    model: str = typer.Option(None, help="Base model (default: the one the head set names)."),
    benchmark: str = typer.Option("dl21", help="Training benchmark (never an evaluation set)."),
    epochs: int = typer.Option(3),
    lr: float = typer.Option(1e-4),
    lora_r: int = typer.Option(8),
    targets: str = typer.Option("q_proj,k_proj", help="LoRA target projections, e.g. q_proj,k_proj,v_proj,o_proj."),
    lora_layers: str = typer.Option("up-to-l-star", help="Adapter layers: up-to-l-star (0..L*) or head-layers "
                                    "(only the layers that hold a selected head)."),
    beta: float = typer.Option(1.0, help="DPO temperature."),
    alpha: float = typer.Option(0.5, help="Weight of the distribution regularizer (0 disables it)."),
    tau: float = typer.Option(1.0, help="Temperature of the target distribution exp(grade / tau)."),
    list_size: int = typer.Option(20, help="Candidates per training list."),
    pairs: int = typer.Option(8, help="Preference pairs per list."),
    pair_mode: str = typer.Option("hard-adjacent", help="hard-adjacent, random-adjacent or any-gap."),
    reference: bool = typer.Option(True, help="DPO against the adapter-free model (off: plain pairwise loss)."),
    list_order: str = typer.Option("shuffled", help="shuffled or first-stage order of training lists."),
    lists_per_query: int = typer.Option(1, help="Shuffled training lists per query (each a new permutation)."),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, help="Continue from the training state in --out."),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("float32"),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks."),
    split: str = typer.Option("train", help="BEIR split of a BEIR training benchmark (e.g. nfcorpus train/dev)."),
    also_train: list[str] = typer.Option([], help="More training queries from another set, BENCH:SPLIT[:N | :@FILE] "
                                         "(e.g. nfcorpus:train:120, a seeded sample of 120 usable queries); "
                                         "repeatable."),
    also_val: list[str] = typer.Option([], help="More validation queries, same form (e.g. nfcorpus:dev:60); "
                                       "validation nDCG@10 is then the mean over domains."),
) -> None:
    """Preference-align the head set's attention with LoRA; writes a HeadRank checkpoint directory."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from headrank.align import TrainConfig, train_head_set
    from headrank.datasets import check_training_set, load_benchmark

    _setup_logging()
    try:
        check_training_set(benchmark, split)
        head_set = HeadSet.load(heads)
        config = TrainConfig(lora_r=lora_r, lora_alpha=2 * lora_r, target_modules=tuple(targets.split(",")),
                             lora_layers=lora_layers, lr=lr, epochs=epochs, beta=beta, alpha=alpha, tau=tau,
                             list_size=list_size,
                             pairs_per_list=pairs, pair_mode=pair_mode, use_reference=reference,
                             list_order=list_order, lists_per_query=lists_per_query, seed=seed,
                             extra_train=tuple(also_train), extra_val=tuple(also_val))
        bench = load_benchmark(benchmark, data_root=data_root, split=split)
    except (ValueError, FileNotFoundError, DataFormatError) as err:
        _fail(str(err))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with _Progress(*columns, console=err_console) as progress:
        try:
            result = train_head_set(head_set, bench, config, out, model=model, device=device, dtype=dtype,
                                    resume=resume, data_root=data_root, **_training_callbacks(progress))
        except ModelUnavailableError as err:
            _fail(str(err), code=3)
        except (ValueError, FileNotFoundError) as err:  # e.g. --resume with other settings, another model
            _fail(str(err))
    for row in result["history"]:
        loss = "-" if row["train_loss"] is None else f"{row['train_loss']:.4f}"
        took = f", {row['seconds']:.0f} s" if row.get("seconds") else ""
        Console().print(f"epoch {row['epoch']}: train loss {loss}, validation nDCG@10 {row['val_ndcg@10']:.4f}{took}")
    err_console.print(f"best validation nDCG@10 {result['best_val_ndcg@10']:.4f}; checkpoint: {out}")


@app.command()
def serve(
    model: str = typer.Option(DEFAULT_PRESET, help="Preset, checkpoint, named model, hub id or directory."),
    method: Method = typer.Option(None, help="icr or heads (default: the preset's trained heads)."),
    heads: str = typer.Option(None, help="Head set: JSON file or 'layer:head,...'."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default; 0.0.0.0 exposes it)."),
    port: int = typer.Option(8000, min=1, max=65535),
    api_key: str = typer.Option(None, envvar="HEADRANK_API_KEY",
                                help="Require 'Authorization: Bearer KEY' (or X-API-Key) on every route but /health."),
    max_documents: int = typer.Option(100, min=1, help="Documents per request."),
    max_document_chars: int = typer.Option(20_000, min=1, help="Characters per document."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, min=1, help="Request body size."),
    max_queue: int = typer.Option(64, min=1, help="Requests waiting for the model before 429."),
    max_batch: int = typer.Option(None, min=1, help="Requests ranked together in one padded forward (1: no "
                                                    "batching). Default: 1 on CPU, where padded batches were slower "
                                                    "(BENCHMARKS.md), 8 on CUDA."),
    batch_wait_ms: float = typer.Option(5.0, min=0.0, help="How long the first request waits for others to batch."),
    timeout: float = typer.Option(120.0, min=0.001, help="Seconds before a request gets 504."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    preload: list[str] = typer.Option(None, "--preload", help="Another shipped preset the playground may explain "
                                                              "with, loaded at start (repeatable)."),
    fuse_first_stage: float = typer.Option(None, min=0.0, max=1.0,
                                           help="Default fusion weight with the input order for every request "
                                                "(0: off; requests may set their own 'fuse_first_stage'). "
                                                "Default: the model's setting."),
    safety_valve: bool = SAFETY_VALVE,
    log_level: str = typer.Option("info", help="critical, error, warning, info (access log) or debug."),
    json_logs: bool = typer.Option(False, "--json-logs", help="Log JSON lines (time, level, logger, message, "
                                                              "method, route, status, latency_ms, request_id)."),
) -> None:
    """Serve reranking over HTTP: Cohere/Jina /v1|v2/rerank, TEI /rerank, /health, /info, /metrics, /docs."""
    _setup_logging()
    if method in (Method.generative, Method.pointwise):
        _fail("serve runs HeadRank or ICR; the generative and pointwise baselines are for evaluation")
    try:
        from headrank.serve import ServeConfig
        from headrank.serve import serve as run_service
    except ImportError as err:
        _fail(str(err))
    if max_batch is None:
        from headrank.models import resolve_device

        try:
            max_batch = 8 if resolve_device(device).type == "cuda" else 1
        except ValueError as err:
            _fail(str(err))
    from headrank.presets import available_presets

    unknown = [p for p in preload or [] if p not in available_presets()]
    if unknown:
        _fail(f"--preload {unknown[0]!r} is not a shipped preset; choose from {', '.join(available_presets())}")
    try:
        config = ServeConfig(model=model, method=method.value if method else None, heads=heads, device=device,
                             dtype=dtype, host=host, port=port, api_key=api_key, max_documents=max_documents,
                             max_document_chars=max_document_chars, max_body_bytes=max_body_bytes,
                             max_queue=max_queue, max_batch_lists=max_batch, batch_wait_ms=batch_wait_ms,
                             request_timeout_s=timeout, preload=tuple(preload or ()),
                             fuse_first_stage=fuse_first_stage, safety_valve=safety_valve,
                             log_level=log_level.lower(), json_logs=json_logs)
    except ValueError as err:
        _fail(str(err))
    err_console.print(f"headrank serve: {model} on http://{host}:{port} (docs: /docs; the model loads in the "
                      "background, /health says when it is ready)")
    run_service(config)


@app.command("rerank-batch")
def rerank_batch(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: shards/, run.trec, problems.txt."),
    run: Path = typer.Option(None, help="First-stage TREC run to rerank."),
    topics: Path = typer.Option(None, help="Queries: 'qid<TAB>query' per line (with --run)."),
    corpus: Path = typer.Option(None, help="Passages: BEIR folder or corpus.jsonl, or 'docid<TAB>text' TSV (with --run)."),
    candidates: Path = typer.Option(None, help="Instead of --run: RankGPT / rank_llm candidate JSON."),
    benchmark: str = typer.Option(None, "--benchmark", "-b", help="Instead of --run: a named benchmark or folder."),
    depth: int = typer.Option(20, "--depth", "-K", min=1, help="Rerank the first K documents of each query."),
    model: str = typer.Option(DEFAULT_PRESET, help="Preset, checkpoint, named model, hub id or directory."),
    method: Method = typer.Option(None, help="icr or heads (default: the preset's trained heads)."),
    heads: str = typer.Option(None, help="Head set: JSON file or 'layer:head,...'."),
    workers: int = typer.Option(0, min=0, help="Ray actors, each with its own model (0: in this process, no Ray)."),
    gpus_per_worker: float = typer.Option(0.0, min=0.0, help="GPUs per Ray actor (e.g. 1, or 0.5 to share one)."),
    batch_size: int = typer.Option(4, min=1, help="Lists per forward / per Ray batch."),
    ray_address: str = typer.Option(None, help="Join this Ray cluster (e.g. 'auto' or ray://host:10001); "
                                               "default: a local Ray sized to this machine."),
    on_error: str = typer.Option("skip", help="Malformed or dangling input rows, duplicate qids, empty queries: "
                                              "skip (listed in problems.txt) or fail."),
    fuse_first_stage: float = typer.Option(None, min=0.0, max=1.0,
                                           help="Fusion weight with the run's order (0: off). Default: the "
                                                "preset's setting."),
    safety_valve: bool = SAFETY_VALVE,
    restart: bool = typer.Option(False, "--restart", help="Discard the results already in --out and start over "
                                                          "(a rerun with other settings or inputs is refused "
                                                          "without it)."),
    tag: str = typer.Option("headrank", help="Run tag of the final TREC run."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks."),
) -> None:
    """Rerank a whole run (every query's top K) in process or on Ray; resumable; writes one TREC run.

    Rerunning the same command resumes; a rerun into the same --out with another model, method, head set,
    depth or other passages for a finished query is refused with what changed (--restart starts over)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from headrank.batch import RankerSpec, rerank_run, write_final_run

    _setup_logging()
    if method in (Method.generative, Method.pointwise):
        _fail("rerank-batch runs HeadRank or ICR; use evaluate for the generative and pointwise baselines")
    batch = _batch_input(run, topics, corpus, candidates, benchmark, depth, on_error, tag, data_root)
    out.mkdir(parents=True, exist_ok=True)
    spec = RankerSpec(model=model, method=method.value if method else None, heads=heads, device=device, dtype=dtype,
                      fuse_first_stage=fuse_first_stage, safety_valve=safety_valve)
    columns = (TextColumn("queries"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with _Progress(*columns, console=err_console) as progress:
        task = progress.add_task("rerank", total=len(batch.lists))
        try:
            ranked = rerank_run(batch.lists, spec, out, workers=workers, batch_size=batch_size,
                                gpus_per_worker=gpus_per_worker, ray_address=ray_address,
                                on_done=lambda done, total: progress.update(task, completed=done, total=total),
                                depth=depth, restart=restart,
                                on_resume_checked=lambda: _report_problems(out, batch.problems))
        except ModelUnavailableError as err:
            _fail(str(err), code=3)
        except ImportError as err:
            _fail(str(err))
        except (ValueError, TypeError) as err:
            _fail(str(err))
        except KeyboardInterrupt:
            progress.stop()
            _fail(f"interrupted; finished queries are saved in {out / 'shards'}: rerun the same command to resume",
                  code=130)
    path = write_final_run(out, batch.lists, tag)
    err_console.print(f"ranked {ranked} queries now ({len(batch.lists) - ranked} were already done); wrote {path}")


def _batch_input(run, topics, corpus, candidates, benchmark, depth: int, on_error: str, tag: str, data_root):
    """rerank-batch's input from exactly one source (a run with topics and corpus, candidates, a benchmark)."""
    from headrank.batch import ON_ERROR, benchmark_lists, read_rankgpt_lists, read_run_lists
    from headrank.data import check_trec_token

    if sum(x is not None for x in (run, candidates, benchmark)) != 1:
        _fail("give exactly one input: --run (with --topics and --corpus), --candidates or --benchmark")
    if run is not None and (topics is None or corpus is None):
        _fail("--run needs --topics and --corpus")
    if on_error not in ON_ERROR:
        _fail(f"--on-error must be one of {', '.join(ON_ERROR)}")
    try:
        check_trec_token(tag, "--tag")
        if run is not None:
            return read_run_lists(run, topics, corpus, depth, on_error)
        if candidates is not None:
            return read_rankgpt_lists(candidates, depth, on_error)
        return benchmark_lists(benchmark, depth, data_root)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        _fail(str(err))


def _report_problems(out: Path, problems: list[str]) -> None:
    """This run's problems.txt (an older run's is removed), and a line about it."""
    from headrank.batch import write_problems

    path = write_problems(out, problems)
    if path is not None:
        err_console.print(f"skipped {len(problems)} input rows (listed in {path}); first: {problems[0]}")


@app.command("presets")
def presets_command() -> None:
    """List the shipped HeadRank presets with their model cards' headline numbers."""
    from headrank.presets import DEFAULT_PRESET, available_presets, list_presets

    from rich import box

    table = Table(title="HeadRank presets: nDCG@10 averaged over DL19, DL20, NovelEval, NFCorpus (K = 20)",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, show_edge=False)
    table.add_column("preset", no_wrap=True, min_width=max(len(name) + 2 for name in available_presets()))
    for col in ("settings", "nDCG@10", "BM25", "ICR", "s/list"):
        table.add_column(col, no_wrap=True)
    for preset in list_presets():
        head = preset.headline
        latency = preset.card.get("latency", [{}])[0].get("seconds_per_list")
        table.add_row(preset.name + (" *" if preset.name == DEFAULT_PRESET else ""), preset.inference.short(),
                      *(f"{head[k]:.4f}" if isinstance(head.get(k), float) else "-" for k in ("preset", "bm25", "icr")),
                      f"{latency:.1f}" if isinstance(latency, float) else "-")
    Console().print(table)
    err_console.print("* the default. settings: 1 pass / 2 orders, RRF = fused with the first stage; "
                      "s/list: N = 20 on a 2-core CPU. Model cards: headrank/presets/<name>/README.md. Use one with "
                      "--model <name> or HeadRanker.from_pretrained('<name>').")


@app.command()
def adapt(
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write (load it with --model OUT)."),
    benchmark: str = typer.Option(None, "--data", "-d", help="Your judged queries: a BEIR folder (corpus, queries, "
                                  "qrels/<split>.tsv), a folder with a RankGPT candidate .json and qrels.txt, "
                                  "nfcorpus (with --split train or dev) or dl21. Never a reporting set."),
    corpus: Path = typer.Option(None, help="Instead of --data, no judged queries: your corpus (BEIR folder, "
                                           "corpus.jsonl or docid<TAB>text TSV). The preset's base LLM writes a "
                                           "query for sampled passages; each source passage is the positive."),
    synthetic_queries: int = typer.Option(200, min=8, help="With --corpus: passages to write queries for."),
    keep_fusion: bool = typer.Option(None, "--keep-fusion/--choose-fusion",
                                     help="Keep the preset's fusion weight (re-choose heads and weights only) or "
                                          "also choose it. Default: keep with --corpus (written queries favour "
                                          "whatever matches their own words), choose with --data."),
    preset: str = typer.Option(None, "--from", help="Preset or checkpoint to adapt (default: the default preset)."),
    split: str = typer.Option("train", help="BEIR split to read."),
    depth: int = typer.Option(20, "--depth", "-K", min=2, help="First-stage candidates per list."),
    val_fraction: float = typer.Option(0.3, help="Share of your queries held out to choose among candidates."),
    seed: int = typer.Option(0, help="Seed of the split and of the shuffled training lists."),
    ks: str = typer.Option("4,8,16,32", help="Plain head-set sizes to try."),
    pools: str = typer.Option("8,16,32,64", help="Head pools to fit per-head weights over."),
    max_queries: int = typer.Option(None, min=4, help="Use at most this many judged queries (a seeded sample)."),
    queries: Path = typer.Option(None, help="Use only the query ids listed in this file (one per line)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks."),
    cache: Path = typer.Option(Path("runs") / "cache" / "adapt", help="Where all-head captures are cached."),
    report: Path = typer.Option(None, help="Also write the report (every candidate) as JSON here."),
) -> None:
    """Adapt a preset to your domain: re-select and re-weight its heads on your judged queries.

    Captures every head of the preset's model once per list (cached: a rerun resumes), tries the preset
    unchanged, top-K head sets and per-head weights, with and without first-stage fusion, and keeps the best on
    a validation split of your queries. Prints before/after on that split; measure on queries it never saw.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from headrank.adapt import AdaptConfig, adapt_preset
    from headrank.presets import DEFAULT_PRESET

    _setup_logging()
    preset = preset or DEFAULT_PRESET
    if (benchmark is None) == (corpus is None):
        _fail("give your judged queries (--data) or, without judgments, your corpus (--corpus): one of the two")
    if corpus is not None and (queries is not None or max_queries is not None):
        _fail("--queries and --max-queries pick judged queries; with --corpus use --synthetic-queries")
    try:
        config = AdaptConfig(depth=depth, val_fraction=val_fraction, seed=seed,
                             ks=tuple(_ints(ks, "--ks")),
                             pools=tuple(_ints(pools, "--pools")),
                             keep_fusion=corpus is not None if keep_fusion is None else keep_fusion)
        if benchmark is not None:
            bench = _adapt_judged(benchmark, split, data_root, queries, max_queries, depth, seed)
        elif not corpus.exists():
            raise FileNotFoundError(f"--corpus {corpus} not found")
    except (ValueError, FileNotFoundError, DataFormatError) as err:
        _fail(str(err))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with _Progress(*columns, console=err_console) as progress:
        tasks: dict[str, int] = {}

        def on_list(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        try:
            if corpus is not None:
                bench = _synthetic_bench(corpus, preset, synthetic_queries, cache, depth, seed, device, dtype,
                                         lambda done, total: on_list("writing queries", done, total))
            result = adapt_preset(preset, bench, out, config, cache_dir=cache, device=device, dtype=dtype,
                                  on_list=on_list)
        except ModelUnavailableError as err:
            _fail(str(err), code=3)
        except (ValueError, FileNotFoundError, FileExistsError) as err:
            _fail(str(err))
    _print_adapt_report(result, bench.name, out, report)


def _adapt_judged(benchmark: str, split: str, data_root, queries, max_queries, depth: int, seed: int):
    """adapt --data: the judged queries, restricted to a list or a sample when asked (never a reporting set)."""
    from headrank.adapt import restrict_queries, sample_queries
    from headrank.data import read_text_file, text_lines
    from headrank.datasets import check_training_set, load_benchmark

    check_training_set(benchmark, split)
    bench = load_benchmark(benchmark, data_root=data_root, cache_dir=Path("runs") / "cache", split=split)
    if queries is not None:
        bench = restrict_queries(bench, text_lines(read_text_file(queries)))
    if max_queries is not None:
        bench = sample_queries(bench, max_queries, depth, seed)
    return bench


def _print_adapt_report(result, bench_name: str, out: Path, report: Path | None) -> None:
    """adapt's before/after table, its warning, the JSON report and what to run next."""
    table = Table(title=f"{bench_name}: {len(result.train_queries)} training / {len(result.val_queries)} "
                        "validation queries (nDCG@10 on the validation queries, one pass)")
    for col in ("", "heads", "weights", "fusion", "val nDCG@10"):
        table.add_column(col)
    for label, c in (("before: " + result.before.label, result.before), ("after: " + result.after.label, result.after)):
        table.add_row(label, str(len(c.heads)), "yes" if c.weights else "no", "-" if c.fuse is None else f"RRF {c.fuse:g}",
                      f"{c.val_ndcg:.4f}")
    Console().print(table)
    if result.warning:
        err_console.print(f"warning: {result.warning}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=2))
    err_console.print(f"wrote {out}; rank with: headrank rerank --model {out} ...  (the validation split chose it: "
                      "check it on queries it never saw, e.g. headrank evaluate --model "
                      f"{out} -b <your test set>)")


def _synthetic_bench(corpus: Path, preset: str, n: int, cache: Path, depth: int, seed: int, device: str, dtype: str,
                     on_query):
    """adapt --corpus: the preset's base LLM writes the queries (``headrank.synthetic``)."""
    from headrank.presets import load_preset
    from headrank.synthetic import corpus_benchmark

    return corpus_benchmark(corpus, load_preset(preset).base_model, n, cache / "synthetic" / corpus.name, depth,
                            seed, device, dtype, on_query)


@app.command("build-preset")
def build_preset_command(
    out: Path = typer.Option(..., "--out", "-o", help="Preset directory to write."),
    model: str = typer.Option(DEFAULT_MODEL, help="Base model (named model, hub id, local directory, .gguf). "
                                                  "Default: the default preset's base model."),
    name: str = typer.Option(None, help="Preset name (default: the --out folder's name)."),
    checkpoint: Path = typer.Option(None, help="Package this trained checkpoint instead of selecting and training."),
    work: Path = typer.Option(None, help="Folder for the head set and checkpoint (default: runs/build/<name>); "
                                         "rerunning resumes from it."),
    benchmark: str = typer.Option("dl21", help="Training benchmark (never a reporting set)."),
    split: str = typer.Option("train", help="BEIR split of a BEIR training benchmark."),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks."),
    depth: int = typer.Option(20, "--depth", "-K", min=2, help="Candidates per list."),
    lambdas: str = typer.Option("0,0.1,0.3,1", help="Selection: lambda values to sweep."),
    ks: str = typer.Option("4,8,16,32", help="Selection: head-set sizes to sweep."),
    val_fraction: float = typer.Option(0.25, help="Share of training queries held out for every choice."),
    epochs: int = typer.Option(3),
    lr: float = typer.Option(1e-4),
    lora_r: int = typer.Option(8),
    targets: str = typer.Option("q_proj,k_proj", help="LoRA target projections."),
    lora_layers: str = typer.Option("up-to-l-star", help="up-to-l-star or head-layers."),
    lists_per_query: int = typer.Option(1, help="Shuffled training lists per query."),
    seed: int = typer.Option(0),
    card: Path = typer.Option(None, help="JSON object merged into the model card (summary, license, numbers)."),
    device: str = typer.Option("auto"),
    cache: Path = typer.Option(Path("runs") / "cache", help="Where head observations are cached."),
) -> None:
    """Build a preset: select heads, train the alignment, choose inference settings on validation, package it."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from headrank.align import TrainConfig
    from headrank.datasets import check_training_set, load_benchmark
    from headrank.evaluate import git_commit
    from headrank.presets.build import build_from_scratch, package_checkpoint

    _setup_logging()
    name = name or out.name
    try:
        check_training_set(benchmark, split)
        extra = json.loads(card.read_text()) if card else {}
        if not isinstance(extra, dict):
            raise ValueError(f"{card}: the card must be a JSON object")
        bench_data = load_benchmark(benchmark, data_root=data_root, cache_dir=cache, split=split)
        config = TrainConfig(lora_r=lora_r, lora_alpha=2 * lora_r, target_modules=tuple(targets.split(",")),
                             lora_layers=lora_layers, lr=lr, epochs=epochs, lists_per_query=lists_per_query,
                             seed=seed, list_size=depth)
        selection_args = dict(depth=depth, lambdas=_floats(lambdas, "--lambdas", 0.0),
                              ks=_ints(ks, "--ks"), val_fraction=val_fraction, seed=seed,
                              commit=git_commit())
    except (ValueError, FileNotFoundError, DataFormatError, json.JSONDecodeError) as err:
        _fail(str(err))
    extra.setdefault("commit", git_commit())
    extra.setdefault("command", "headrank " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["build-preset"] else None)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with _Progress(*columns, console=err_console) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        try:
            if checkpoint is not None:
                preset = package_checkpoint(checkpoint, out, name, bench_data, depth=depth, device=device,
                                            dtype="float32", card=extra,
                                            on_list=lambda done, total: report("choosing inference settings",
                                                                               done, total))
            else:
                preset = build_from_scratch(model, out, name, bench_data, config, work or Path("runs") / "build" / name,
                                            selection_args=selection_args, device=device, cache_dir=cache,
                                            card=extra, progress=report)
        except ModelUnavailableError as err:
            _fail(str(err), code=3)
        except (ValueError, FileNotFoundError, FileExistsError) as err:
            _fail(str(err))
    for row in preset.card.get("validation", []):
        Console().print(f"{row['setting']}: " + ", ".join(f"{k} {v:.4f}" for k, v in row["ndcg@10"].items()))
    err_console.print(f"chose: {preset.inference.describe()}; wrote preset {preset.name} to {out}")


@app.command()
def bench(
    heads: Path = typer.Option(..., help="Head set JSON for the HeadRank rows (its L* sets the truncation)."),
    model: str = typer.Option(DEFAULT_MODEL, help="Model for every method. Default: the default preset's base "
                                                  "model."),
    sizes: str = typer.Option("10,20,50,100", help="List sizes N."),
    methods: str = typer.Option("headrank,icr,generative,pointwise", help="Methods to time."),
    queries: int = typer.Option(2, help="DL19 queries per measurement (after one warm-up list)."),
    max_passage_tokens: int = typer.Option(100, help="Per-passage budget; lowered where N passages would not fit."),
    device: str = typer.Option("auto"),
    data_root: Path = typer.Option(None, help="Folder with the named benchmarks (DL19 lists are timed)."),
    write: Path = typer.Option(None, help="Append the Markdown section to this file (e.g. BENCHMARKS.md)."),
) -> None:
    """Latency and peak memory per query against list size, HeadRank vs ICR, generative and pointwise."""
    import platform

    import torch

    from headrank.bench import METHODS, markdown, measure, passage_budget
    from headrank.datasets import load_benchmark
    from headrank.evaluate import git_commit
    from headrank.models import load_model

    try:
        head_set = HeadSet.load(heads)
        ns = _ints(sizes, "--sizes")
        chosen = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        bench_data = load_benchmark("dl19", data_root=data_root)
        context = load_model(model, device="cpu").max_context
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, FileNotFoundError, DataFormatError) as err:
        _fail(str(err))
    qids = list(bench_data.queries)[: queries + 1]
    rows = []
    for n in ns:
        budget = passage_budget(n, context, max_passage_tokens)
        lists = [(bench_data.queries[q], [c.text for c in bench_data.candidates[q][:n]]) for q in qids]
        for method in chosen:
            err_console.print(f"timing {method} at N={n} (budget {budget} tokens/passage)")
            try:
                rows.append(measure(method, model, [list(h) for h in head_set.heads], lists, budget, device))
            except RuntimeError as err:
                _fail(str(err))
    command = (f"headrank bench --heads {heads} --model {model} --sizes {sizes} --methods {methods} "
               f"--queries {queries} --max-passage-tokens {max_passage_tokens} --device {device}")
    note = (f"## Speed by list size: HeadRank (L* = {head_set.deepest_layer}) vs ICR, generative, pointwise\n\n"
            f"Measured in one run on {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"commit {git_commit()}, model {model}; DL19 lists, median over {queries} queries after a warm-up list; "
            "memory = peak above the loaded model, each cell in a fresh process. FLOPs: matmuls of the listwise "
            "prefill through the layers that run (none for the baselines, which are not one prefill).")
    text = markdown(rows, command, note)
    print(text)
    if write:
        with write.open("a") as f:
            f.write("\n" + text)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
