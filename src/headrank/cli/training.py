"""``headrank select-heads``, ``train`` and ``build-preset``: choose heads, align them, package a preset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headrank.cli import options
from headrank.cli.common import (
    LineProgress,
    check_output_dir,
    err_console,
    fail,
    floats,
    ints,
    load_ranker,
    progress_columns,
    setup_logging,
    user_errors,
)
from headrank.defaults import DEFAULT_MODEL

Benchmark = Annotated[str, typer.Option(help="Training benchmark (never a reporting set).")]
TrainSplit = Annotated[str, typer.Option(help="BEIR split of a BEIR training benchmark (e.g. nfcorpus train/dev).")]
Lambdas = Annotated[str, typer.Option(help="Selection: lambda values to sweep.")]
Ks = Annotated[str, typer.Option(help="Selection: head-set sizes to sweep.")]
Cache = Annotated[Path, typer.Option(help="Where head observations are cached.")]


OutOption = Annotated[Path, typer.Option("--out", "-o", help="Head set JSON to write (a heatmap PNG is written "
                                                             "beside it).")]

OrderOption = Annotated[str, typer.Option(help="Feed order of the training lists: first-stage, reversed or shuffled "
                                               "(fixed per query and --seed).")]

PresetOption = Annotated[str, typer.Option(help="headrank (sweep lambda and K on validation) or qrhead (lambda 0, "
                                                "top 16, no sweep).")]

ValFractionOption = Annotated[float, typer.Option(help="Share of training queries held out for choosing lambda, "
                                                       "K.")]

CalibrateOption = Annotated[bool, typer.Option(help="Rank by N/A-calibrated mass (D_h and the head set's "
                                                    "scores).")]

MaxDepthOption = Annotated[int, typer.Option(min=1, help="Only heads in the first N layers (a shallower L*: faster, "
                                                         "usually less accurate).")]


def select_heads(
    out: OutOption,
    model: options.BaseModel = DEFAULT_MODEL,
    benchmark: Benchmark = "dl21",
    depth: options.Depth = 20,
    order: OrderOption = "first-stage",
    max_passage_tokens: Annotated[int, typer.Option(help="Per-passage token budget (saved with the head set).")] = 100,
    preset: PresetOption = "headrank",
    lambdas: Lambdas = "0,0.1,0.3,1",
    ks: Ks = "4,8,16,32",
    val_fraction: ValFractionOption = 0.25,
    seed: options.Seed = 0,
    calibrate: CalibrateOption = True,
    max_depth: MaxDepthOption = None,
    device: options.Device = "auto",
    dtype: options.Dtype = "auto",
    data_root: options.DataRoot = None,
    cache: Cache = Path("runs") / "cache",
    split: TrainSplit = "train",
) -> None:
    """Choose a head set: D_h (nDCG@10 of each head) and E_h (its entropy) on training queries."""
    from headrank.data.benchmarks import check_training_set, load_benchmark
    from headrank.engine.presets import base_model_of
    from headrank.eval.evaluate import git_commit
    from headrank.learn.selection import SELECTION_ORDERS, plot_heatmaps, select_head_set

    setup_logging()
    if preset not in ("headrank", "qrhead"):
        fail("--preset must be headrank or qrhead")
    if order not in SELECTION_ORDERS:
        fail(f"--order must be one of {', '.join(SELECTION_ORDERS)}")
    with user_errors():
        lambda_values, k_values = floats(lambdas, "--lambdas", 0.0), ints(ks, "--ks")
        check_training_set(benchmark, split)
        bench = load_benchmark(benchmark, data_root=data_root, cache_dir=cache, split=split)
        ranker = load_ranker(base_model_of(model), "icr", None, max_passage_tokens, device, dtype)
    with LineProgress(*progress_columns("observing heads")) as progress, user_errors():
        task = progress.add_task("observe", total=None)
        head_set, selection, observations = select_head_set(
            ranker, bench, depth=depth, order=order, preset=preset, lambdas=lambda_values, ks=k_values,
            val_fraction=val_fraction, seed=seed, calibrate=calibrate, max_depth=max_depth, cache_dir=cache,
            on_list=lambda done, total: progress.update(task, completed=done, total=total), commit=git_commit())
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


def train(
    heads: Annotated[Path, typer.Option(help="Head set JSON (from select-heads); its train/validation split is "
                                             "reused.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory to write.")],
    model: Annotated[str, typer.Option(help="Base model (default: the one the head set names).")] = None,
    benchmark: Benchmark = "dl21",
    epochs: int = 3,
    lr: float = 1e-4,
    lora_r: int = 8,
    targets: Annotated[str, typer.Option(help="LoRA target projections, e.g. q_proj,k_proj,v_proj,o_proj.")]
    = "q_proj,k_proj",
    lora_layers: Annotated[str, typer.Option(help="Adapter layers: up-to-l-star (0..L*) or head-layers (only the "
                                                  "layers that hold a selected head).")] = "up-to-l-star",
    beta: Annotated[float, typer.Option(help="DPO temperature.")] = 1.0,
    alpha: Annotated[float, typer.Option(help="Weight of the distribution regularizer (0 disables it).")] = 0.5,
    tau: Annotated[float, typer.Option(help="Temperature of the target distribution exp(grade / tau).")] = 1.0,
    list_size: Annotated[int, typer.Option(help="Candidates per training list.")] = 20,
    pairs: Annotated[int, typer.Option(help="Preference pairs per list.")] = 8,
    pair_mode: Annotated[str, typer.Option(help="hard-adjacent, random-adjacent or any-gap.")] = "hard-adjacent",
    reference: Annotated[bool, typer.Option(help="DPO against the adapter-free model (off: plain pairwise "
                                                 "loss).")] = True,
    list_order: Annotated[str, typer.Option(help="shuffled or first-stage order of training lists.")] = "shuffled",
    lists_per_query: Annotated[int, typer.Option(help="Shuffled training lists per query (each a new "
                                                      "permutation).")] = 1,
    seed: options.Seed = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the training state in --out.")] = False,
    device: options.Device = "auto",
    dtype: options.Dtype = "float32",
    data_root: options.DataRoot = None,
    split: TrainSplit = "train",
    also_train: Annotated[list[str], typer.Option(help="More training queries from another set, "
                                                       "BENCH:SPLIT[:N | :@FILE] (e.g. nfcorpus:train:120, a seeded "
                                                       "sample of 120 usable queries); repeatable.")] = [],  # noqa: B006
    also_val: Annotated[list[str], typer.Option(help="More validation queries, same form (e.g. nfcorpus:dev:60); "
                                                     "validation nDCG@10 is then the mean over domains.")] = [],  # noqa: B006
) -> None:
    """Preference-align the head set's attention with LoRA; writes a HeadRank checkpoint directory."""
    from headrank.data.benchmarks import check_training_set, load_benchmark
    from headrank.engine.heads import HeadSet
    from headrank.learn.align import TrainConfig, require_peft, train_head_set

    setup_logging()
    with user_errors():
        require_peft()
        check_training_set(benchmark, split)
        head_set = HeadSet.load(heads)
        config = TrainConfig(lora_r=lora_r, lora_alpha=2 * lora_r, target_modules=tuple(targets.split(",")),
                             lora_layers=lora_layers, lr=lr, epochs=epochs, beta=beta, alpha=alpha, tau=tau,
                             list_size=list_size, pairs_per_list=pairs, pair_mode=pair_mode, use_reference=reference,
                             list_order=list_order, lists_per_query=lists_per_query, seed=seed,
                             extra_train=tuple(also_train), extra_val=tuple(also_val))
        bench = load_benchmark(benchmark, data_root=data_root, split=split)
    with LineProgress() as progress, user_errors():  # e.g. --resume with other settings, another model
        result = train_head_set(head_set, bench, config, out, model=model, device=device, dtype=dtype,
                                resume=resume, data_root=data_root, **training_callbacks(progress))
    for row in result["history"]:
        loss = "-" if row["train_loss"] is None else f"{row['train_loss']:.4f}"
        took = f", {row['seconds']:.0f} s" if row.get("seconds") else ""
        Console().print(f"epoch {row['epoch']}: train loss {loss}, validation nDCG@10 {row['val_ndcg@10']:.4f}{took}")
    err_console.print(f"best validation nDCG@10 {result['best_val_ndcg@10']:.4f}; checkpoint: {out}")


