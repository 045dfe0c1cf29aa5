"""``headrank pool``: every head observed once per list of a plan, resumably, and read back by learn.pool."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, data_path, make_tiny_preset
from typer.testing import CliRunner

from headrank.cli import app
from headrank.learn.pool import POOL_PLAN, PlanItem, load_pool


def test_pool_captures_every_head_once_and_resumes(tiny_base, tmp_path):
    """A tiny preset on three CISI lists: one index line per list, every head's masses cached; a rerun observes
    nothing new; learn.pool reads the pool back with every head, and refuses another model's shape."""
    from headrank.engine.checkpoint import InferenceSettings

    data_path("classic", "cisi")
    preset = make_tiny_preset(tiny_base, tmp_path / "p", InferenceSettings())
    out = tmp_path / "pool"
    said = []
    for _ in range(2):
        result = CliRunner().invoke(app, ["pool", "--preset", str(preset), "--out", str(out),
                                          "--plan", "cisi:3:first-stage", "--threads", "1"])
        assert result.exit_code == 0, result.output
        said.append(result.output)
    assert "3 lists observed now" in said[0] and "0 lists observed now" in said[1]
    assert "Loading weights" not in said[1]  # the command draws its own progress, not transformers' bars
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {r["set"] for r in rows} == {"cisi"}
    assert all((out / "cache" / r["path"]).is_file() for r in rows)
    obs = load_pool(out, 4, 4)[("cisi", "first-stage")]
    assert len(obs.qids) == 3 and obs.raw[0].shape[0] == 16 and len(obs.docids[0]) == obs.raw[0].shape[1]
    with pytest.raises(ValueError, match="observed 16 heads per list, not 24 layers x 14 heads"):
        load_pool(out, 24, 14)  # another model's shape would silently mislabel every head
    with pytest.raises(FileNotFoundError, match="headrank pool"):
        load_pool(tmp_path / "nowhere", 4, 4)


def test_lists_read_back_are_reported_as_resumed(tiny_base, tmp_path):
    """A resumed item's lists take no time: they are reported as resumed so that the ETA counts only new ones."""
    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.ranker import HeadRanker
    from headrank.learn.pool import observe_pool

    data_path("classic", "cisi")
    ranker = HeadRanker.from_pretrained(make_tiny_preset(tiny_base, tmp_path / "p", InferenceSettings()),
                                        device="cpu", dtype="float32")
    assert observe_pool(ranker, tmp_path / "pool", ["cisi:2:first-stage"]) == 2
    calls = []
    assert observe_pool(ranker, tmp_path / "pool", ["cisi:3:first-stage"],
                        on_list=lambda *args: calls.append(args)) == 1
    assert [c[:3] for c in calls] == [("cisi:3:first-stage", done, 3) for done in (1, 2, 3)]
    assert calls[-1][3] == 2 and [c[3] for c in calls] == sorted(c[3] for c in calls)  # the 2 of the first run


def test_shuffled_lists_are_seeded_per_query(tiny_base):
    from headrank.engine.heads import HeadSet
    from headrank.learn.pool import plan_lists

    data_path("classic", "cisi")
    heads = HeadSet(((0, 0),))
    first = plan_lists(PlanItem.parse("cisi:4:first-stage"), heads, seed=0)
    shuffled = [plan_lists(PlanItem.parse("cisi:4:shuffled"), heads, seed=0) for _ in range(2)]
    assert shuffled[0] == shuffled[1]
    assert [q for q, _, _ in first] == [q for q, _, _ in shuffled[0]]
    assert any(a[2] != b[2] for a, b in zip(first, shuffled[0]))
    assert all(sorted(a[2]) == sorted(b[2]) for a, b in zip(first, shuffled[0]))  # same passages, new order
    assert plan_lists(PlanItem.parse("cisi:4:reversed"), heads, 0)[0][2] == first[0][2][::-1]


@pytest.mark.parametrize("text, message", [
    ("cisi:judged", "SET:WHICH:ORDER"),
    ("cisi::first-stage", "SET:WHICH:ORDER"),
    ("cisi:judged:sideways", "ORDER is one of"),
    ("cisi:some:first-stage", "WHICH is all"),
    ("cisi:0:first-stage", "WHICH is all"),
])
def test_a_bad_plan_item_is_refused_before_a_model_loads(text, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        PlanItem.parse(text)
    result = CliRunner().invoke(app, ["pool", "--preset", "no-such-preset", "--out", str(tmp_path / "p"),
                                      "--plan", text])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_the_default_plan_is_the_one_the_default_was_chosen_from():
    card = json.loads((REPO / "scripts" / "cards" / "headrank-qwen2.5-coder-0.5b.json").read_text())
    recorded = card["built_with"][0].split("--plan ")[1].split(" (")[0].split()
    assert sorted(recorded) == sorted(POOL_PLAN)
    assert [str(PlanItem.parse(item)) for item in POOL_PLAN] == list(POOL_PLAN)


def test_a_missing_preset_or_a_file_for_out_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    for args in (["--preset", str(tmp_path / "no-such-preset"), "--out", str(tmp_path / "p")],
                 ["--preset", str(tmp_path / "no-such-preset"), "--out", str(tmp_path / "a-file")]):
        result = CliRunner().invoke(app, ["pool", *args])
        assert result.exit_code in (2, 3) and "error:" in result.output, result.output
        assert "Traceback" not in result.output
    assert "is a file" in result.output
