"""``headrank adapt``: re-choose a preset's heads, weights and fusion for a domain, with or without judgments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_dir,
    check_output_file,
    err_console,
    fail,
    ints,
    setup_logging,
    user_errors,
)

ZERO_LABEL_NOTE = ("note: on Cranfield, CISI, NPL and NFCorpus written queries ranked candidate head sets unlike the "
                   "collections' real queries (docs/research/adaptation.md); where the guard let a change "
                   "through it did not help on real judgments. Keep the default unless the adapted preset wins on "
                   "judged queries of your own.")


HardOnly = Annotated[bool, typer.Option("--hard-only/--all-written",
                                        help="With --corpus: keep only written queries whose passage BM25 finds but "
                                             "not first (the rest cannot tell heads apart).")]
PromptVersion = Annotated[str, typer.Option(help="With --corpus: the shipped query-writing prompt "
                                                 "(synthetic-query-v1 copies more of the passage's words).")]
RequireP = Annotated[float, typer.Option(min=0.0, max=1.0,
                                         help="Adopt the best candidate only when it beats the preset on the "
                                              "validation split with paired p below this (1 = always adopt the "
                                              "best). Default: 0.05 with --corpus, 1 with --data.")]


OutOption = Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory to write (load it with --model "
                                                             "OUT).")]

BenchmarkOption = Annotated[str, typer.Option("--data", "-d", help="Your judged queries: a BEIR folder (corpus, "
                                              "queries, qrels/<split>.tsv), a folder with a RankGPT candidate .json and "
                                              "qrels.txt, nfcorpus (with --split train or dev) or dl21. Never a "
                                              "reporting set.")]

CorpusOption = Annotated[Path, typer.Option(help="Instead of --data, no judged queries: your corpus (BEIR folder, "
                                                 "corpus.jsonl or docid<TAB>text TSV). The preset's base LLM writes a "
                                                 "query for sampled passages; each source passage is the "
                                                 "positive.")]

SyntheticQueriesOption = Annotated[int, typer.Option(min=8, help="With --corpus: written-query lists to build. With "
                                                     "--hard-only (default) up to 4x as many passages are written "
                                                     "for, about 3 s each on 2 CPU threads.")]

KeepFusionOption = Annotated[bool, typer.Option("--keep-fusion/--choose-fusion",
                                                help="Keep the preset's fusion weight (re-choose heads and weights "
                                                     "only) or also choose it. Default: keep with --corpus (written "
                                                     "queries favour whatever matches their own words), choose with "
                                                     "--data.")]

PresetOption = Annotated[str, typer.Option("--from", help="Preset or checkpoint to adapt (default: the default "
                                                          "preset).")]

ValFractionOption = Annotated[float, typer.Option(help="Share of your queries held out to choose among "
                                                       "candidates.")]

MaxQueriesOption = Annotated[int, typer.Option(min=4, help="Use at most this many judged queries (a seeded "
                                                           "sample).")]

OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a checkpoint already in --out (its head "
                                                                   "set, adapter, settings and card).")]


def adapt(
    out: OutOption,
    benchmark: BenchmarkOption = None,
    corpus: CorpusOption = None,
    synthetic_queries: SyntheticQueriesOption = 100,
    hard_only: HardOnly = True,
    prompt_version: PromptVersion = "synthetic-query-v2",
    require_p: RequireP = None,
    keep_fusion: KeepFusionOption = None,
    preset: PresetOption = None,
    split: Annotated[str, typer.Option(help="BEIR split to read.")] = "train",
    depth: Annotated[int, typer.Option("--depth", "-K", min=2, help="First-stage candidates per list.")] = 20,
    val_fraction: ValFractionOption = 0.3,
    seed: options.Seed = 0,
    ks: Annotated[str, typer.Option(help="Plain head-set sizes to try.")] = "4,8,16,32",
    pools: Annotated[str, typer.Option(help="Head pools to fit per-head weights over.")] = "8,16,32,64",
    max_queries: MaxQueriesOption = None,
    queries: Annotated[Path, typer.Option(help="Use only the query ids listed in this file (one per line).")] = None,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    data_root: options.DataRoot = None,
    cache: Annotated[Path, typer.Option(help="Where all-head captures are cached.")] = Path("runs") / "cache" / "adapt",
    report: Annotated[Path, typer.Option(help="Also write the report (every candidate) as JSON here.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Adapt a preset to your domain: re-select and re-weight its heads on your judged queries.

    Captures every head of the preset's model once per list (cached: a rerun resumes), tries the preset's
    heads, top-K head sets and per-head weights, at the preset's fusion weight and without, and keeps the best on
    a validation split of your queries. Prints before/after on that split; measure on queries it never saw.
    """
    from headrank.engine.presets import DEFAULT_PRESET, load_preset
    from headrank.learn.adapt import AdaptConfig, adapt_preset, judged_benchmark
    from headrank.learn.synthetic import corpus_benchmark

    setup_logging()
    preset = preset or DEFAULT_PRESET
    check_sources_and_outputs(benchmark, corpus, queries, max_queries, preset, out, report, overwrite)
    with user_errors():
        config = AdaptConfig(depth=depth, val_fraction=val_fraction, seed=seed, ks=tuple(ints(ks, "--ks")),
                             pools=tuple(ints(pools, "--pools")),
                             keep_fusion=corpus is not None if keep_fusion is None else keep_fusion,
                             require_p=adoption_bar(require_p, corpus is not None))
        if benchmark is not None:
            bench = judged_benchmark(benchmark, split, data_root, queries, max_queries, depth, seed)
        elif not corpus.exists():
            raise FileNotFoundError(f"--corpus {corpus} not found")
    with LineProgress() as progress, user_errors(FileExistsError):
        on_list = progress.stage_callback()
        if corpus is not None:
            bench = corpus_benchmark(corpus, load_preset(preset).base_model, synthetic_queries,
                                     cache / "synthetic" / corpus.name, depth, seed, device, dtype,
                                     lambda done, total: on_list("writing queries", done, total), hard_only,
                                     prompt_version)
        result = adapt_preset(preset, bench, out, config, cache_dir=cache, device=device, dtype=dtype,
                              on_list=on_list, overwrite=overwrite)
    print_adapt_report(result, bench.name, out, report)
    if corpus is not None:
        err_console.print(ZERO_LABEL_NOTE)


