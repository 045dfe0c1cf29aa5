"""``headrank evaluate``, ``compare`` and ``bench``: quality on benchmarks, paired tests, speed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_dir,
    check_quantize_option,
    configure_threads,
    err_console,
    fail,
    ints,
    progress_columns,
    setup_logging,
    user_errors,
)
from headrank.defaults import DEFAULT_MODEL, DEFAULT_PRESET
from headrank.methods import ATTENTION, Method, names, resolve

BenchmarksOption = Annotated[str, typer.Option("--benchmarks", "-b", help="Comma-separated: dl19, dl20, dl21, "
                                               "noveleval, nfcorpus, a path, or ir_datasets:<id>.")]

MethodOption = Annotated[str, typer.Option(help="bm25 (first-stage passthrough), icr, heads (a head set, or the "
                                                "trained heads of the preset or checkpoint given as --model), "
                                                "generative (RankGPT-style) or pointwise.")]

OrderOption = Annotated[str, typer.Option(help="Input order: first-stage, reversed (first-stage top next to the "
                                               "query), or both (mean of the two orders' scores: less position bias, "
                                               "two passes; reuses finished runs).")]

ModelOption = Annotated[str, typer.Option(help="Preset, checkpoint, named model, hub id, local directory or .gguf "
                                               "file; with a preset, icr, --heads and the baselines run on its base "
                                               "model. Default: the default preset.")]

FuseFirstStageOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="Also report the method fused with the "
                                                     "first-stage ranking (weighted RRF, this weight on the first "
                                                     "stage; 0.5 = plain RRF). Reuses the method's run: no extra "
                                                     "model work (with --window: fused in each window, only the "
                                                     "fused run).")]

SafetyValveOption = Annotated[bool, typer.Option(help="Also apply the safety valve of the preset or checkpoint given "
                                                      "as --model to the fused report (no extra model work; with "
                                                      "--window: in each window).")]

SharedCaptureOption = Annotated[bool, typer.Option(help="icr / heads: read scores from one cached all-head capture "
                                                        "per list, shared by every method on the same weights (a "
                                                        "checkpoint's merged weights have their own; latency: that "
                                                        "full-depth pass).")]

WindowOption = Annotated[int, typer.Option(min=2, help="icr / heads: rank the K candidates in sliding windows of this "
                                                       "many passages (RankGPT-style, bottom up, half overlap).")]


def evaluate(
    benchmarks: BenchmarksOption = "dl19,dl20",
    method: MethodOption = "heads",
    depth: Annotated[int, typer.Option("--depth", "-K", help="Rerank the first K candidates.")] = 20,
    order: OrderOption = "first-stage",
    model: ModelOption = DEFAULT_PRESET,
    heads: Annotated[str, typer.Option(help="Head set for --method heads: JSON file or 'layer:head,...'.")] = None,
    max_passage_tokens: Annotated[int, typer.Option(help="Per-passage token budget.")] = 100,
    calibrate: Annotated[bool, typer.Option(help="Subtract the N/A-query scores (heads method).")] = True,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    data_root: options.DataRoot = None,
    out: Annotated[Path, typer.Option(help="Output folder: per-run TREC files, metrics, plots.")] = Path("runs"),
    split: Annotated[str, typer.Option(help="BEIR split for BEIR benchmarks.")] = "test",
    plot: Annotated[bool, typer.Option(help="Draw the diagnostics PNG of each run (needs the 'plots' extra; "
                                            "skipped with a warning without it).")] = True,
    fuse_first_stage: FuseFirstStageOption = None,
    safety_valve: SafetyValveOption = False,
    shared_capture: SharedCaptureOption = False,
    window: WindowOption = None,
    quantize: options.Quantize = None,
    threads: options.Threads = None,
) -> None:
    """Rerank benchmark candidates and report nDCG@10, MRR@10, Recall@K and middle-zone diagnostics.

    Resumable: rerun the same command after an interruption and finished queries are kept.
    """
    from headrank.data.benchmarks import load_benchmark
    from headrank.eval.evaluate import EvalSettings, place_rule
    from headrank.eval.scorers import build_scorer

    setup_logging()
    check_output_dir(out, "--out")
    with user_errors():
        method = resolve(method).value  # aliases (headrank, firststage) name the same runs
    _check_evaluate_options(method, order, fuse_first_stage, shared_capture, window)
    quantize = _evaluate_quantize(quantize, method, model, device, dtype, shared_capture)
    configure_threads(threads)
    valve = preset_valve(model) if safety_valve else None  # before anything loads
    with user_errors():  # ImportError: ir_datasets
        settings = EvalSettings(method=method, depth=depth, order=order, model=None if method == "bm25" else model,
                                heads=heads if method == "heads" else None,
                                max_passage_tokens=None if method == "bm25" else max_passage_tokens,
                                device=device, dtype=dtype, calibrate=calibrate,
                                capture="shared" if shared_capture else "own", window=window,
                                quantize=None if method == "bm25" else quantize)
        loaded = [load_benchmark(n, data_root=data_root, cache_dir=out / "cache", split=split)
                  for n in _benchmark_names(benchmarks, split)]
    with user_errors():
        placed = place_rule(settings, fuse_first_stage, valve)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the CLI prints its own output; no per-load weight bars
        scorer = build_scorer(method, model, heads, max_passage_tokens, device, dtype, calibrate, window,
                              shared_capture, out / "cache" / "shared", *placed.in_ranker, quantize=quantize)
    fuse_after, valve_after = placed.afterwards
    evaluation = _evaluate_with_progress(loaded, scorer, placed.settings, out, fuse_after, plot, valve_after)
    print(evaluation.table)
    err_console.print(f"wall time {evaluation.summary['wall_time_s']:.1f} s; summary: {evaluation.summary_file}")


def _evaluate_quantize(quantize, method: str, model: str, device: str, dtype: str, shared_capture: bool):
    """--quantize checked before anything loads; unset, a preset's CPU setting (named in the run's key)."""
    check_quantize_option(quantize, method, device, dtype)
    quantize = getattr(quantize, "value", quantize)
    if quantize == "int8" and shared_capture:
        fail("--shared-capture reads float32 all-head captures; --quantize int8 needs the model's own capture")
    if quantize is None and method in ("heads", "icr") and not shared_capture:
        from headrank.engine.ranker import cpu_quantize

        with user_errors():
            return cpu_quantize(model, device)
    return quantize


def preset_valve(model: str):
    """The safety valve a preset or checkpoint was shipped with; a clear error when it has none."""
    from headrank.engine.presets import load_preset

    try:
        valve = load_preset(model).inference.safety_valve
    except ValueError as err:
        fail(f"--safety-valve needs a preset or checkpoint as --model: {err}")
    if valve is None:
        fail(f"{model} has no safety valve in its inference settings")
    return valve


def _evaluate_with_progress(loaded, scorer, settings, out: Path, fuse_first_stage, plot: bool, valve=None):
    """``run_evaluation`` under a progress bar (queries of every benchmark, with an ETA); Ctrl-C keeps what is done."""
    from headrank.eval.evaluate import run_evaluation

    label = f"{settings.method} K={settings.depth}"
    total = sum(len(b.queries) for b in loaded) * (2 if settings.order == "both" else 1)
    with LineProgress(*progress_columns(elapsed=True), transient=False) as progress:
        task = progress.add_task(label, total=total, resumed=0)

        def on_query(bench_name: str, qid: str, resumed: bool) -> None:
            fields = {"resumed": progress.fields(task)["resumed"] + 1} if resumed else {}
            progress.update(task, advance=1, description=f"{label} {bench_name}", **fields)

        try:
            return run_evaluation(loaded, scorer, settings, out, fuse_first_stage, plot, on_query, safety_valve=valve)
        except ValueError as err:
            fail(str(err))
        except KeyboardInterrupt:
            progress.stop()
            fail(f"interrupted; finished queries are saved under {out}: rerun the same command to resume", code=130)


def _benchmark_names(benchmarks: str, split: str) -> list[str]:
    """The benchmarks named by --benchmarks; the split names a qrels file and run folders, never a path."""
    from headrank.data.formats import check_split

    check_split(split)
    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    if not names:
        raise ValueError(f"--benchmarks {benchmarks!r} names no benchmark")
    return names


def _check_evaluate_options(method: str, order: str, fuse_first_stage, shared_capture: bool, window) -> None:
    """Combinations of evaluate's options that cannot run, refused before anything loads (``method`` is
    already canonical: ``methods.resolve``)."""
    if method == "bm25" and order != "first-stage":
        fail(f"--method bm25 is the first-stage order itself; --order {order} does not apply")
    if method == "bm25" and fuse_first_stage is not None:
        fail("--fuse-first-stage fuses a reranker with the first stage; --method bm25 is the first stage")
    if shared_capture and method not in names(ATTENTION):
        fail("--shared-capture works for --method icr and heads")
    if window is not None and (method not in names(ATTENTION) or shared_capture):
        fail("--window works for --method icr and heads with their own capture (not --shared-capture)")


def compare(
    runs_a: Annotated[str, typer.Argument(help="Run directories (or metrics.json) of reranker A, comma-separated.")],
    runs_b: Annotated[str, typer.Argument(help="Those of reranker B on the same benchmarks, in the same order.")],
    measure: Annotated[str, typer.Option(help="Per-query measure as named in metrics.json.")] = "nDCG@10",
    flips: Annotated[int, typer.Option(min=100, help="Random sign flips of the paired randomization test.")] = 20000,
    seed: int = 0,
) -> None:
    """A against B per query: mean difference, wins / losses / ties, paired sign-flip test p-value."""
    from rich import box

    from headrank.eval.compare import compare_runs, load_run_metrics

    with user_errors():
        a = [load_run_metrics(Path(p)) for p in runs_a.split(",") if p]
        b = [load_run_metrics(Path(p)) for p in runs_b.split(",") if p]
        rows = compare_runs(a, b, measure=measure, flips=flips, seed=seed)
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


def bench(
    heads: Annotated[Path, typer.Option(help="Head set JSON for the HeadRank rows (its L* sets the truncation).")],
    model: options.BaseModel = DEFAULT_MODEL,
    sizes: Annotated[str, typer.Option(help="List sizes N.")] = "10,20,50,100",
    methods: Annotated[str, typer.Option(help="Methods to time.")] = "heads,icr,generative,pointwise",
    queries: Annotated[int, typer.Option(help="DL19 queries per measurement (after one warm-up list).")] = 2,
    max_passage_tokens: Annotated[int, typer.Option(help="Per-passage budget; lowered where N passages would not "
                                                         "fit.")] = 100,
    device: options.Device = "auto",
    data_root: options.DataRoot = None,
    write: Annotated[Path, typer.Option(help="Append the Markdown section to this file (e.g. BENCHMARKS.md).")] = None,
) -> None:
    """Latency and peak memory per query against list size, HeadRank vs ICR, generative and pointwise."""
    from headrank.data.benchmarks import load_benchmark
    from headrank.engine.heads import HeadSet
    from headrank.engine.models import load_model
    from headrank.eval.bench import METHODS, bench_section, measure, passage_budget

    with user_errors():
        chosen = [resolve(m, tuple(map(Method, METHODS))).value for m in methods.split(",") if m.strip()]
        head_set = HeadSet.load(heads)
        ns = ints(sizes, "--sizes")
        bench_data = load_benchmark("dl19", data_root=data_root)
        context = load_model(model, device="cpu").max_context
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
                fail(str(err))
    command = (f"headrank bench --heads {heads} --model {model} --sizes {sizes} --methods {methods} "
               f"--queries {queries} --max-passage-tokens {max_passage_tokens} --device {device}")
    text = bench_section(rows, command, head_set.deepest_layer, model, queries)
    print(text)
    if write:
        with write.open("a") as f:
            f.write("\n" + text)
