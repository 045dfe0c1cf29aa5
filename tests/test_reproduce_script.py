"""scripts/reproduce.sh must keep naming valid commands and options as the CLI evolves."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import typer

from headrank.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.sh"
SECTIONS = ["smollm2", "qwen", "reversed", "k50", "ablations", "default", "default-heads"]


def _listed_steps() -> list[tuple[str, list[str]]]:
    out = subprocess.run(["bash", str(SCRIPT), "--list", *SECTIONS], capture_output=True, text=True, check=True).stdout
    steps = []
    for line in out.splitlines():
        name, _, command = line.partition(": headrank ")
        steps.append((name, shlex.split(command)))
    return steps


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_step_parses_with_the_cli():
    steps = _listed_steps()
    names = [name for name, _ in steps]
    assert len(names) == len(set(names)), "step names must be unique (they are the done markers)"
    assert {"qwen-train", "qwen-k20-trained", "smollm2-k20-reversed-icr", "qwen-k50-icr", "default-choose",
                                   "default-heads-choose"} <= set(names)
    group = typer.main.get_command(app)
    for name, argv in steps:
        command = group.commands[argv[0]]
        try:
            command.make_context(argv[0], argv[1:], resilient_parsing=False)
        except click.UsageError as err:  # pragma: no cover - the message is the point
            pytest.fail(f"step {name}: {err}")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_unknown_section_is_an_error():
    result = subprocess.run(["bash", str(SCRIPT), "everything"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown section" in result.stderr


def _checkpoint(path: Path, val: list[float]) -> str:
    path.mkdir()
    history = [{"epoch": e, "val_ndcg@10": v} for e, v in enumerate(val)]
    (path / "headrank_config.json").write_text(json.dumps({"history": history}))
    return str(path)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_trained_rows_use_the_recipe_best_on_validation(tmp_path):
    default = _checkpoint(tmp_path / "qwen-dl21", [0.51, 0.48, 0.50])
    better = _checkpoint(tmp_path / "qwen-dl21-hl-x2", [0.51, 0.53])
    (tmp_path / "qwen-dl21-running").mkdir()  # a run without a checkpoint yet is no candidate

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'source "{SCRIPT}"; "$@"', "bash", *args], capture_output=True, text=True)

    chosen = call("best_on_validation", default, f"{tmp_path}/qwen-dl21-running/", better + "/")
    assert chosen.returncode == 0 and chosen.stdout.strip() == better
    assert call("untrained_best", default).returncode == 0  # epoch 0 kept: zero adapter
    assert call("untrained_best", better).returncode == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_entropy_ablation_runs_the_other_way_when_selection_chose_lambda_0(tmp_path):
    heads = tmp_path / "runs" / "heads"
    heads.mkdir(parents=True)

    def listed(lambda0_heads) -> list[str]:
        (heads / "smollm2-dl21.json").write_text(json.dumps({"heads": [[0, 1], [2, 3]]}))
        (heads / "smollm2-dl21-lambda0.json").write_text(json.dumps({"heads": lambda0_heads}))
        out = subprocess.run(["bash", "-c", f'source "{SCRIPT}"; LIST_ONLY=1; section_ablations'], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
        return [line.partition(":")[0] for line in out.splitlines()]

    same = listed([[0, 1], [2, 3]])  # lambda 0 is the selection: force lambda > 0 instead
    assert "abl-entropy-forced-train" in same and "abl-no-entropy-train" not in same
    differ = listed([[0, 1], [4, 5]])  # the selection used lambda > 0: drop it
    assert "abl-no-entropy-train" in differ and "abl-entropy-forced-train" not in differ