def check_sources_and_outputs(benchmark, corpus, queries, max_queries, preset, out: Path, report: Path | None,
                              overwrite: bool) -> None:
    """One input source; --out and --report writable and --out free (or --overwrite): before any model loads."""
    from headrank.learn.adapt import check_adapt_output

    if (benchmark is None) == (corpus is None):
        fail("give your judged queries (--data) or, without judgments, your corpus (--corpus): one of the two")
    if corpus is not None and (queries is not None or max_queries is not None):
        fail("--queries and --max-queries pick judged queries; with --corpus use --synthetic-queries")
    check_output_dir(out, "--out")
    check_output_file(report, "--report")
    with user_errors(FileExistsError):
        check_adapt_output(preset, out, overwrite)


def adoption_bar(require_p: float | None, zero_label: bool) -> float | None:
    """--require-p as AdaptConfig.require_p: 1 (or more) adopts the best; unset, 0.05 for written queries."""
    if require_p is None:
        return 0.05 if zero_label else None
    return None if require_p >= 1 else require_p


def print_adapt_report(result, bench_name: str, out: Path, report: Path | None) -> None:
    """adapt's before/after table, its warning, the JSON report and what to run next."""
    table = Table(title=f"{bench_name}: {len(result.train_queries)} training / {len(result.val_queries)} "
                        "validation queries (nDCG@10 on the validation queries, one pass)")
    for col in ("", "heads", "weights", "fusion", "val nDCG@10"):
        table.add_column(col)
    for label, c in (("before: " + result.before.label, result.before), ("after: " + result.after.label, result.after)):
        table.add_row(label, str(len(c.heads)), "yes" if c.weights else "no", "-" if c.fuse is None else f"RRF {c.fuse:g}",
                      f"{c.val_ndcg:.4f}")
    Console().print(table)
    if result.kept_preset:
        err_console.print(f"kept the preset: {result.kept_preset}")
    elif result.p_value is not None:
        err_console.print(f"paired p against the preset on the validation split: {result.p_value:.3f}")
    if result.warning:
        err_console.print(f"warning: {result.warning}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=2))
    err_console.print(f"wrote {out}; rank with: headrank rerank --model {out} ...  (the validation split chose it: "
                      "check it on queries it never saw, e.g. headrank evaluate --model "
                      f"{out} -b <your test set>)")
