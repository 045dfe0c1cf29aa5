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
from rich.table import Table

from headrank.data import DataFormatError, read_rerank_input
from headrank.heads import HeadSet
from headrank.models import DEFAULT_MODEL, ModelUnavailableError

app = typer.Typer(
    help="Decoding-free passage reranking from a decoder LLM's attention heads.",
    no_args_is_help=True,
    add_completion=False,
)
err_console = Console(stderr=True, soft_wrap=True)  # no hard wraps inside error messages

DEMO_QUERY = "How do vaccines train the immune system?"
DEMO_PASSAGES = [
    "The Great Wall of China stretches for thousands of kilometres across northern China.",
    "Vaccines expose the immune system to a harmless piece or weakened form of a pathogen, so that it "
    "learns to produce antibodies and memory cells that recognise the real pathogen later.",
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough.",
    "Memory B and T cells formed after vaccination let the body respond faster and more strongly when it "
    "meets the actual virus.",
    "The stock market fell sharply on Tuesday after new inflation figures were released.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "mRNA vaccines instruct cells to make a viral protein, which triggers an immune response without "
    "causing disease.",
    "The Amazon rainforest produces a large share of the world's oxygen and hosts millions of species.",
]


class Method(str, Enum):
    icr = "icr"
    heads = "heads"


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
    if Path(value).is_file() or value.endswith(".json"):
        return HeadSet.load(value)
    try:
        pairs = [tuple(int(x) for x in item.split(":")) for item in value.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--heads {value!r}: expected a JSON file or 'layer:head,layer:head,...'") from None
    return HeadSet(heads=tuple(pairs))


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _load_ranker(model, method, heads, max_passage_tokens, device, dtype, calibrate, max_length):
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
    )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _print_results(results, docids, qid, output: Output, tag: str, console: Console, title: str) -> None:
    if output is Output.json:
        rows = [{**r.to_dict(), "docid": docids[r.corpus_id], "score": _finite(r.score)} for r in results]
        print(json.dumps({"qid": qid, "results": rows}, ensure_ascii=False, indent=2))
    elif output is Output.trec:
        for r in results:
            score = r.score if math.isfinite(r.score) else -1e9
            print(f"{qid or 'q'} Q0 {docids[r.corpus_id]} {r.rank} {score:.6f} {tag}")
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


