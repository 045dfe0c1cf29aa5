"""The ``headrank`` command line: a thin shell over the library, one small module per group of commands.

Each command is a function that parses options (shared types in ``options``), calls the library, and prints
(``output``); ``common`` holds failures, logging and progress bars. Add a command by writing its function in
a module here and registering it below. Modules import torch only inside commands, so ``--help`` is fast.
"""

from __future__ import annotations

import typer

from headrank.cli import adapt, batch, calibrate, choose, demo, evaluate, one_query, service, training
from headrank.cli.demo import DEMO_PASSAGES, DEMO_QUERY

app = typer.Typer(
    help="Decoding-free passage reranking from a decoder LLM's attention heads.",
    no_args_is_help=True,
    add_completion=False,
)

COMMANDS = {
    "rerank": one_query.rerank,
    "explain": one_query.explain,
    "demo": demo.demo,
    "evaluate": evaluate.evaluate,
    "compare": evaluate.compare,
    "select-heads": training.select_heads,
    "train": training.train,
    "serve": service.serve,
    "rerank-batch": batch.rerank_batch,
    "presets": service.presets,
    "adapt": adapt.adapt,
    "build-preset": training.build_preset,
    "calibrate": calibrate.calibrate,
    "pool": choose.pool,
    "choose": choose.choose,
    "bench": evaluate.bench,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)

__all__ = ["app", "main", "DEMO_PASSAGES", "DEMO_QUERY"]


def main() -> None:  # pragma: no cover - console entry point
    app()
