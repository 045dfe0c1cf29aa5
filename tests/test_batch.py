"""`headrank rerank-batch`: same answers as `headrank rerank`, resumable after a kill, bad rows, Ray actors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from headrank.cli import app

runner = CliRunner()
WORDS = ["solar", "wind", "pasta", "river", "music", "chess", "tiger", "cloud", "bread", "train"]
HEADS = "1:0,2:3"


@pytest.fixture()
def run_files(tmp_path):
    """60 queries x 8 documents: a TREC run, topics and a JSONL corpus."""
    topics, corpus, run = [], [], []
    for q in range(60):
        topics.append(f"q{q}\tquery about {WORDS[q % 10]} number {q}")
        for r in range(8):
            run.append(f"q{q} Q0 d{q}-{r} {r + 1} {10 - r}.0 bm25")
            corpus.append(json.dumps({"_id": f"d{q}-{r}", "title": WORDS[(q + r) % 10],
                                      "text": f"passage {r} about {WORDS[(q * r) % 10]} and more"}))
    (tmp_path / "topics.tsv").write_text("\n".join(topics) + "\n")
    (tmp_path / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    (tmp_path / "run.trec").write_text("\n".join(run) + "\n")
    return tmp_path


def _args(files, out, tiny_base, *extra):
    return ["rerank-batch", "--run", str(files / "run.trec"), "--topics", str(files / "topics.tsv"), "--corpus",
            str(files / "corpus.jsonl"), "--out", str(out), "--model", str(tiny_base), "--heads", HEADS,
            "--device", "cpu", "--depth", "6", *extra]


def _trec(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_batch_equals_rerank_query_by_query(run_files, tiny_base, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, _args(run_files, out, tiny_base, "--batch-size", "1"))
    assert result.exit_code == 0, result.output
    rows = _trec(out / "run.trec")
    assert len(rows) == 60 * 6 and len({r[0] for r in rows}) == 60
    for q in (0, 17, 59):
        cands = tmp_path / f"c{q}.jsonl"
        corpus = {json.loads(l)["_id"]: json.loads(l) for l in (run_files / "corpus.jsonl").read_text().splitlines()}
        docs = [corpus[f"d{q}-{r}"] for r in range(6)]
        cands.write_text("".join(json.dumps({"docid": d["_id"], "text": f"{d['title']} {d['text']}"}) + "\n"
                                 for d in docs))
        query = f"query about {WORDS[q % 10]} number {q}"
        single = runner.invoke(app, ["rerank", str(cands), "-q", query, "--model", str(tiny_base), "--heads", HEADS,
                                     "-o", "trec", "--device", "cpu"])
        assert single.exit_code == 0, single.output
        expected = [(line.split()[2], line.split()[4]) for line in single.stdout.splitlines()]
        got = [(r[2], r[4]) for r in rows if r[0] == f"q{q}"]
        assert got == expected  # same order, same scores (to the printed 6 decimals)
    again = runner.invoke(app, _args(run_files, out, tiny_base))  # nothing left: instant, same file
    assert again.exit_code == 0 and "ranked 0 queries now" in again.output
    assert _trec(out / "run.trec") == rows


def test_resume_after_the_driver_is_killed(run_files, tiny_base, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert runner.invoke(app, _args(run_files, whole, tiny_base)).exit_code == 0
    cmd = [sys.executable, "-m", "headrank.cli", *_args(run_files, cut, tiny_base, "--batch-size", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        shards = list((cut / "shards").glob("*.jsonl")) if (cut / "shards").is_dir() else []
        if shards and sum(len(s.read_text().splitlines()) for s in shards) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sum(len(s.read_text().splitlines()) for s in (cut / "shards").glob("*.jsonl"))
    assert 10 <= written < 60, written  # killed part-way
    shard = next((cut / "shards").glob("*.jsonl"))
    with shard.open("a") as f:
        f.write('{"qid": "q59", "docids": ["torn')  # a torn last line, as a kill mid-write leaves
    result = runner.invoke(app, _args(run_files, cut, tiny_base))
    assert result.exit_code == 0, result.output
    assert f"ranked {60 - written} queries now" in result.output
    progress = [line for line in result.output.splitlines() if line.startswith("rerank: ")]
    assert progress[0].startswith(f"rerank: {written}/60 (") and "eta" not in progress[0]  # read back, not speed
    assert _trec(cut / "run.trec") == _trec(whole / "run.trec")  # every query exactly once, same answers


def test_bad_rows_are_listed_or_fail_the_job(run_files, tiny_base, tmp_path):
    run = run_files / "run.trec"
    run.write_text(run.read_text() + "q1 Q0 d1-0 x 1.0 bm25\nq999 Q0 d1-0 1 1.0 bm25\nq1 Q0 nodoc 9 1.0 bm25\nshort line\n")
    (run_files / "corpus.jsonl").write_text((run_files / "corpus.jsonl").read_text() + "{broken\n")
    out = tmp_path / "out"
    result = runner.invoke(app, _args(run_files, out, tiny_base))
    assert result.exit_code == 0, result.output
    problems = (out / "problems.txt").read_text().splitlines()
    assert len(problems) == 5 and "skipped 5 input rows" in result.output
    assert any("run.trec:481: rank and score must be numbers" in p for p in problems)
    assert any("query 'q999' is not in the topics" in p for p in problems)
    assert any("document 'nodoc' is not in the corpus" in p for p in problems)
    assert any("corpus.jsonl:481: invalid JSON" in p for p in problems)
    assert len({r[0] for r in _trec(out / "run.trec")}) == 60
    failed = runner.invoke(app, _args(run_files, tmp_path / "strict", tiny_base, "--on-error", "fail"))
    assert failed.exit_code == 2 and "corpus.jsonl:481" in failed.output
    for args, message in ((["rerank-batch", "--out", str(out)], "exactly one input"),
                          (["rerank-batch", "--out", str(out), "--run", str(run)], "needs --topics"),
                          (_args(run_files, out, tiny_base, "--tag", "a b"), "--tag")):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_workers_without_ray_say_which_extra_to_install(run_files, tiny_base, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = runner.invoke(app, _args(run_files, tmp_path / "out", tiny_base, "--workers", "1"))
    assert result.exit_code == 2 and "pip install 'headrank[ray]'" in result.output


def test_ray_actors_give_the_same_run_and_survive_a_killed_worker(run_files, tiny_base, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (make test installs it)")
    local = tmp_path / "local"
    assert runner.invoke(app, _args(run_files, local, tiny_base, "--batch-size", "2")).exit_code == 0
    pids = tmp_path / "pids"
    env = {**os.environ, "HEADRANK_RAY_PID_DIR": str(pids), "RAY_DEDUP_LOGS": "0"}
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "headrank.cli", *_args(run_files, out, tiny_base, "--workers", "1",
                                                        "--batch-size", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    killed = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        shards = list((out / "shards").glob("*.jsonl")) if (out / "shards").is_dir() else []
        if killed is None and shards and sum(len(s.read_text().splitlines()) for s in shards) >= 4:
            killed = int(next(pids.iterdir()).name)
            os.kill(killed, signal.SIGKILL)  # Ray restarts the actor and retries its batch
        time.sleep(0.1)
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    assert killed is not None and len(list(pids.iterdir())) >= 2, "the worker was not restarted"
    ours, theirs = _trec(out / "run.trec"), _trec(local / "run.trec")
    assert [(r[0], r[2]) for r in ours] == [(r[0], r[2]) for r in theirs]  # same queries, same order
    for a, b in zip(ours, theirs):
        assert float(a[4]) == pytest.approx(float(b[4]), abs=1e-5)


def test_a_stale_output_folder_is_refused_with_what_changed(run_files, tiny_base, tmp_path):
    """Once a rerun with other passages, another head set or another depth said "ranked 0 queries now" and kept
    the old results; now each is refused before the model loads, and --restart starts over."""
    out = tmp_path / "out"
    assert runner.invoke(app, _args(run_files, out, tiny_base)).exit_code == 0
    first = _trec(out / "run.trec")
    corpus = run_files / "corpus.jsonl"
    original = corpus.read_text()
    corpus.write_text(original.replace("passage 3 about", "passage three about"))
    changed = runner.invoke(app, _args(run_files, out, tiny_base))
    assert changed.exit_code == 2 and "other passages" in changed.output and "--restart" in changed.output
    corpus.write_text(original)
    other_heads = runner.invoke(app, [*_args(run_files, out, tiny_base)[:-2], "--depth", "6", "--heads", "1:1"])
    assert other_heads.exit_code == 2 and "'1:0,2:3' -> '1:1'" in other_heads.output, other_heads.output
    shallower = runner.invoke(app, [*_args(run_files, out, tiny_base)[:-2], "--depth", "5"])
    assert shallower.exit_code == 2 and "depth: 6 -> 5" in shallower.output, shallower.output
    assert _trec(out / "run.trec") == first  # nothing was touched
    restarted = runner.invoke(app, [*_args(run_files, out, tiny_base)[:-2], "--depth", "5", "--restart"])
    assert restarted.exit_code == 0 and "ranked 60 queries now" in restarted.output, restarted.output
    rows = _trec(out / "run.trec")
    assert len(rows) == 60 * 5


def test_problems_file_belongs_to_the_run_that_wrote_it(run_files, tiny_base, tmp_path):
    out = tmp_path / "out"
    run = run_files / "run.trec"
    clean = run.read_text()
    run.write_text(clean + "q999 Q0 d1-0 1 1.0 bm25\n")
    assert runner.invoke(app, _args(run_files, out, tiny_base)).exit_code == 0
    assert (out / "problems.txt").is_file()
    run.write_text(clean)
    again = runner.invoke(app, _args(run_files, out, tiny_base))
    assert again.exit_code == 0 and not (out / "problems.txt").exists()  # the old list does not linger


def test_duplicate_qids_and_empty_queries_are_listed_and_skipped(tmp_path, tiny_base):
    entries = [{"query": f"query {i}", "hits": [{"qid": str(i), "docid": f"d{i}-{k}", "content": f"passage {k}"}
                                                  for k in range(4)]} for i in range(4)]
    entries.append({"query": "a second list for qid 1", "hits": [{"qid": "1", "docid": "x", "content": "other"}]})
    entries[2]["query"] = "   "
    path = tmp_path / "cands.json"
    path.write_text(json.dumps(entries))
    out = tmp_path / "out"
    args = ["rerank-batch", "--candidates", str(path), "--out", str(out), "--model", str(tiny_base), "--heads",
            HEADS, "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    problems = (out / "problems.txt").read_text()
    assert "entry 4 (qid '1'): the qid appears again (first in entry 1)" in problems
    assert "entry 2 (qid '2'): the query is empty" in problems
    rows = _trec(out / "run.trec")
    assert sorted({r[0] for r in rows}) == ["0", "1", "3"] and len(rows) == 12  # each qid once, its first list
    assert "x" not in {r[2] for r in rows}
    strict = runner.invoke(app, [*args[:4], str(tmp_path / "strict"), *args[5:], "--on-error", "fail"])
    assert strict.exit_code == 2 and "entry 2 (qid '2')" in strict.output, strict.output


def test_empty_topic_is_listed_by_qid(run_files, tiny_base, tmp_path):
    topics = run_files / "topics.tsv"
    topics.write_text(topics.read_text().replace(f"q7\tquery about {WORDS[7]} number 7", "q7\t  "))
    out = tmp_path / "out"
    result = runner.invoke(app, _args(run_files, out, tiny_base))
    assert result.exit_code == 0, result.output
    assert "query 'q7' has an empty text" in (out / "problems.txt").read_text()
    assert len({r[0] for r in _trec(out / "run.trec")}) == 59


def test_fusion_weight_is_a_batch_setting(run_files, tiny_base, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, _args(run_files, out, tiny_base, "--fuse-first-stage", "1")).exit_code == 0
    rows = _trec(out / "run.trec")
    assert [r[2] for r in rows if r[0] == "q3"] == [f"d3-{k}" for k in range(6)]  # w = 1: the run's own order
    other = runner.invoke(app, _args(run_files, out, tiny_base, "--fuse-first-stage", "0"))
    assert other.exit_code == 2 and "fuse_first_stage: 1.0 -> 0.0" in other.output, other.output


def test_default_batch_size_is_one_list_per_forward_on_the_cpu(run_files, tmp_path, tiny_base, monkeypatch):
    """Without --batch-size, each forward takes one list on the CPU (faster per list there than batches of 4,
    BENCHMARKS.md) and four where the model runs on a GPU."""
    from headrank.batch import RankerSpec, default_batch_size
    from headrank.engine.ranker import HeadRanker

    assert default_batch_size(RankerSpec(model="m", device="cpu")) == 1
    assert default_batch_size(RankerSpec(model="m", device="cuda")) == 4
    assert default_batch_size(RankerSpec(model="m", device="cpu"), gpus_per_worker=1) == 4
    sizes, rank_batch = [], HeadRanker.rank_batch

    def spy(self, queries, docs, *args, **kwargs):
        sizes.append((len(queries), kwargs.get("batch_size")))
        return rank_batch(self, queries, docs, *args, **kwargs)

    monkeypatch.setattr(HeadRanker, "rank_batch", spy)
    assert runner.invoke(app, _args(run_files, tmp_path / "out", tiny_base)).exit_code == 0
    assert sizes and set(sizes) == {(1, 1)}


def test_a_torn_utf8_tail_and_a_lone_surrogate_do_not_block_the_run(run_files, tiny_base, tmp_path):
    """Issue 44: a shard cut inside a UTF-8 character blocked every rerun with a bare codec error; a passage
    with a lone surrogate (a JSON escape) stopped the whole batch under --on-error skip and left an empty shard."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert runner.invoke(app, _args(run_files, whole, tiny_base)).exit_code == 0
    first = runner.invoke(app, _args(run_files, cut, tiny_base))
    assert first.exit_code == 0, first.output
    shard = next((cut / "shards").glob("*.jsonl"))
    lines = shard.read_bytes().split(b"\n")
    kept = lines[:30]
    torn = '{"qid": "q30", "docids": ["café'.encode()[:-1]  # cut inside "é"
    shard.write_bytes(b"\n".join(kept) + b"\n" + torn)
    again = runner.invoke(app, _args(run_files, cut, tiny_base))
    assert again.exit_code == 0, again.output
    assert "ranked 30 queries now" in again.output and "codec" not in again.output
    assert _trec(cut / "run.trec") == _trec(whole / "run.trec")

    corpus = run_files / "corpus.jsonl"
    rows = corpus.read_text().splitlines()
    rows[3] = rows[3].replace('"text": "', '"text": "\\ud800 ')  # d0-3 of q0 now holds a lone surrogate
    corpus.write_text("\n".join(rows) + "\n")
    out = tmp_path / "surrogate"
    skipped = runner.invoke(app, _args(run_files, out, tiny_base))
    assert skipped.exit_code == 0, skipped.output
    problems = (out / "problems.txt").read_text()
    assert "corpus.jsonl:4" in problems and "lone surrogate" in problems
    ranked = _trec(out / "run.trec")
    assert {row[0] for row in ranked} == {f"q{q}" for q in range(60)}  # every query still ranked
    assert [row[2] for row in ranked if row[0] == "q0"] and "d0-3" not in [row[2] for row in ranked if row[0] == "q0"]
    failed = runner.invoke(app, _args(run_files, tmp_path / "fail", tiny_base, "--on-error", "fail"))
    assert failed.exit_code == 2 and "lone surrogate" in failed.output and "Traceback" not in failed.output
    assert not list((tmp_path / "fail").glob("shards/*.jsonl"))  # no empty shard left behind