def training_callbacks(progress: LineProgress) -> dict:
    """train_head_set's progress callbacks drawing on ``progress``: steps of an epoch, the epoch's line, and the
    passes without a loss (reference, validation) as bars of their own. The epoch bar's clock restarts when such
    a pass ends, so that its ETA counts training steps only (not model loading and the reference pass)."""
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
            progress.reset(task)  # the epoch's clock (and so its ETA) starts after the passes before it
            if name == "reference":
                progress.console.print(f"reference pass: {total} training lists scored with the adapters off")

    return {"on_start": on_start, "on_step": on_step, "on_epoch": on_epoch, "on_phase": on_phase}


def build_preset(
    out: Annotated[Path, typer.Option("--out", "-o", help="Preset directory to write.")],
    model: options.BaseModel = DEFAULT_MODEL,
    name: Annotated[str, typer.Option(help="Preset name (default: the --out folder's name).")] = None,
    checkpoint: Annotated[Path, typer.Option(help="Package this trained checkpoint instead of selecting and "
                                                  "training.")] = None,
    work: Annotated[Path, typer.Option(help="Folder for the head set and checkpoint (default: runs/build/<name>); "
                                            "rerunning resumes from it.")] = None,
    benchmark: Benchmark = "dl21",
    split: TrainSplit = "train",
    data_root: options.DataRoot = None,
    depth: Annotated[int, typer.Option("--depth", "-K", min=2, help="Candidates per list.")] = 20,
    lambdas: Lambdas = "0,0.1,0.3,1",
    ks: Ks = "4,8,16,32",
    val_fraction: Annotated[float, typer.Option(help="Share of training queries held out for every choice.")] = 0.25,
    epochs: int = 3,
    lr: float = 1e-4,
    lora_r: int = 8,
    targets: Annotated[str, typer.Option(help="LoRA target projections.")] = "q_proj,k_proj",
    lora_layers: Annotated[str, typer.Option(help="up-to-l-star or head-layers.")] = "up-to-l-star",
    lists_per_query: Annotated[int, typer.Option(help="Shuffled training lists per query.")] = 1,
    seed: options.Seed = 0,
    card: Annotated[Path, typer.Option(help="JSON object merged into the model card (summary, license, "
                                            "numbers).")] = None,
    device: options.Device = "auto",
    cache: Cache = Path("runs") / "cache",
) -> None:
    """Build a preset: select heads, train the alignment, choose inference settings on validation, package it."""
    from headrank.data.benchmarks import check_training_set, load_benchmark
    from headrank.eval.evaluate import git_commit
    from headrank.learn.align import TrainConfig
    from headrank.learn.build import build_from_scratch, package_checkpoint

    setup_logging()
    name = name or out.name
    extra = check_build_paths(out, name, checkpoint, card)
    with user_errors(json.JSONDecodeError):
        check_training_set(benchmark, split)
        bench_data = load_benchmark(benchmark, data_root=data_root, cache_dir=cache, split=split)
        config = TrainConfig(lora_r=lora_r, lora_alpha=2 * lora_r, target_modules=tuple(targets.split(",")),
                             lora_layers=lora_layers, lr=lr, epochs=epochs, lists_per_query=lists_per_query,
                             seed=seed, list_size=depth)
        selection_args = dict(depth=depth, lambdas=floats(lambdas, "--lambdas", 0.0), ks=ints(ks, "--ks"),
                              val_fraction=val_fraction, seed=seed, commit=git_commit())
    extra.setdefault("commit", git_commit())
    extra.setdefault("command", "headrank " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["build-preset"] else None)
    with LineProgress() as progress, user_errors(FileExistsError):
        report = progress.stage_callback()
        if checkpoint is not None:
            preset = package_checkpoint(checkpoint, out, name, bench_data, depth=depth, device=device, dtype="float32",
                                        card=extra, on_list=lambda done, total: report("choosing inference settings",
                                                                                       done, total))
        else:
            preset = build_from_scratch(model, out, name, bench_data, config, work or Path("runs") / "build" / name,
                                        selection_args=selection_args, device=device, cache_dir=cache, card=extra,
                                        progress=report)
    for row in preset.card.get("validation", []):
        Console().print(f"{row['setting']}: " + ", ".join(f"{k} {v:.4f}" for k, v in row["ndcg@10"].items()))
    err_console.print(f"chose: {preset.inference.describe()}; wrote preset {preset.name} to {out}")


def check_build_paths(out: Path, name: str, checkpoint: Path | None, card: Path | None) -> dict:
    """Before any model loads: --out a writable folder, --name a plain name (it names the work folder),
    --checkpoint a folder, --card a UTF-8 JSON object file (returned); without --checkpoint, peft to train with."""
    from headrank.learn.align import require_peft

    check_output_dir(out, "--out")
    if checkpoint is None:
        with user_errors():
            require_peft()
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\")):
        fail(f"--name {name!r} must be a plain name (no '/' or '..'): it names the preset and its work folder")
    if checkpoint is not None and not checkpoint.is_dir():
        fail(f"--checkpoint {checkpoint} is not a checkpoint folder" + (" (it is a file)" if checkpoint.exists() else ""))
    if card is None:
        return {}
    if card.is_dir():
        fail(f"--card {card} is a directory; give a JSON file")
    try:
        extra = json.loads(card.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        fail(f"--card {card} not found")
    except UnicodeDecodeError as err:
        fail(f"--card {card}: not UTF-8 text (byte {err.start})")
    except json.JSONDecodeError as err:
        fail(f"--card {card}:{err.lineno}: {err.msg}")
    if not isinstance(extra, dict):
        fail(f"{card}: the card must be a JSON object")
    return extra