@app.command()
def rerank(
    input: str = typer.Argument(..., help="Candidates: RankGPT/rank_llm JSON, JSONL, TSV; '-' reads stdin."),
    query: str = typer.Option(None, "--query", "-q", help="The query (default: the one in the input file)."),
    input_format: InputFormat = typer.Option(InputFormat.auto, "--format", help="Input format."),
    entry: int = typer.Option(0, help="Which query of a multi-query RankGPT file (0-based)."),
    depth: int = typer.Option(None, help="Rerank only the first N candidates (first-stage order)."),
    top_k: int = typer.Option(None, "--top-k", "-k", help="Print only the best K."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, json or a TREC run."),
    model: str = typer.Option(DEFAULT_MODEL, help="Named model, hub id, local model directory or .gguf file."),
    method: Method = typer.Option(None, help="icr (all heads, calibrated) or heads (a head set); "
                                             "default: heads if --heads is given, else icr."),
    heads: str = typer.Option(None, help="Head set: JSON file or 'layer:head,...'."),
    max_passage_tokens: int = typer.Option(None, help="Per-passage token budget (default 100)."),
    max_length: int = typer.Option(None, help="Max prompt tokens before windowing (default: model context)."),
    calibrate: bool = typer.Option(True, help="Subtract the N/A-query scores (heads method)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    tag: str = typer.Option("headrank", help="Run tag for TREC output."),
) -> None:
    """Rerank one query's candidate passages and print the ranking."""
    logging.basicConfig(level=logging.WARNING)
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
    try:
        ranker = _load_ranker(model, method, heads, max_passage_tokens, device, dtype, calibrate, max_length)
        started = time.perf_counter()
        results = ranker.rank(q, [c.text for c in candidates], top_k=top_k)
        elapsed = time.perf_counter() - started
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _fail(str(err))
    out_console = Console()
    title = f"{q}  ({len(candidates)} passages, {ranker.method}, {elapsed:.2f} s)"
    _print_results(results, [c.docid for c in candidates], data.qid, output, tag, out_console, title)
    if results and results[0].windowed:
        err_console.print("note: the list did not fit the context and was ranked with sliding windows")


@app.command()
def demo(
    model: str = typer.Option(DEFAULT_MODEL, help="Model to run the demo with."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Rerank a built-in example with the default model (ICR preset) and print the ranking."""
    try:
        ranker = _load_ranker(model, Method.icr, None, None, device, "auto", True, None)
    except ModelUnavailableError as err:
        _fail(str(err), code=3)
    started = time.perf_counter()
    results = ranker.rank(DEMO_QUERY, DEMO_PASSAGES)
    elapsed = time.perf_counter() - started
    console = Console()
    title = f"{DEMO_QUERY}  ({model}, {ranker.method}, {elapsed:.2f} s)"
    _print_results(results, [str(i + 1) for i in range(len(DEMO_PASSAGES))], None, Output.table, "demo",
                   console, title)


def _bm25_scores(query: str, passages) -> list[float]:
    """First-stage passthrough: the input order is the ranking."""
    return [float(len(passages) - i) for i in range(len(passages))]


def _ranker_scores(ranker):
    def score(query: str, passages) -> list[float]:
        out = [0.0] * len(passages)
        for r in ranker.rank(query, list(passages), return_documents=False):
            out[r.corpus_id] = r.score
        return out

    return score


@app.command()
def evaluate(
    benchmarks: str = typer.Option("dl19,dl20", "--benchmarks", "-b",
                                   help="Comma-separated: dl19, dl20, dl21, noveleval, nfcorpus, a path, "
                                        "or ir_datasets:<id>."),
    method: str = typer.Option("icr", help="bm25 (first-stage passthrough), icr, or heads."),
    depth: int = typer.Option(20, "--depth", "-K", help="Rerank the first K candidates."),
    order: str = typer.Option("first-stage", help="Input order: first-stage, or reversed (first-stage top "
                                                  "next to the query)."),
    model: str = typer.Option(DEFAULT_MODEL, help="Named model, hub id, local directory or .gguf file."),
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
) -> None:
    """Rerank benchmark candidates and report nDCG@10, MRR@10, Recall@K and middle-zone diagnostics.

    Resumable: rerun the same command after an interruption and finished queries are kept.
    """
    import dataclasses

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from headrank.datasets import load_benchmark
    from headrank.evaluate import EvalSettings, markdown_table, rerank_benchmark, summarize

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s logs every index build at DEBUG
    if method not in ("bm25", "icr", "heads"):
        _fail(f"unknown method {method!r}; choose bm25, icr or heads")
    if method == "bm25" and order != "first-stage":
        _fail("--method bm25 is the first-stage order itself; --order reversed does not apply")
    try:
        settings = EvalSettings(
            method=method, depth=depth, order=order,
            model=None if method == "bm25" else model,
            heads=heads if method == "heads" else None,
            max_passage_tokens=None if method == "bm25" else max_passage_tokens,
            device=device, dtype=dtype, calibrate=calibrate,
        )
        names = [b.strip() for b in benchmarks.split(",") if b.strip()]
        loaded = [load_benchmark(n, data_root=data_root, cache_dir=out / "cache", split=split) for n in names]
    except (ValueError, FileNotFoundError, DataFormatError) as err:
        _fail(str(err))
    extra: dict = {"commit": None}
    if method == "bm25":
        score_fn = _bm25_scores
    else:
        from headrank.models import weights_fingerprint

        try:
            ranker = _load_ranker(model, Method(method), heads, max_passage_tokens, device, dtype, calibrate, None)
        except ModelUnavailableError as err:
            _fail(str(err), code=3)
        except (ValueError, TypeError, FileNotFoundError) as err:
            _fail(str(err))
        score_fn = _ranker_scores(ranker)
        extra.update(model_path=ranker.model.path, model_fingerprint=weights_fingerprint(ranker.model.model),
                     head_set=ranker.heads.to_dict() if method == "heads" else "all heads (ICR preset)",
                     prompt=dataclasses.asdict(ranker.prompt_settings))
    from headrank.evaluate import git_commit

    extra["commit"] = git_commit()
    started = time.perf_counter()
    results = []
    total = sum(len(b.queries) for b in loaded)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(f"{method} K={depth}", total=total)
        for bench in loaded:
            progress.update(task, description=f"{method} K={depth} {bench.name}")
            run_dir = out / f"{bench.name}-{settings.slug}"
            try:
                records = rerank_benchmark(bench, score_fn, settings, run_dir, on_query=lambda _: progress.advance(task))
            except ValueError as err:
                _fail(str(err))
            results.append(summarize(bench, records, settings, run_dir, extra=extra, plot=plot))
    wall = time.perf_counter() - started
    table = markdown_table(results)
    summary = {
        "settings": dataclasses.asdict(settings), "benchmarks": names, "wall_time_s": wall, **extra,
        "average_ndcg@10": sum(r.metrics["nDCG@10"] for r in results) / len(results),
        "results": [dataclasses.asdict(r) | {"per_query": None} for r in results],
    }
    stem = out / f"summary-{settings.slug}-{'_'.join(b.name for b in loaded)}"
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str))
    stem.with_suffix(".md").write_text(table)
    print(table)
    err_console.print(f"wall time {wall:.1f} s; summary: {stem.with_suffix('.json')}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
