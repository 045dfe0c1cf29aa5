"""The every-domain choice (headrank.learn.choose): the rule ranks every list as the ranker does
(rule.final_scores), prefers settings that gain on every domain, estimates a new domain by leaving each out,
finds planted heads in a small all-head pool, and rebuilds the shipped default's fusion and valve, and its card's
validation rows, from the recorded scores of its validation lists."""

from __future__ import annotations

import json
import random
import re
import shutil

import pytest
import torch
from conftest import REPO, data_path
from typer.testing import CliRunner

from headrank.cli import app
from headrank.engine.observe import HeadObservations
from headrank.engine.rule import final_scores
from headrank.learn import choose as ch

DEFAULT = REPO / "src" / "headrank" / "presets" / "headrank-qwen2.5-coder-0.5b"
RECORDED = REPO / "results" / "int8-quality-qwen-scores.jsonl"


def synthetic_domain(name: str, seed: int, lists: int = 12, n: int = 10, skill: float = 1.0) -> ch.Domain:
    """Lists whose attention scores see relevance with ``skill`` (negative: misleading), first stage a bit."""
    rng = random.Random(seed)
    out, qrels = [], {}
    for q in range(lists):
        docids = tuple(f"{name}-{q}-{i}" for i in range(n))
        grades = {d: (1 if rng.random() < 0.3 + 0.03 * (n - i) else 0) for i, d in enumerate(docids)}
        scores = tuple(skill * grades[d] + rng.gauss(0, 0.7) for d in docids)
        out.append(ch.ScoredList(f"q{q}", docids, scores))
        qrels[f"q{q}"] = grades
    return ch.Domain(name, out, qrels, lists)


def test_a_setting_ranks_each_list_as_final_scores_does():
    domain = synthetic_domain("a", 1)
    table = ch.Table.build(domain)
    for setting in ch.settings_grid([table])[::7]:
        expected = [ch.ndcg10(final_scores(x.scores, setting.fuse or None, setting.valve).scores, x.docids,
                              domain.qrels[x.qid]) for x in domain.lists]
        assert table.per_query(setting) == pytest.approx(expected, abs=1e-12), setting


def test_every_valve_weighs_more_than_its_fusion():
    grid = ch.settings_grid([ch.Table.build(synthetic_domain("a", 2))])
    assert ch.Setting(0.0, None) in grid and all(s.valve is None or s.valve.weight > s.fuse for s in grid)
    assert len({s.valve.signal for s in grid if s.valve}) >= 2


def test_the_rule_guards_the_domain_the_heads_mislead_on():
    """Heads that help on one domain and mislead on another: no setting gains on both, so the rule takes the
    largest worst-domain gain, far smaller a loss than the heads alone."""
    good = ch.Table.build(synthetic_domain("good", 3, skill=2.0))
    bad = ch.Table.build(synthetic_domain("bad", 4, skill=-2.0))
    choice = ch.choose({"heads": {"good": good, "bad": bad}}, floor=0.0)
    grid = ch.settings_grid([good, bad])
    assert min(good.gain(choice.setting), bad.gain(choice.setting)) == pytest.approx(
        max(min(good.gain(s), bad.gain(s)) for s in grid), abs=1e-6)
    unfused = ch.Setting(0.0, None)
    assert good.gain(unfused) > 0 > bad.gain(unfused)
    assert bad.gain(choice.setting) > bad.gain(unfused) / 10
    mild = ch.Table.build(synthetic_domain("mild", 5, skill=0.6))  # with a domain the heads help a little:
    choice = ch.choose({"heads": {"good": good, "mild": mild}}, floor=0.0)  # the mean among settings gaining on both
    assert choice.key[0] == 1 and min(good.gain(choice.setting), mild.gain(choice.setting)) >= 0


def test_the_worst_rule_and_the_floor():
    safe, bold = [0.004, 0.003, 0.005], [0.03, 0.02, -0.001]
    assert ch.objective(safe, ch.rule_floor("worst")) > ch.objective(bold, ch.rule_floor("worst"))
    assert ch.objective(bold, ch.rule_floor("floor-mean", -0.005)) > ch.objective(safe, ch.rule_floor("floor-mean", -0.005))
    with pytest.raises(ValueError, match="unknown rule"):
        ch.rule_floor("best")


def test_leave_one_domain_out_never_sees_the_held_out_domain():
    tables = {n: ch.Table.build(synthetic_domain(n, i)) for i, n in enumerate(("a", "b", "c"))}
    seen = []

    def candidates_for(fold):
        seen.append(tuple(fold))
        return {"heads": tables}

    lodo = ch.leave_one_domain_out(candidates_for, list(tables))
    assert seen == [("b", "c"), ("a", "c"), ("a", "b")]
    for held, (choice, gain) in lodo.items():
        assert choice == ch.choose({"heads": {n: t for n, t in tables.items() if n != held}})
        assert gain == tables[held].gain(choice.setting)


