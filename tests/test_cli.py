import json

import pytest
from conftest import data_path
from typer.testing import CliRunner

from headrank.cli import app

runner = CliRunner()
SMOL = "smollm2-135m-instruct"  # the fast real model; the default preset runs on Qwen2.5-Coder-0.5B


def _dl19():
    return str(data_path("msmarco-passage", "dl19", "bm25-top100.json"))


def test_missing_query_and_malformed_input(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("d1\tpassage\n")
    result = runner.invoke(app, ["rerank", str(p)])
    assert result.exit_code == 2 and "no query" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n')
    result = runner.invoke(app, ["rerank", str(bad), "-q", "x"])
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    result = runner.invoke(app, ["rerank", str(empty), "-q", "x"])
    assert result.exit_code == 2 and "no candidate passages" in result.output
    for baseline in ("generative", "pointwise"):
        result = runner.invoke(app, ["rerank", str(p), "-q", "x", "--method", baseline, "--window", "4"])
        assert result.exit_code == 2 and "--window works for" in result.output
        result = runner.invoke(app, ["rerank", str(p), "-q", "x", "--method", baseline, "--both-orders"])
        assert result.exit_code == 2 and "--both-orders works for" in result.output


def test_offline_model_error_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRANK_HOME", str(tmp_path))
    monkeypatch.setenv("HEADRANK_OFFLINE", "1")
    p = tmp_path / "c.tsv"
    p.write_text("d1\tpassage\n")
    result = runner.invoke(app, ["rerank", str(p), "-q", "x"])
    assert result.exit_code == 3 and "not cached" in result.output


@pytest.mark.integration
def test_rerank_dl19_icr_json(default_model_dir):
    result = runner.invoke(app, ["rerank", _dl19(), "--model", SMOL, "--method", "icr", "--depth", "20", "-o", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["qid"] and len(payload["results"]) == 20
    assert [r["rank"] for r in payload["results"]] == list(range(1, 21))
    scores = [r["score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.integration
def test_rerank_trec_output_with_inline_heads(default_model_dir):
    result = runner.invoke(
        app, ["rerank", _dl19(), "--model", SMOL, "--heads", "16:0,18:5", "--depth", "5", "-o", "trec", "--tag", "t1",
              "-k", "3"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    qid, q0, docid, rank, score, tag = lines[0].split()
    assert (q0, rank, tag) == ("Q0", "1", "t1") and float(score)


@pytest.mark.integration
def test_rerank_both_orders(default_model_dir):
    args = ["rerank", _dl19(), "--model", SMOL, "--heads", "16:0,18:5", "--depth", "6", "-o", "json"]
    plain, both = runner.invoke(app, args), runner.invoke(app, [*args, "--both-orders"])
    assert both.exit_code == 0, both.output
    scores = {r["docid"]: r["score"] for r in json.loads(plain.stdout)["results"]}
    averaged = {r["docid"]: r["score"] for r in json.loads(both.stdout)["results"]}
    assert averaged.keys() == scores.keys() and averaged != scores


@pytest.mark.integration
def test_rerank_in_fixed_windows(default_model_dir):
    result = runner.invoke(app, ["rerank", _dl19(), "--model", SMOL, "--heads", "16:0,18:5", "--depth", "8", "--window", "4",
                                 "-o", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert sorted(r["docid"] for r in payload["results"]) == sorted(set(r["docid"] for r in payload["results"]))
    assert [r["score"] for r in payload["results"]] == [8.0 - i for i in range(8)]  # rank-derived
    assert "sliding windows" in result.stderr


@pytest.mark.integration
def test_head_set_for_another_model_fails_cleanly(default_model_dir, tmp_path):
    result = runner.invoke(app, ["rerank", _dl19(), "--model", SMOL, "--heads", "40:0", "--depth", "3"])
    assert result.exit_code == 2 and "do not exist" in result.output
    result = runner.invoke(app, ["rerank", _dl19(), "--heads", "x:y", "--depth", "3"])
    assert result.exit_code == 2 and "layer:head" in result.output


@pytest.mark.integration
def test_demo_shows_a_real_bm25_list_and_the_built_in_example_in_both_orders(default_model_dir, monkeypatch):
    """The default preset (real weights) on the first judged DL19 query's BM25 top 20, with grades and nDCG@10 of
    both orders recomputed here, then the built-in example in BM25's, the preset's and the model's own order."""
    from headrank.cli import DEMO_PASSAGES
    from headrank.data.benchmarks import first_judged_list
    from headrank.engine.presets import DEFAULT_PRESET
    from headrank.eval.evaluate import order_ndcg

    data_path("msmarco-passage", "dl19")
    result = runner.invoke(app, ["demo", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    flat = " ".join(out.split())  # titles wrap at the terminal width
    example = first_judged_list("dl19", 20)
    assert f"preset {DEFAULT_PRESET}" in flat and f"query {example.qid} (the first judged query)" in flat
    assert example.query in flat and "BM25 top 20" in flat
    bm25 = order_ndcg(example.grades, example.docids)
    line = next(x for x in out.splitlines() if x.startswith("nDCG@10 of this list"))
    assert f"BM25 {bm25:.4f} -> HeadRank " in line  # BM25's own number, recomputed with ir-measures
    headrank = float(line.split("-> HeadRank ")[1].split()[0])
    assert 0.0 <= headrank <= 1.0 and "the model alone" in line
    rows = [r.split("│") for r in out.splitlines() if r.startswith("│") and r.split("│")[1].strip()]
    assert [r[1].strip() for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[0][3].strip() == example.label(example.docids[0])  # BM25's #1 with its grade
    order = {name: next(x for x in out.splitlines() if x.startswith(name)).split(":")[1] for name in
             ("BM25's order", "HeadRank fused with BM25", "HeadRank, the model alone")}
    numbers = {k: [int(n) for n in v.split(",")] for k, v in order.items()}
    assert all(sorted(v) == list(range(1, len(DEMO_PASSAGES) + 1)) for v in numbers.values())
    vaccine = {i + 1 for i, text in enumerate(DEMO_PASSAGES) if "vaccin" in text.lower()}
    trap = next(i + 1 for i, text in enumerate(DEMO_PASSAGES) if text.startswith("How do trains"))
    assert numbers["BM25's order"][0] == trap  # the keyword trap BM25 falls for
    assert numbers["HeadRank, the model alone"][0] in vaccine, out  # the model alone sees through it
    assert "--fuse-first-stage 0" in flat and "Try next" in out


@pytest.mark.integration
def test_demo_without_benchmark_data_says_so_and_shows_the_example(default_model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HEADRANK_DATA", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["demo", "--device", "cpu", "--model", "headrank-smollm2-135m"])
    assert result.exit_code == 0, result.output
    assert "A real search: skipped, the TREC DL19 data is not here" in result.stdout
    assert "HeadRank, the model alone (no fusion):" in result.stdout and "Traceback" not in result.output


def test_evaluate_bm25_on_dl19(tmp_path):
    data_path("msmarco-passage", "dl19")
    args = ["evaluate", "--method", "bm25", "-b", "dl19", "--out", str(tmp_path), "--data-root", str(data_path())]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| dl19 | bm25 | 20 | first-stage | 43 | 0.5058 |" in result.stdout
    summary = json.loads(next(tmp_path.glob("summary-*.json")).read_text())
    assert summary["average_ndcg@10"] == pytest.approx(0.5058, abs=1e-4)
    run_dir = next(tmp_path.glob("dl19-bm25-*"))
    assert len((run_dir / "run.trec").read_text().splitlines()) == 43 * 20
    again = runner.invoke(app, args)  # resumes: nothing left to rerank, same numbers
    assert again.exit_code == 0 and "| dl19 | bm25 | 20 | first-stage | 43 | 0.5058 |" in again.stdout
    progress = [line for line in again.stderr.splitlines() if line.startswith("bm25 K=20 dl19: ")]
    # all read back: no speed to estimate from
    assert progress and not any("eta" in line for line in progress), "\n".join(progress)


def test_evaluate_argument_errors(tmp_path):
    for order in ("reversed", "both"):
        result = runner.invoke(app, ["evaluate", "--method", "bm25", "--order", order, "--out", str(tmp_path)])
        assert result.exit_code == 2 and f"--order {order} does not apply" in result.output
    result = runner.invoke(app, ["evaluate", "--method", "icr", "--order", "sideways", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "order must be one of first-stage, reversed, both" in result.output
    result = runner.invoke(app, ["evaluate", "--method", "magic", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown method" in result.output
    for method in ("bm25", "pointwise"):
        result = runner.invoke(app, ["evaluate", "--method", method, "--shared-capture", "--out", str(tmp_path)])
        assert result.exit_code == 2 and "--shared-capture works for" in result.output
    for extra in (["--method", "bm25"], ["--method", "icr", "--shared-capture"]):
        result = runner.invoke(app, ["evaluate", *extra, "--window", "20", "--out", str(tmp_path)])
        assert result.exit_code == 2 and "--window works for" in result.output
    result = runner.invoke(app, ["evaluate", "--method", "bm25", "-b", "nope", "--out", str(tmp_path),
                                 "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "unknown benchmark" in result.output


@pytest.mark.integration
def test_rerank_and_evaluate_with_baselines(default_model_dir, tmp_path):
    result = runner.invoke(app, ["rerank", _dl19(), "--model", SMOL, "--method", "pointwise", "--depth", "4", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 4
    folder = tmp_path / "mini"
    folder.mkdir()
    entry = json.loads(data_path("msmarco-passage", "dl19", "bm25-top100.json").read_text())[:1]
    entry[0]["hits"] = entry[0]["hits"][:5]
    (folder / "c.json").write_text(json.dumps(entry))
    (folder / "qrels.txt").write_text(data_path("msmarco-passage", "dl19", "qrels.txt").read_text())
    result = runner.invoke(app, ["evaluate", "--method", "generative", "-b", str(folder), "--depth", "5",
                                 "--out", str(tmp_path / "runs"), "--no-plot", "--model", SMOL])
    assert result.exit_code == 0, result.output
    assert "format OK" in result.stdout
    summary = json.loads(next((tmp_path / "runs").glob("summary-*.json")).read_text())
    assert summary["results"][0]["extra"]["windows"] == 1
    result = runner.invoke(app, ["evaluate", "--method", "heads", "--heads", "10:3,12:1", "-b", str(folder),
                                 "--depth", "5", "--out", str(tmp_path / "fused"), "--no-plot",
                                 "--fuse-first-stage", "1", "--model", SMOL])
    assert result.exit_code == 0, result.output
    assert "| heads+rrf1 | 5 | first-stage |" in result.stdout and "average" not in result.stdout
    fused_run = next((tmp_path / "fused").glob("*heads+rrf1*/run.trec")).read_text().split()
    assert fused_run[2::6] == [h["docid"] for h in entry[0]["hits"]]  # weight 1: the first-stage order
    ndcg = {}
    for mode in ("own", "shared"):
        for method in ("icr", "heads"):
            args = ["evaluate", "--method", method, "-b", str(folder), "--depth", "5", "--out", str(tmp_path / mode),
                    "--no-plot", "--model", SMOL] + (["--heads", "10:3,12:1,20:0"] if method == "heads" else [])
            result = runner.invoke(app, args + (["--shared-capture"] if mode == "shared" else []))
            assert result.exit_code == 0, result.output
            summary = json.loads(next((tmp_path / mode).glob(f"summary-{method}-*.json")).read_text())
            ndcg[mode, method] = summary["average_ndcg@10"]
    assert ndcg["own", "icr"] == ndcg["shared", "icr"] and ndcg["own", "heads"] == ndcg["shared", "heads"]
    assert len(list((tmp_path / "shared" / "cache" / "shared").glob("*.pt"))) == 1  # one capture, two methods
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "headrank_config.json").write_text("{}")
    result = runner.invoke(app, ["evaluate", "--method", "heads", "--model", str(checkpoint), "--shared-capture",
                                 "-b", str(folder), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "checkpoint" in result.output


@pytest.mark.integration
def test_rerank_fused_with_first_stage(default_model_dir):
    result = runner.invoke(app, ["rerank", _dl19(), "--model", SMOL, "--depth", "6", "--fuse-first-stage", "1", "-o", "json",
                                 "-k", "3"])
    assert result.exit_code == 0, result.output
    assert [r["corpus_id"] for r in json.loads(result.stdout)["results"]] == [0, 1, 2]
    result = runner.invoke(app, ["rerank", _dl19(), "--depth", "3", "--fuse-first-stage", "2"])
    assert result.exit_code == 2


def test_error_messages_keep_brackets(tmp_path):
    p = tmp_path / "[weird] name.tsv"
    p.write_text("a\tb\tc\n")
    result = runner.invoke(app, ["rerank", str(p), "-q", "x"])
    assert result.exit_code == 2 and "[weird] name.tsv:1" in result.output


def test_reporting_sets_are_refused_as_training_data(tmp_path):
    for args in (["select-heads", "--out", str(tmp_path / "h.json"), "--benchmark", "dl19"],
                 ["select-heads", "--out", str(tmp_path / "h.json"), "--benchmark", "nfcorpus", "--split", "test"],
                 ["train", "--heads", str(tmp_path / "missing.json"), "--out", str(tmp_path / "c"), "--benchmark", "noveleval"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "reporting set" in result.output, args
    assert not (tmp_path / "h.json").exists()


def test_cli_starts_without_torch():
    """`headrank --help` and `import headrank` load no torch or transformers (they once took 5-7 s under load)."""
    import subprocess
    import sys

    code = ("import sys, headrank, headrank.cli; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(headrank.cli.app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; print(heavy); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_explain_png_shows_words_and_reports_the_written_path(tmp_path, tiny_base):
    from PIL import Image

    cands = tmp_path / "c.tsv"
    cands.write_text("d1\tsolar panels\nd2\tpasta\nd3\t" + "a long passage about wind farms at sea " * 20 + "\n")
    target = tmp_path / "figure"  # no extension: matplotlib writes figure.png
    result = runner.invoke(app, ["explain", str(cands), "-q", "solar power", "--model", str(tiny_base), "--heads",
                                 "1:0,2:3", "--png", str(target), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "figure.png"
    assert written.is_file() and f"wrote {written}" in " ".join(result.output.split())
    width, height = Image.open(written).size
    assert width >= 800 and height >= 200  # wide enough for text, whatever the passages' lengths


def test_explain_table_shows_the_score_that_ranks(tmp_path, tiny_base):
    cands = tmp_path / "c.tsv"
    cands.write_text("d1\tsolar panels\nd2\tpasta recipes\nd3\twind farms\n")
    args = ["explain", str(cands), "-q", "solar power", "--model", str(tiny_base), "--heads", "1:0,2:3",
            "--device", "cpu"]
    fused = runner.invoke(app, [*args, "--fuse-first-stage", "0.5"])
    assert fused.exit_code == 0, fused.output
    assert "(fused)" in fused.stdout and "attention" in fused.stdout  # headers wrap in a narrow terminal
    rows = json.loads(runner.invoke(app, [*args, "--fuse-first-stage", "0.5", "-o", "json"]).stdout)["results"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert all(r["ranking_score"] == r["fused_score"] and r["first_stage_rank"] >= 1 for r in rows)
    assert rows[0]["ranking_score"] >= rows[1]["ranking_score"] >= rows[2]["ranking_score"]
    plain = runner.invoke(app, [*args, "-o", "json"])
    rows = json.loads(plain.stdout)["results"]
    assert all(r["ranking_score"] == r["score"] and r["fused_score"] is None for r in rows)


def test_tables_never_pass_escape_sequences_or_markup_to_the_terminal(tmp_path, tiny_base):
    """A passage with ANSI escapes, a carriage return, a bidi override and Rich markup prints as text."""
    cands = tmp_path / "c.tsv"
    cands.write_text("d\x1b[2J1\tsolar \x1b[31mred\x1b[0m panels\r\u202eevil [bold]b[/] [/oops]\n"
                     "d2\tpasta recipes\n")
    base = [str(cands), "-q", "solar \x1b]0;title\x07power", "--model", str(tiny_base), "--heads", "1:0,2:3",
            "--device", "cpu"]
    for command in ("rerank", "explain"):
        result = runner.invoke(app, [command, *base], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert not any(ch in result.stdout for ch in "\x1b\r\x07\u202e"), repr(result.stdout)
        assert "[/oops]" in result.stdout or command == "explain", result.stdout
    assert "[bold]b[/]" in runner.invoke(app, ["rerank", *base], env={"COLUMNS": "200"}).stdout


def test_one_default_model():
    """Every command defaults to the default preset or to its base model, and says so in --help."""
    from headrank import DEFAULT_MODEL, DEFAULT_PRESET
    from headrank.engine.presets import load_preset

    assert load_preset(DEFAULT_PRESET).base_model == DEFAULT_MODEL
    def model_help(command: str) -> str:  # the --model row, wide enough not to wrap
        out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
        return next(line for line in out.splitlines() if line.lstrip("│ ").startswith("--model"))

    for command in ("rerank", "explain", "demo", "serve", "rerank-batch", "evaluate"):
        assert f"[default: {DEFAULT_PRESET}]" in model_help(command), command
    for command in ("select-heads", "build-preset", "bench"):
        row = model_help(command)
        assert f"[default: {DEFAULT_MODEL}]" in row and "default preset's base model" in row, command


def test_rerank_notes_that_fusion_reads_a_tsv_in_its_order(tiny_base, tmp_path):
    """A TSV or JSONL list may come in any order; when fusion used it as the first stage's ranking, stderr says so
    with the switch. Not for a RankGPT file (a first-stage ranking by its format) or with fusion off."""
    cands = tmp_path / "c.tsv"
    cands.write_text("d1\tsolar panels\nd2\tpasta recipes\nd3\twind farms\n")
    rankgpt = tmp_path / "c.json"
    rankgpt.write_text(json.dumps({"query": "solar power", "hits": [
        {"docid": f"d{i}", "content": t} for i, t in enumerate(["solar panels", "pasta recipes", "wind farms"])]}))
    base = ["--model", str(tiny_base), "--heads", "1:0,2:3", "--device", "cpu"]
    note = "read the input order as your first stage's ranking"
    fused = runner.invoke(app, ["rerank", str(cands), "-q", "solar power", *base, "--fuse-first-stage", "0.5"])
    assert fused.exit_code == 0, fused.output
    said = " ".join(fused.stderr.split())
    assert f"fusion {note}" in said and said.endswith("pass --fuse-first-stage 0")  # no valve here: not named
    plain = runner.invoke(app, ["rerank", str(cands), "-q", "solar power", *base, "--fuse-first-stage", "0"])
    assert plain.exit_code == 0 and note not in " ".join(plain.stderr.split())
    ranked = runner.invoke(app, ["rerank", str(rankgpt), *base, "--fuse-first-stage", "0.5"])
    assert ranked.exit_code == 0 and note not in " ".join(ranked.stderr.split())


def test_progress_lines_in_a_log_file_carry_an_eta():
    """Redirected to a file (nohup, CI) rich draws nothing; the plain lines say how long is left."""
    import io

    from rich.console import Console

    from headrank.cli.common import LineProgress

    clock = [0.0]
    log = io.StringIO()
    with LineProgress(console=Console(file=log, force_terminal=False), get_time=lambda: clock[0]) as progress:
        task = progress.add_task("epoch 1", total=10)
        for _ in range(10):
            clock[0] += 10.0  # ten seconds a step: after step k, (10 - k) * 10 s are left
            progress.advance(task)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("epoch 1:")]
    assert len(lines) == 10 and lines[0].startswith("epoch 1: 1/10 (")
    assert lines[0].endswith(", eta 0:01:30)") and lines[4].endswith(", eta 0:00:50)")
    assert "eta" not in lines[-1]  # done: nothing left to estimate


def test_training_eta_counts_training_steps_only():
    """The epoch's ETA in a log file comes from its steps, not from model loading and the reference pass before
    them (a 10-minute reference pass made a 30-minute epoch read 'eta 3:27:07' after its first steps)."""
    import io

    from rich.console import Console

    from headrank.cli.common import LineProgress
    from headrank.cli.training import training_callbacks

    clock = [0.0]
    log = io.StringIO()
    with LineProgress(console=Console(file=log, force_terminal=False), get_time=lambda: clock[0]) as progress:
        callbacks = training_callbacks(progress)
        callbacks["on_start"](10)
        for done in range(1, 6):
            clock[0] += 100.0  # the reference pass: 100 s a list
            callbacks["on_phase"]("reference", done, 5)
        for step in range(1, 11):
            clock[0] += 10.0  # ten seconds a training step
            callbacks["on_step"](1, step, 0.5)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("epoch 1 loss")]
    assert lines[0].startswith("epoch 1 loss 0.5000: 1/10 (") and lines[0].endswith(", eta 0:01:30)")
    assert lines[4].endswith(", eta 0:00:50)")


def test_eta_of_a_resumed_run_counts_only_what_it_computes():
    """50 of 100 lists read back at once, then 10 computed in 100 s: 40 are left at 10 s each (before: the 50
    counted as speed and the log said 'eta 0:01:07')."""
    import io

    from rich.console import Console

    from headrank.cli.common import LineProgress

    clock = [0.0]
    log = io.StringIO()
    with LineProgress(console=Console(file=log, force_terminal=False), get_time=lambda: clock[0]) as progress:
        task = progress.add_task("rerank", total=100)
        progress.update(task, completed=50, resumed=50)
        clock[0] += 100.0
        progress.update(task, completed=60)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("rerank:")]
    assert lines[0].startswith("rerank: 50/100 (") and "eta" not in lines[0]  # nothing computed yet
    assert lines[1].startswith("rerank: 60/100 (") and lines[1].endswith(", eta 0:06:40)")


def test_progress_prints_a_plan_item_as_typed():
    """A pool's plan item 'dl21:train:shuffled' once read 'dl21🚋shuffled' in the log: rich turned ':train:' into
    an emoji, in the bar and in the plain lines."""
    import io

    from rich.console import Console

    from headrank.cli.common import LineProgress, err_console, progress_columns

    log = io.StringIO()
    with LineProgress(console=Console(file=log, force_terminal=False)) as progress:
        task = progress.add_task("dl21:train:shuffled", total=2)
        progress.advance(task, 2)
        label = progress_columns()[0].render(progress.tasks[0])
    assert "dl21:train:shuffled: 2/2 (" in log.getvalue()
    assert label.plain == "dl21:train:shuffled"
    with err_console.capture() as captured:
        err_console.print("pool: runs/a:train:b")
    assert "runs/a:train:b" in captured.get()
