"""``headrank calibrate``: fit a preset's relevance probabilities on validation lists (``headrank.learn.calibrate``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_file,
    err_console,
    fail,
    load_ranker,
    progress_columns,
    setup_logging,
    user_errors,
)

SetsOption = Annotated[str, typer.Option(help="Validation sets, comma-separated: dl21-val, nfcorpus-dev, cranfield, "
                                              "cisi, npl (never a reporting set).")]

WriteOption = Annotated[bool, typer.Option("--write/--no-write", help="Store the calibration in the checkpoint's "
                                                                      "config (a preset's card is re-rendered).")]


def calibrate(
    model: Annotated[str, typer.Argument(help="Preset name or checkpoint directory to calibrate.")],
    sets: SetsOption = "dl21-val,nfcorpus-dev,cranfield,cisi,npl",
    queries: Annotated[int, typer.Option(min=2, help="The first N judged queries of each set.")] = 30,
    depth: options.Depth = 20,
    report: Annotated[Path, typer.Option(help="JSON report to write (fit, reliability in sample and held out).")] = None,
    write: WriteOption = False,
    cache: Annotated[Path, typer.Option(help="Where scored lists are cached (resumable).")] = Path("runs") / "cache",
    data_root: options.DataRoot = None,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
) -> None:
    """Fit P(relevant) = sigmoid(slope * score * passages + intercept) on validation lists, so that served
    relevance scores are comparable across requests and usable as a threshold."""
    from headrank.engine.checkpoint import is_checkpoint
    from headrank.engine.presets import is_preset_name, load_preset
    from headrank.learn.calibrate import (
        VALIDATION_SETS,
        checkpoint_digest,
        fit_calibration,
        score_lists,
        validation_lists,
        write_calibration,
    )

    setup_logging()
    names = [s.strip() for s in sets.split(",") if s.strip()]
    unknown = [s for s in names if s not in VALIDATION_SETS]
    if not names or unknown:
        fail(f"--sets takes validation sets only ({', '.join(VALIDATION_SETS)}); got {', '.join(unknown) or 'none'}")
    if not (is_preset_name(model) or is_checkpoint(model)):
        fail(f"{model!r} is neither a preset nor a checkpoint directory (only those carry a calibration)")
    check_output_file(report, "--report")
    with user_errors(FileNotFoundError):
        path = load_preset(model).path
        ranker = load_ranker(model, device=device, dtype=dtype)
        lists = [item for name in names for item in validation_lists(name, ranker.heads, queries, depth, data_root,
                                                                      cache)]
    digest = checkpoint_digest(path, ranker.quantize)
    with LineProgress(*progress_columns("scoring validation lists", elapsed=True)) as progress, user_errors():
        task = progress.add_task("lists", total=len(lists))
        scores = score_lists(ranker, lists, digest, cache / f"relevance-{digest}.jsonl",
                             on_list=lambda done, total: progress.update(task, completed=done, total=total))
    with user_errors():
        calibration, details = fit_calibration(lists, scores)
    command = f"headrank calibrate {model} --sets {','.join(names)} --queries {queries} --depth {depth}"
    calibration = dataclasses.replace(calibration, command=command)
    out = {"model": model, "checkpoint_digest": digest, "quantize": ranker.quantize, "depth": depth,
           "queries_per_set": queries, "command": command, "calibration": calibration.to_dict(), **details}
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(out, indent=2) + "\n")
    if write:
        write_calibration(path, calibration, details["held_out_two_folds"])
    held = details["held_out_two_folds"]
    err_console.print(calibration.describe())
    typer.echo(f"held out (two folds): Brier {held['brier']:.4f} (base rate {held['brier_base_rate']:.4f}), "
               f"ECE {held['ece']:.4f}, {held['passages']} passages, {held['relevant_rate']:.1%} relevant"
               + (f"; written to {path}" if write else ""))