def small_pool(name: str, seed: int, good: list[int], heads: list[tuple[int, int]], lists: int = 10, n: int = 8):
    """An all-head observation of ``lists`` lists in which the heads at ``good`` put mass on relevant passages."""
    rng = torch.Generator().manual_seed(seed)
    qids, docids, raw, qrels = [], [], [], {}
    for q in range(lists):
        ids = [f"{name}-{q}-{i}" for i in range(n)]
        grades = torch.zeros(n)
        grades[torch.randperm(n, generator=rng)[:2]] = 1
        mass = torch.rand(len(heads), n, generator=rng) * 0.5
        mass[good] += grades
        qids.append(f"q{q}")
        docids.append(ids)
        raw.append(mass)
        qrels[f"q{q}"] = {d: int(g) for d, g in zip(ids, grades.tolist())}
    return HeadObservations(heads, qids, docids, raw, [m.clone() for m in raw]), qrels


def test_planted_heads_are_found_in_a_small_pool():
    heads = [(layer, head) for layer in range(4) for head in range(4)]
    planted = [heads.index((1, 2)), heads.index((0, 1))]
    deep = heads.index((3, 0))  # as good, but beyond the depth cap
    train, train_qrels = small_pool("train", 0, planted + [deep], heads, lists=16)
    domains = {}
    for i, name in enumerate(("a", "b", "c")):
        obs, qrels = small_pool(name, i + 1, planted + [deep], heads)
        lists = [ch.ScoredList(q, tuple(d), tuple(0.0 for _ in d)) for q, d in zip(obs.qids, obs.docids)]
        domains[name] = ch.PoolDomain(ch.Domain(name, lists, qrels, len(lists)), obs)
    d_train = {"train": ch.discriminability(train, train_qrels)}
    result = ch.choose_heads(domains, train, train_qrels, d_train, cap=3)
    chosen = {tuple(h) for h in result["heads"]}
    assert {(1, 2), (0, 1)} <= chosen and (3, 0) not in chosen and result["deepest"] <= 3
    assert set(result["lodo"]) == {"a", "b", "c"}
    assert all(result["chosen"][n] > result["first_stage"][n] for n in domains)


def test_recorded_scores_with_a_bad_line_name_the_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"set": "cisi", "qid": "1", "docids": ["a", "b"], "scores": [1, 2]}\n'
                    '{"set": "cisi", "qid": "2", "docids": ["a", "b"], "scores": [1]}\n')
    with pytest.raises(ValueError, match=r"s\.jsonl:2"):
        ch.read_scored_lists(path)


def card_row(label_start: str) -> list[float]:
    text = (DEFAULT / "README.md").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith(f"| {label_start}"))
    return [float(v) for v in re.findall(r"\| (\d\.\d{4})", line)]


@pytest.fixture(scope="module")
def rebuilt():
    data_path("classic", "cisi")
    scored = ch.read_scored_lists(RECORDED, "float32")
    return ch.choose_setting(ch.validation_domains(scored))


def test_the_default_is_rebuilt_from_its_recorded_validation_scores(rebuilt):
    """The shipped fusion weight and valve, to the threshold's last digit, and the card's validation rows to the
    fourth decimal (this preset, and the leave-one-domain-out estimate), from the 309 recorded lists."""
    inference = json.loads((DEFAULT / "headrank_config.json").read_text())["inference"]
    assert rebuilt["setting"]["fuse"] == inference["fuse_first_stage"]
    assert rebuilt["setting"]["valve"] == inference["safety_valve"]
    order = list(ch.VALIDATION_DOMAINS)
    rows = {"first_stage": card_row("BM25"), "chosen": card_row("this preset"), "lodo": card_row("leave-one-domain-out")}
    for key, row in rows.items():
        values = [rebuilt[key][d] for d in order]
        assert [round(v, 4) for v in values] == row[:5], key
        assert round(sum(values) / 5, 4) == row[5], key
    assert rebuilt["queries"] == {"dl21-val": [13, 13], "nfcorpus-dev": [60, 60], "cranfield": [80, 80],
                                  "cisi": [70, 76], "npl": [86, 93]}


