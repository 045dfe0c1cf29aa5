"""``headrank rerank`` and ``headrank explain``: one query's candidates from a file, ranked or explained."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from headrank.cli import options
from headrank.cli.common import (
    check_output_file,
    check_quantize_option,
    configure_threads,
    err_console,
    fail,
    load_ranker,
    ranker_label,
    setup_logging,
    user_errors,
)
from headrank.cli.output import ExplainOutput, Output, explanations_json, print_explanations, print_results
from headrank.defaults import DEFAULT_PRESET
from headrank.methods import BASELINES, names


def read_candidates(input: str, input_format: options.InputFormat, entry: int, query: str | None,
                    depth: int | None):
    """The input file's candidates (first ``depth``) and the query; exits with a clear error otherwise."""
    from headrank.data.formats import read_rerank_input

    with user_errors():
        data = read_rerank_input(input, input_format.value, entry)
    q = query if query is not None else data.query
    if q is None:
        fail("no query: pass --query or use an input file that holds one")
    candidates = data.candidates[:depth] if depth else data.candidates
    if not candidates:
        fail(f"{input}: no candidate passages")
    return data, q, candidates


def _check_rerank_options(method, window: int | None, both_orders: bool | None, output: Output, tag: str,
                          qid: str, docids: list[str]) -> None:
    """Combinations that cannot run, and ids that cannot go into a TREC run, refused before the model loads."""
    from headrank.data.formats import check_trec_token

    baseline = method is not None and method.value in names(BASELINES)
    if window is not None and window == 1:
        fail("--window must be 0 (no window) or at least 2 passages")
    if window and baseline:
        fail("--window works for icr, heads and checkpoints (the generative baseline windows by itself)")
    if both_orders and baseline:
        fail("--both-orders works for icr, heads and checkpoints")
    if output is Output.trec:
        with user_errors():
            for value, what in ((tag, "--tag"), (qid, "qid"), *((d, "docid") for d in docids)):
                check_trec_token(value, what)


MaxLengthOption = Annotated[int, typer.Option(min=1, help="Max prompt tokens before windowing (default: model "
                                                          "context).")]

WindowOption = Annotated[int, typer.Option(min=0, help="Rank longer lists in sliding windows of this many passages "
                                                       "(small models read 50-passage prompts poorly; head sets are "
                                                       "chosen on 20); fusion and valve act per window. 0: no window. "
                                                       "Default: the preset's setting.")]

BothOrdersOption = Annotated[bool, typer.Option("--both-orders/--one-order",
                                                help="Read the list as given and reversed and average each passage's "
                                                     "two scores: less position bias, twice the work (icr, heads). "
                                                     "Default: the preset's setting.")]


def rerank(
    input: options.Input,
    query: options.Query = None,
    input_format: options.Format = options.InputFormat.auto,
    entry: options.Entry = 0,
    depth: Annotated[int, typer.Option(min=1, help="Rerank only the first N candidates (first-stage order).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Print only the best K.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table, json or a TREC run.")] = Output.table,
    model: options.Model = DEFAULT_PRESET,
    method: options.Method = None,
    heads: options.Heads = None,
    max_passage_tokens: Annotated[int, typer.Option(min=1, help="Per-passage token budget (default 100).")] = None,
    max_length: MaxLengthOption = None,
    window: WindowOption = None,
    both_orders: BothOrdersOption = None,
    calibrate: Annotated[bool, typer.Option(help="Subtract the N/A-query scores (heads method).")] = True,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    tag: Annotated[str, typer.Option(help="Run tag for TREC output.")] = "headrank",
    fuse_first_stage: options.Fuse = None,
    safety_valve: options.SafetyValve = None,
    quantize: options.Quantize = None,
    threads: options.Threads = None,
) -> None:
    """Rerank one query's candidate passages with the default HeadRank preset (or --model) and print the ranking."""
    setup_logging()
    data, q, candidates = read_candidates(input, input_format, entry, query, depth)
    docids = [c.docid for c in candidates]
    _check_rerank_options(method, window, both_orders, output, tag, data.qid or "q", docids)
    check_quantize_option(quantize, getattr(method, "value", None), device, dtype)
    configure_threads(threads)
    with user_errors():
        if method is not None and method.value in names(BASELINES):
            from headrank.rerankers import load_reranker

            ranker = load_reranker(method.value, model, device=device, dtype=dtype,
                                   max_passage_tokens=max_passage_tokens or 100, fuse_first_stage=fuse_first_stage)
        else:
            ranker = load_ranker(model, method, heads, max_passage_tokens, device, dtype, calibrate, max_length,
                                 window, both_orders, fuse_first_stage, safety_valve, quantize)
        if safety_valve and getattr(ranker, "safety_valve", None) is None:
            fail(f"--safety-valve: {model} has no safety valve in its inference settings (only presets and "
                 "checkpoints chosen with one do; see 'headrank presets')")
        started = time.perf_counter()
        results = ranker.rank(q, [c.text for c in candidates], top_k=top_k)
        elapsed = time.perf_counter() - started
    title = f"{q}  ({len(candidates)} passages, {ranker_label(ranker)}, {elapsed:.2f} s)"
    with user_errors():  # an id that cannot go into a TREC run
        print_results(results, docids, data.qid, output, tag, Console(), title)
    if getattr(results, "valve_fired", False):
        err_console.print("note: the safety valve fired: the heads read this list poorly, so the ranking leans on "
                          "the input order (" + results.settings.safety_valve.describe() + ")")
    if results and results[0].windowed:
        err_console.print("note: the list was ranked in sliding windows (it exceeded the context or --window); "
                          "scores are rank-derived")
    _note_input_order(data.source_format, getattr(results, "settings", None))


