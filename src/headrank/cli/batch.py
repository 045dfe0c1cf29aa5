"""``headrank rerank-batch``: rerank a whole first-stage run, in process or on Ray, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_dir,
    check_quantize_option,
    configure_threads,
    err_console,
    fail,
    progress_columns,
    setup_logging,
    user_errors,
)
from headrank.defaults import DEFAULT_PRESET
from headrank.methods import BASELINES, names

CorpusOption = Annotated[Path, typer.Option(help="Passages: BEIR folder or corpus.jsonl, or 'docid<TAB>text' TSV "
                                                 "(with --run).")]

BenchmarkOption = Annotated[str, typer.Option("--benchmark", "-b", help="Instead of --run: a named benchmark or "
                                                                        "folder.")]

DepthOption = Annotated[int, typer.Option("--depth", "-K", min=1, help="Rerank the first K documents of each "
                                                                       "query.")]

WorkersOption = Annotated[int, typer.Option(min=0, help="Ray actors, each with its own model (0: in this process, "
                                                        "no Ray).")]

GpusPerWorkerOption = Annotated[float, typer.Option(min=0.0, help="GPUs per Ray actor (e.g. 1, or 0.5 to share "
                                                                  "one).")]

BatchSizeOption = Annotated[int, typer.Option(min=1, help="Lists per forward / per Ray batch (default: 4 on a GPU, "
                                                          "1 on the CPU, where one list at a time is faster).")]

RayAddressOption = Annotated[str, typer.Option(help="Join this Ray cluster (e.g. 'auto' or ray://host:10001); "
                                                    "default: a local Ray sized to this machine.")]

OnErrorOption = Annotated[str, typer.Option(help="Malformed or dangling input rows, duplicate qids, empty queries: "
                                                 "skip (listed in problems.txt) or fail.")]

RestartOption = Annotated[bool, typer.Option("--restart", help="Discard the results already in --out and start over "
                                                               "(a rerun with other settings or inputs is refused "
                                                               "without it).")]


def rerank_batch(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: shards/, run.trec, problems.txt.")],
    run: Annotated[Path, typer.Option(help="First-stage TREC run to rerank.")] = None,
    topics: Annotated[Path, typer.Option(help="Queries: 'qid<TAB>query' per line (with --run).")] = None,
    corpus: CorpusOption = None,
    candidates: Annotated[Path, typer.Option(help="Instead of --run: RankGPT / rank_llm candidate JSON.")] = None,
    benchmark: BenchmarkOption = None,
    depth: DepthOption = 20,
    model: options.Model = DEFAULT_PRESET,
    method: options.Method = None,
    heads: options.Heads = None,
    workers: WorkersOption = 0,
    gpus_per_worker: GpusPerWorkerOption = 0.0,
    batch_size: BatchSizeOption = None,
    ray_address: RayAddressOption = None,
    on_error: OnErrorOption = "skip",
    fuse_first_stage: options.Fuse = None,
    safety_valve: options.SafetyValve = None,
    restart: RestartOption = False,
    tag: Annotated[str, typer.Option(help="Run tag of the final TREC run.")] = "headrank",
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    data_root: options.DataRoot = None,
    quantize: options.Quantize = None,
    threads: options.Threads = None,
) -> None:
    """Rerank a whole run (every query's top K) in process or on Ray; resumable; writes one TREC run.

    Rerunning the same command resumes; a rerun into the same --out with another model, method, head set,
    depth or other passages for a finished query is refused with what changed (--restart starts over)."""
    from headrank.batch import RankerSpec, read_batch_input, write_final_run
    from headrank.data.formats import check_trec_token

    setup_logging()
    if method is not None and method.value in names(BASELINES):
        fail("rerank-batch runs HeadRank or ICR; use evaluate for the generative and pointwise baselines")
    check_quantize_option(quantize, method.value if method else None, device, dtype)
    configure_threads(threads)
    check_output_dir(out, "--out")
    with user_errors():
        check_trec_token(tag, "--tag")
        batch = read_batch_input(run, topics, corpus, candidates, benchmark, depth, on_error, data_root)
    out.mkdir(parents=True, exist_ok=True)
    spec = RankerSpec(model=model, method=method.value if method else None, heads=heads, device=device, dtype=dtype,
                      fuse_first_stage=fuse_first_stage, safety_valve=safety_valve,
                      quantize=quantize.value if quantize else None, threads=threads)

    ranked = _rerank_with_progress(batch, spec, out, dict(workers=workers, batch_size=batch_size, depth=depth,
                                                          gpus_per_worker=gpus_per_worker, ray_address=ray_address,
                                                          restart=restart))
    path = write_final_run(out, batch.lists, tag)
    err_console.print(f"ranked {ranked} queries now ({len(batch.lists) - ranked} were already done); wrote {path}")


def _rerank_with_progress(batch, spec, out: Path, run_options: dict) -> int:
    """rerank-batch's run with a progress bar (resumed lists counted apart); Ctrl-C says how to resume."""
    from headrank.batch import rerank_run, write_problems

    def report_problems() -> None:  # after the resume check: this run's problems.txt replaces an older one
        path = write_problems(out, batch.problems)
        if path is not None:
            err_console.print(f"skipped {len(batch.problems)} input rows (listed in {path}); first: {batch.problems[0]}")

    with LineProgress(*progress_columns("queries", elapsed=True)) as progress, user_errors():
        task = progress.add_task("rerank", total=len(batch.lists))

        def on_done(done: int, total: int) -> None:  # the first call: the lists an earlier run finished
            fields = {} if "resumed" in progress.fields(task) else {"resumed": done}
            progress.update(task, completed=done, total=total, **fields)

        try:
            return rerank_run(batch.lists, spec, out, on_done=on_done, on_resume_checked=report_problems, **run_options)
        except KeyboardInterrupt:
            progress.stop()
            fail(f"interrupted; finished queries are saved in {out / 'shards'}: rerun the same command to resume",
                 code=130)