def test_headrank_choose_rebuilds_the_default_into_a_preset(tmp_path, rebuilt):
    preset = tmp_path / "preset"
    shutil.copytree(DEFAULT, preset)
    config = json.loads((preset / "headrank_config.json").read_text())
    config["inference"] = {"fuse_first_stage": None, "safety_valve": None}
    (preset / "headrank_config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["choose", "--scores", str(RECORDED), "--column", "float32", "--out",
                                      str(tmp_path / "choice.json"), "--write-preset", str(preset)])
    assert result.exit_code == 0, result.output
    assert "0.4304" in result.output and "0.4276" in result.output  # the card's means of five
    written = json.loads((preset / "headrank_config.json").read_text())["inference"]
    shipped = json.loads((DEFAULT / "headrank_config.json").read_text())["inference"]
    assert written["fuse_first_stage"] == shipped["fuse_first_stage"]
    assert written["safety_valve"] == shipped["safety_valve"]
    assert json.loads((tmp_path / "choice.json").read_text())["chosen"] == rebuilt["chosen"]


@pytest.mark.parametrize("args, message", [
    ([], "give --scores"),
    (["--scores", "x.jsonl", "--pool", "p"], "give --scores"),
    (["--scores", "x.jsonl", "--domains", "dl19,cisi"], "validation domains"),
    (["--scores", "x.jsonl", "--domains", "cisi"], "two or more"),
    (["--scores", "x.jsonl", "--rule", "best"], "unknown rule"),
])
def test_choose_refuses_what_cannot_run(args, message):
    result = CliRunner().invoke(app, ["choose", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_writing_a_choice_keeps_the_presets_record_of_its_split(tmp_path):
    """Re-choosing on top of a re-chosen preset once nested the DL21 split twice; the choice is written into the
    head set and the inference settings, and the split stays where it was."""
    from headrank.engine.heads import HeadSet

    preset = tmp_path / "preset"
    preset.mkdir()
    split = {"val_queries": ["q1"], "train_queries": ["q2"]}
    HeadSet(heads=((0, 0),), selection={"recipe": "earlier", "adapter_selection": split}).save(preset / "headset.json")
    (preset / "headrank_config.json").write_text(json.dumps({"format": "headrank.checkpoint/1", "base_model": "m",
                                                             "inference": {"both_orders": True}}))
    valve = {"signal": "top_z", "threshold": 0.5, "weight": 1.0}
    ch.write_to_preset({"heads": [[1, 2]], "weights": [2.0], "label": "x", "setting": {"fuse": 0.8, "valve": valve}},
                       preset)
    written = HeadSet.load(preset / "headset.json")
    assert written.heads == ((1, 2),) and written.weights == (2.0,) and written.split_queries("val") == ["q1"]
    inference = json.loads((preset / "headrank_config.json").read_text())["inference"]
    assert inference["fuse_first_stage"] == 0.8 and inference["safety_valve"] == valve and not inference["both_orders"]
    with pytest.raises(ValueError, match="not a preset or checkpoint folder"):
        ch.write_to_preset({"setting": {"fuse": 0.5, "valve": None}}, tmp_path)
    (tmp_path / "headrank_config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a headrank checkpoint"):
        ch.write_to_preset({"setting": {"fuse": 0.5, "valve": None}}, tmp_path)


def test_the_heads_chosen_again_from_a_new_pool_are_the_recorded_choice():
    """scripts/reproduce.sh default-heads (headrank pool on the preset's previous, adapter version, then headrank
    choose --pool) wrote results/choose-heads-qwen.json from a pool observed anew; it is the choice recorded when
    the default was chosen (results/robust-choice-qwen.json): the shipped heads, fusion and valve, the card's
    'replaced default' row and each domain's leave-one-domain-out estimate, to the fourth decimal."""
    new = json.loads((REPO / "results" / "choose-heads-qwen.json").read_text())
    old = json.loads((REPO / "results" / "robust-choice-qwen.json").read_text())
    shipped = json.loads((DEFAULT / "headset.json").read_text())["heads"]
    assert new["heads"] == old["chosen"]["heads"] and sorted(new["heads"]) == sorted(shipped)
    assert new["weights"] == old["chosen"]["weights"] and new["cap"] == old["cap"] == 18
    assert new["setting"]["fuse"] == old["chosen"]["fuse"]
    valve, recorded = new["setting"]["valve"], old["chosen"]["valve"]
    assert (valve["signal"], valve["weight"]) == (recorded["signal"], recorded["weight"])
    assert abs(valve["threshold"] - recorded["threshold"]) < 1e-6  # float32 captures on another CPU
    order = list(ch.VALIDATION_DOMAINS)
    chosen = [round(new["chosen"][d], 4) for d in order]
    assert chosen == [round(old["chosen"]["ndcg"][d], 4) for d in order]
    assert chosen + [round(sum(new["chosen"].values()) / 5, 4)] == card_row("replaced default")
    assert [round(new["lodo"][d], 4) for d in order] == [round(old["lodo"][d]["config"]["ndcg"][d], 4) for d in order]
    assert new["queries"] == old["queries"]