def _note_input_order(source_format: str, settings) -> None:
    """A TSV or JSONL list may come in any order, but fusion and the valve read it as the first stage's ranking:
    say so once, with the switch, when either was on (a RankGPT file is a first-stage ranking by its format)."""
    if source_format == "rankgpt" or settings is None:
        return
    used = [name for name, on in (("fusion", bool(settings.fuse_first_stage)),
                                  ("the safety valve", settings.safety_valve is not None)) if on]
    if used:
        switches = [flag for flag, on in (("--fuse-first-stage 0", bool(settings.fuse_first_stage)),
                                          ("--no-safety-valve", settings.safety_valve is not None)) if on]
        err_console.print(f"note: {' and '.join(used)} read the input order as your first stage's ranking (best "
                          f"first); if the passages are in no particular order, pass {' '.join(switches)}")


def explain(
    input: options.Input,
    query: options.Query = None,
    input_format: options.Format = options.InputFormat.auto,
    entry: options.Entry = 0,
    depth: Annotated[int, typer.Option(min=1, help="Explain the first N candidates (first-stage order).")] = 20,
    model: options.Model = DEFAULT_PRESET,
    method: options.AttentionMethod = None,
    heads: options.Heads = None,
    html: Annotated[Path, typer.Option(help="Write a self-contained HTML page (no network fetches) here.")] = None,
    png: Annotated[Path, typer.Option(help="Write a figure of the passages' text, each token shaded by its "
                                           "contribution, here ('.png' is added without an extension).")] = None,
    output: Annotated[ExplainOutput, typer.Option("--output", "-o", help="table or json.")] = ExplainOutput.table,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    fuse_first_stage: options.Fuse = None,
) -> None:
    """Show which tokens earned each passage its score (the selected heads' mass, from the same single pass)."""
    setup_logging()
    check_explain_outputs(html, png)  # before the model runs
    data, q, candidates = read_candidates(input, input_format, entry, query, depth)
    with user_errors():
        ranker = load_ranker(model, method, heads, device=device, dtype=dtype)
        started = time.perf_counter()
        explanations = ranker.explain(q, [c.text for c in candidates], fuse_first_stage=fuse_first_stage)
        elapsed = time.perf_counter() - started
    from headrank.engine.explain import plot_explanations, render_html

    label = f"{ranker_label(ranker, fuse_first_stage)}, {elapsed:.2f} s"
    if html:
        html.write_text(render_html(q, explanations, title="HeadRank explanation", meta=label), encoding="utf-8")
        err_console.print(f"wrote {html}")
    if png:
        err_console.print(f"wrote {plot_explanations(q, explanations, png)}")
    if output is ExplainOutput.json:
        print(explanations_json(explanations, candidates, data.qid, q, label))
    else:
        print_explanations(q, explanations, candidates, label)


IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def check_explain_outputs(html: Path | None, png: Path | None) -> None:
    """--html and --png writable files (the figure with an image suffix, or none: .png is added)."""
    if html is not None:
        if html.exists() and html.is_dir():
            fail(f"--html {html} is a directory; give a file name")
        if not html.parent.is_dir():
            fail(f"--html {html}: the folder {html.parent} does not exist")
        check_output_file(html, "--html")
    if png is not None:
        from headrank.plots import PLOTS_EXTRA, plots_available

        if not plots_available():
            fail(f"--png needs matplotlib: {PLOTS_EXTRA}")
        if png.is_dir():
            fail(f"--png {png} is a directory; give a file name")
        if png.suffix and png.suffix.lower() not in IMAGE_SUFFIXES:
            fail(f"--png {png}: {png.suffix!r} is not an image format; use {', '.join(IMAGE_SUFFIXES)} or no suffix")
        if not png.parent.is_dir():
            fail(f"--png {png}: the folder {png.parent} does not exist")
        check_output_file(png if png.suffix else png.with_suffix(".png"), "--png")
