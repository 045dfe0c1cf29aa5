"""``headrank pool`` and ``headrank choose``: observe every head once on the validation and training lists, then
choose a preset's heads, fusion weight and safety valve by the every-domain rule on the validation domains
(``headrank.learn.pool``, ``headrank.learn.choose``): the procedure that chose the default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_file,
    configure_threads,
    err_console,
    fail,
    setup_logging,
    user_errors,
)

ScoresOption = Annotated[Path, typer.Option(help="Recorded attention scores of the validation lists (JSONL: set, "
                                                 "qid, docids in first-stage order, and the --column scores).")]
PoolOption = Annotated[Path, typer.Option(help="An all-head pool (headrank pool): choose the heads too.")]
PlanOption = Annotated[list[str], typer.Option(help="A plan item SET:WHICH:ORDER (repeat it); WHICH is all, judged, "
                                                    "train, val (the preset's DL21 split) or a number of sampled "
                                                    "queries; ORDER first-stage, reversed or shuffled. Default: the "
                                                    "plan the default's heads were chosen from.")]
DomainsOption = Annotated[str, typer.Option(help="Validation domains, comma-separated (never a reporting set).")]
RuleOption = Annotated[str, typer.Option(help="floor-mean: the largest mean gain over the first stage among settings "
                                              "gaining --floor on every domain (else the largest worst-domain gain); "
                                              "worst: the largest worst-domain gain.")]
WritePreset = Annotated[Path, typer.Option(help="Write the choice into this preset or checkpoint folder.")]
TrainingSplit = Annotated[Path, typer.Option(help="With --pool: the preset whose head set records the DL21 "
                                                  "training split (default: the default preset).")]


def pool(
    preset: Annotated[str, typer.Option(help="Preset or checkpoint whose model (adapter merged) is observed.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Pool folder (index.jsonl and cache/); a rerun resumes.")],
    plan: PlanOption = None,
    seed: options.Seed = 0,
    device: options.Device = "auto",
    threads: options.Threads = None,
    data_root: options.DataRoot = None,
) -> None:
    """Observe every head of a model once on the plan's lists (BM25 top 20), resumably: the all-head pool that
    `headrank choose --pool` chooses heads from. Processes given disjoint --plan items may share --out."""
    from transformers.utils import logging as hf_logging

    from headrank.engine.ranker import HeadRanker
    from headrank.learn.pool import POOL_PLAN, PlanItem, observe_pool

    setup_logging()
    hf_logging.disable_progress_bar()  # the command draws its own progress
    configure_threads(threads)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; a pool is a folder")
    with user_errors():
        items = [str(PlanItem.parse(text)) for text in plan or POOL_PLAN]
        ranker = HeadRanker.from_pretrained(preset, device=device, dtype="float32")  # float32: the cache's key
    with LineProgress() as progress, user_errors():
        try:
            observed = observe_pool(ranker, out, items, seed, data_root, progress.stage_callback())
        except KeyboardInterrupt:
            progress.stop()
            fail(f"interrupted; the lists observed so far are in {out}: rerun the same command to resume", code=130)
    err_console.print(f"{observed} lists observed now; pool: {out} (headrank choose --pool {out})")


def choose(
    scores: ScoresOption = None,
    column: Annotated[str, typer.Option(help="Which scores of each --scores line to read.")] = "scores",
    pool: PoolOption = None,
    layers: Annotated[int, typer.Option(min=1, help="With --pool: the model's layers.")] = 24,
    heads: Annotated[int, typer.Option(min=1, help="With --pool: attention heads per layer.")] = 14,
    cap: Annotated[int, typer.Option(min=1, help="With --pool: only heads in the first N layers.")] = 18,
    training_split: TrainingSplit = None,
    domains: DomainsOption = "dl21-val,nfcorpus-dev,cranfield,cisi,npl",
    rule: RuleOption = "floor-mean",
    floor: Annotated[float, typer.Option(help="With --rule floor-mean: the gain every domain must reach.")] = 0.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON report to write.")] = None,
    write_preset: WritePreset = None,
    data_root: options.DataRoot = None,
) -> None:
    """Choose fusion and safety valve (and heads, with --pool) on the validation domains by the every-domain rule,
    with the leave-one-domain-out estimate of what a new domain can expect."""
    from headrank.learn import choose as rule_module

    setup_logging()
    if (scores is None) == (pool is None):
        fail("give --scores (choose fusion and valve for fixed heads) or --pool (choose the heads too), not both")
    check_output_file(out, "--out")
    with user_errors():
        names = _domains(domains, rule_module.VALIDATION_DOMAINS)
        floor_value = rule_module.rule_floor(rule, floor)
        if scores is not None:
            scored = rule_module.read_scored_lists(scores, column)
            result = rule_module.choose_setting(rule_module.validation_domains(scored, names, data_root), floor_value)
        else:
            result = _choose_heads(pool, layers, heads, cap, training_split, names, floor_value, data_root)
        if out is not None:
            rule_module.write_choice(result, out)
        if write_preset is not None:
            rule_module.write_to_preset(result, write_preset)
    _print(result)


def _domains(text: str, known: dict[str, str]) -> dict[str, str]:
    names = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in names if d not in known]
    if len(names) < 2 or unknown:
        raise ValueError(f"--domains takes two or more validation domains of {', '.join(known)}; got "
                         f"{', '.join(unknown) or text!r}")
    return {d: known[d] for d in names}


def _choose_heads(pool: Path, layers: int, heads: int, cap: int, training_split: Path | None, names: dict,
                  floor: float, data_root) -> dict:
    from headrank.engine.presets import DEFAULT_PRESET, load_preset
    from headrank.learn.choose import choose_heads
    from headrank.learn.pool import load_pool, merged, pool_domains, training_lists
    from headrank.learn.selection import discriminability

    observed = load_pool(pool, layers, heads)
    train, train_qrels = training_lists(observed, training_split or load_preset(DEFAULT_PRESET).path, data_root)
    d_train = {dom: discriminability(obs, train_qrels[dom]) for dom, obs in train.items()}
    train_all, all_qrels = merged(train, train_qrels)
    return choose_heads(pool_domains(observed, names, data_root=data_root), train_all, all_qrels, d_train, cap, floor)


def _print(result: dict) -> None:
    setting = result["setting"]
    valve = setting["valve"]
    what = f"fusion {setting['fuse']:g}, " + (f"valve {valve['signal']} < {valve['threshold']:.6g} -> first-stage "
                                              f"weight {valve['weight']:g}" if valve else "no valve")
    if "heads" in result:
        what = f"{len(result['heads'])} heads ({result['label']}, {result['deepest']} layers), " + what
    table = Table("domain", "queries", "first stage", "chosen", "leave-one-domain-out", title=what)
    for name, (lists, total) in result["queries"].items():
        table.add_row(name, f"{lists} of {total}", f"{result['first_stage'][name]:.4f}", f"{result['chosen'][name]:.4f}",
                      f"{result['lodo'][name]:.4f}")
    mean = {k: sum(result[k].values()) / len(result[k]) for k in ("first_stage", "chosen", "lodo")}
    table.add_row("mean", "", f"{mean['first_stage']:.4f}", f"{mean['chosen']:.4f}", f"{mean['lodo']:.4f}")
    Console().print(table)
    err_console.print("nDCG@10 means over every judged query of a domain (a query without a relevant passage in the "
                      "top 20 counts 0)")
