"""Bad input, table-driven: every case must end in a clear error (exit code / exception type and message).

CLI cases run the real commands through typer's runner; the ones that need a model use a tiny random
Llama saved as a model directory (with the real SmolLM2 tokenizer). API cases call the library. Add a row
here whenever a bad input is found that did not give a clear error.
"""

import json
import logging
import math

import pytest
from conftest import tiny_llama
from typer.testing import CliRunner

from headrank.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory, llama_tokenizer):
    """Input files of every shape the cases need, and a tiny model directory."""
    root = tmp_path_factory.mktemp("bad-input")
    model = root / "tiny"
    tiny_llama().save_pretrained(model)
    llama_tokenizer.save_pretrained(model)
    (root / "empty-model").mkdir()
    (root / "empty-model" / "config.json").write_text("")
    texts = {
        "ok.tsv": "d1\tsolar panels\nd2\tpasta recipes\n",
        "noquery.tsv": "d1\tpassage\n",
        "bad.jsonl": '{"text": "a"}\n{oops\n',
        "empty.tsv": "\n",
        "spaced.tsv": "doc one\tsolar panels\nd2\tpasta\n",
        "dupes.tsv": "d1\tsolar\nd1\tpasta\n",
        "query-passage.tsv": ("what is solar power?\tSolar panels turn light into power.\n"
                              "what is solar power?\tPasta is boiled.\n"),
        "rankgpt.json": json.dumps([{"query": "q", "hits": [{"docid": "d1", "content": "x"}]}]),
        "heads-bad.json": "{not json",
        "heads-strshape.json": json.dumps({"heads": [[1, 0]], "num_layers": "4", "num_heads": "4"}),
        "heads-prompt.json": json.dumps({"heads": [[1, 0]], "prompt": {"max_passage_tokenz": 10}}),
        "heads-shape.json": json.dumps({"heads": [[1, 0]], "num_layers": 30, "num_heads": 9, "model": "other"}),
        "card.json": "[1, 2]",
        "two-queries.jsonl": '{"query": "first"}\n{"text": "a"}\n{"query": "second"}\n',
        "mixed.tsv": "a text-only line\n0\tan explicit id 0\n",
        "notjson.json": "{",
    }
    for name, text in texts.items():
        (root / name).write_text(text)
    (root / "latin1.tsv").write_bytes(b"d1\tcaf\xe9\n")
    judged = root / "rankgpt-dir"  # 5 judged queries of 3 passages each: enough to adapt on
    judged.mkdir()
    (judged / "candidates.json").write_text(json.dumps([
        {"query": f"query {q}", "hits": [{"qid": str(q), "docid": f"{q}-{i}", "content": f"passage {i}"} for i in range(3)]}
        for q in range(5)]))
    (judged / "qrels.txt").write_text("".join(f"{q} 0 {q}-0 1\n{q} 0 {q}-1 0\n" for q in range(5)))
    (root / "a-checkpoint").mkdir()  # an earlier adapt's output: config, head set, card
    (root / "a-checkpoint" / "headrank_config.json").write_text("{}")
    (root / "a-checkpoint" / "README.md").write_text("card of the earlier model")
    for name, data in (("run-a", "aaaa"), ("run-b", "bbbb")):  # evaluate runs of one benchmark on other data
        (root / name).mkdir()
        (root / name / "metrics.json").write_text(json.dumps({"benchmark": "dl19", "settings": {"data": data},
                                                             "per_query": {"1": {"nDCG@10": 0.5}}}))
    return root


def _args(args, files):
    return [a.format(root=files, model=files / "tiny") for a in args]


M = ["--model", "{model}"]
OK = "{root}/ok.tsv"
CLI_CASES = [
    # rerank: input files
    ("no query", ["rerank", "{root}/noquery.tsv", *M], 2, "no query"),
    ("malformed jsonl line", ["rerank", "{root}/bad.jsonl", "-q", "x", *M], 2, "bad.jsonl:2"),
    ("no passages", ["rerank", "{root}/empty.tsv", "-q", "x", *M], 2, "no candidate passages"),
    ("missing input file", ["rerank", "{root}/missing.tsv", "-q", "x", *M], 2, "not found"),
    ("directory as input", ["rerank", "{root}", "-q", "x", *M], 2, "is a directory"),
    ("not UTF-8", ["rerank", "{root}/latin1.tsv", "-q", "x", *M], 2, "not UTF-8"),
    ("duplicate docids", ["rerank", "{root}/dupes.tsv", "-q", "x", *M], 2, "appears twice"),
    ("query<TAB>passage TSV", ["rerank", "{root}/query-passage.tsv", *M], 2, "pass the query with --query"),
    ("entry out of range", ["rerank", "{root}/rankgpt.json", "--entry", "999", *M], 2, "entry 999"),
    ("negative entry", ["rerank", "{root}/rankgpt.json", "--entry", "-1", *M], 2, "Invalid value"),
    ("unknown format", ["rerank", OK, "-q", "x", "--format", "xml", *M], 2, "Invalid value"),
    ("JSONL with two query lines", ["rerank", "{root}/two-queries.jsonl", *M], 2, "a second query line"),
    ("TSV mixing ids and text-only lines", ["rerank", "{root}/mixed.tsv", "-q", "x", *M], 2, "are mixed"),
    ("TREC docid with a space refused before the model", ["rerank", "{root}/spaced.tsv", "-q", "x", "-o", "trec",
                                                           "--model", "./no/such/model"], 2, "docid 'doc one'"),
    # rerank: values
    ("depth 0", ["rerank", OK, "-q", "x", "--depth", "0", *M], 2, "Invalid value"),
    ("negative depth", ["rerank", OK, "-q", "x", "--depth", "-2", *M], 2, "Invalid value"),
    ("top-k 0", ["rerank", OK, "-q", "x", "--top-k", "0", *M], 2, "Invalid value"),
    ("negative top-k", ["rerank", OK, "-q", "x", "--top-k", "-2", *M], 2, "Invalid value"),
    ("top-k 0 with fusion", ["rerank", OK, "-q", "x", "--top-k", "0", "--fuse-first-stage", "0.5", *M], 2, "Invalid value"),
    ("fusion weight above 1", ["rerank", OK, "-q", "x", "--fuse-first-stage", "2", *M], 2, "Invalid value"),
    ("window of 1", ["rerank", OK, "-q", "x", "--window", "1", *M], 2, "at least 2"),
    ("window with generative", ["rerank", OK, "-q", "x", "--window", "4", "--method", "generative", *M], 2,
     "--window works for"),
    ("both orders with pointwise", ["rerank", OK, "-q", "x", "--both-orders", "--method", "pointwise", *M], 2,
     "--both-orders works for"),
    ("max-length 0", ["rerank", OK, "-q", "x", "--max-length", "0", *M], 2, "Invalid value"),
    ("max-passage-tokens 0", ["rerank", OK, "-q", "x", "--max-passage-tokens", "0", *M], 2, "Invalid value"),
    ("tag with a space", ["rerank", OK, "-q", "x", "-o", "trec", "--tag", "my run", *M], 2,
     "--tag 'my run' cannot go into a TREC run"),
    ("docid with a space in TREC output", ["rerank", "{root}/spaced.tsv", "-q", "x", "-o", "trec", *M], 2, "docid"),
    # rerank: heads
    ("icr with heads", ["rerank", OK, "-q", "x", "--method", "icr", "--heads", "1:0", *M], 2, "reads every head"),
    ("unparsable inline heads", ["rerank", OK, "-q", "x", "--heads", "x:y", *M], 2, "layer:head"),
    ("heads the model lacks", ["rerank", OK, "-q", "x", "--heads", "40:0", *M], 2, "do not exist"),
    ("head set for another shape", ["rerank", OK, "-q", "x", "--heads", "{root}/heads-shape.json", *M], 2,
     "30 layers x 9 heads"),
    ("head set not JSON", ["rerank", OK, "-q", "x", "--heads", "{root}/heads-bad.json", *M], 2, "not valid JSON"),
    ("head set with string shapes", ["rerank", OK, "-q", "x", "--heads", "{root}/heads-strshape.json", *M], 2,
     "num_layers must be a positive integer"),
    ("head set with a bad prompt field", ["rerank", OK, "-q", "x", "--heads", "{root}/heads-prompt.json", *M], 2,
     "prompt settings"),
    ("missing head set file", ["rerank", OK, "-q", "x", "--heads", "{root}/nope.json", *M], 2, "not found"),
    # rerank: model, device, dtype
    ("unknown device", ["rerank", OK, "-q", "x", "--device", "tpu", *M], 2, "unknown device"),
    ("meta device", ["rerank", OK, "-q", "x", "--device", "meta", *M], 2, "unknown device"),
    ("cuda without CUDA", ["rerank", OK, "-q", "x", "--device", "cuda", *M], 2, "CUDA is not available"),
    ("unknown dtype", ["rerank", OK, "-q", "x", "--dtype", "float8", *M], 2, "unknown dtype"),
    ("missing local model path", ["rerank", OK, "-q", "x", "--model", "./no/such/model"], 3, "not found"),
    ("model dir with an empty config", ["rerank", OK, "-q", "x", "--model", "{root}/empty-model"], 3,
     "Could not load model"),
    ("unknown bare model name", ["rerank", OK, "-q", "x", "--model", "no-such-model"], 3, "owner/name"),
    ("directory without config.json", ["rerank", OK, "-q", "x", "--model", "{root}"], 3, "no config.json"),
    # demo
    ("demo with a baseline", ["demo", "--method", "pointwise"], 2, "icr or the preset"),
    # evaluate
    ("no benchmark", ["evaluate", "-b", ",", "--method", "bm25", "--out", "{root}/runs"], 2, "names no benchmark"),
    ("unknown method", ["evaluate", "--method", "magic", "--out", "{root}/runs"], 2, "unknown method"),
    ("bm25 reversed", ["evaluate", "--method", "bm25", "--order", "reversed", "--out", "{root}/runs"], 2,
     "does not apply"),
    ("bm25 fused", ["evaluate", "--method", "bm25", "--fuse-first-stage", "0.5", "--out", "{root}/runs"], 2,
     "is the first stage"),
    ("unknown order", ["evaluate", "--method", "icr", "--order", "sideways", "--out", "{root}/runs"], 2,
     "order must be one of"),
    ("shared capture with pointwise", ["evaluate", "--method", "pointwise", "--shared-capture", "--out",
                                       "{root}/runs"], 2, "--shared-capture works for"),
    ("window with bm25", ["evaluate", "--method", "bm25", "--window", "4", "--out", "{root}/runs"], 2,
     "--window works for"),
    ("unknown benchmark", ["evaluate", "--method", "bm25", "-b", "nope", "--out", "{root}/runs", "--data-root",
                           "{root}"], 2, "unknown benchmark"),
    ("depth 0", ["evaluate", "--method", "bm25", "-K", "0", "--out", "{root}/runs"], 2, "depth must be >= 1"),
    # adapt
    ("adapt on a reporting set", ["adapt", "--data", "dl20", "--out", "{root}/adapted"], 2, "reporting set"),
    ("adapt on a missing folder", ["adapt", "--data", "{root}/no-such-data", "--out", "{root}/adapted"], 2,
     "unknown benchmark"),
    ("adapt with bad --ks", ["adapt", "--data", "{root}", "--ks", "four", "--out", "{root}/adapted"], 2, "--ks"),
    ("adapt with K 0", ["adapt", "--data", "{root}", "--ks", "0", "--out", "{root}/adapted"], 2, "--ks"),
    ("adapt with NaN pools", ["adapt", "--data", "{root}", "--pools", "nan", "--out", "{root}/adapted"], 2,
     "--pools: expected comma-separated finite numbers >= 1"),
    ("adapt val fraction 1", ["adapt", "--data", "{root}", "--val-fraction", "1", "--out", "{root}/adapted"], 2,
     "val_fraction"),
    ("adapt --out a file", ["adapt", "--data", "{root}/rankgpt-dir", "--out", "{root}/ok.tsv"], 2, "is a file"),
    ("adapt --out under /proc", ["adapt", "--data", "{root}/rankgpt-dir", "--out", "/proc/headrank-x"], 2,
     "cannot be written"),
    ("adapt --report a folder", ["adapt", "--data", "{root}/rankgpt-dir", "--out", "{root}/adapted", "--report",
                                 "{root}"], 2, "is a directory"),
    ("adapt --out a checkpoint without --overwrite", ["adapt", "--data", "{root}/rankgpt-dir", "--out",
                                                      "{root}/a-checkpoint"], 2, "already holds a checkpoint"),
    ("adapt --out a folder with other files", ["adapt", "--data", "{root}/rankgpt-dir", "--out", "{root}/run-a"], 2,
     "not a checkpoint directory"),
    ("adapt from an unknown preset", ["adapt", "--from", "no-such-preset", "--data", "{root}/rankgpt-dir", "--out",
                                      "{root}/adapted"], 2, "unknown preset"),
    ("adapt with unknown query ids", ["adapt", "--data", "{root}/rankgpt-dir", "--queries", "{root}/ok.tsv", "--out",
                                      "{root}/adapted"], 2, "not judged queries"),
    ("adapt with a query list that is a folder", ["adapt", "--data", "{root}/rankgpt-dir", "--queries", "{root}",
                                                  "--out", "{root}/adapted"], 2, "is a directory"),
    # select-heads
    ("selection on a reporting set", ["select-heads", "--out", "{root}/h.json", "--benchmark", "dl19"], 2,
     "reporting set"),
    ("selection on NFCorpus test", ["select-heads", "--out", "{root}/h.json", "--benchmark", "nfcorpus",
                                    "--split", "test"], 2, "reporting set"),
    ("unknown selection preset", ["select-heads", "--out", "{root}/h.json", "--preset", "foo", *M, "--benchmark",
                                  "{root}"], 2, "preset must be"),
    ("unknown selection order", ["select-heads", "--out", "{root}/h.json", "--order", "sideways"], 2,
     "order must be one of"),
    ("bad lambdas", ["select-heads", "--out", "{root}/h.json", "--lambdas", "a,b"], 2, "--lambdas"),
    ("NaN lambda", ["select-heads", "--out", "{root}/h.json", "--lambdas", "nan", *M, "--benchmark",
                    "{root}/rankgpt-dir"], 2, "--lambdas: expected comma-separated finite numbers >= 0"),
    ("K 0 and negative, refused before observing", ["select-heads", "--out", "{root}/h.json", "--ks", "0,-3",
                                                    "--model", "./no/such/model"], 2, "--ks: expected"),
    ("fractional K", ["select-heads", "--out", "{root}/h.json", "--ks", "2.5"], 2, "whole numbers"),
    # train
    ("NaN learning rate", ["train", "--heads", "{root}/heads-shape.json", "--out", "{root}/c", "--lr", "nan"], 2,
     "lr must be a finite number"),
    ("infinite learning rate", ["train", "--heads", "{root}/heads-shape.json", "--out", "{root}/c", "--lr", "inf"],
     2, "lr must be a finite number"),
    ("tau 0", ["train", "--heads", "{root}/heads-shape.json", "--out", "{root}/c", "--tau", "0"], 2, "tau must be"),
    ("beta 0", ["train", "--heads", "{root}/heads-shape.json", "--out", "{root}/c", "--beta", "0"], 2, "beta must be"),
    ("zero pairs", ["train", "--heads", "{root}/heads-shape.json", "--out", "{root}/c", "--pairs", "0"], 2,
     "pairs_per_list"),
    ("negative alpha", ["train", "--heads", "{root}/heads-shape.json", "--out", "{root}/c", "--alpha", "-1"], 2,
     "alpha must be"),
    ("training on a reporting set", ["train", "--heads", "{root}/missing.json", "--out", "{root}/c", "--benchmark",
                                     "noveleval"], 2, "reporting set"),
    ("missing head set for training", ["train", "--heads", "{root}/missing.json", "--out", "{root}/c"], 2,
     "not found"),
    # build-preset
    ("preset card not an object", ["build-preset", "--out", "{root}/p", "--card", "{root}/card.json"], 2,
     "must be a JSON object"),
    ("preset card not JSON", ["build-preset", "--out", "{root}/p", "--card", "{root}/notjson.json"], 2, "Expecting"),
    ("preset lists of one passage", ["build-preset", "--out", "{root}/p", "--depth", "1"], 2, "Invalid value"),
    ("preset trained on a reporting set", ["build-preset", "--out", "{root}/p", "--benchmark", "dl20"], 2,
     "reporting set"),
    # compare
    ("compare missing runs", ["compare", "{root}/nope-a", "{root}/nope-b"], 2, "nope-a"),
    ("compare runs on other data", ["compare", "{root}/run-a", "{root}/run-b"], 2, "read different data"),
    # explain
    ("explain with a baseline method", ["explain", OK, "-q", "x", "--method", "generative", *M], 2, "Invalid value"),
    ("explain as a TREC run", ["explain", OK, "-q", "x", "-o", "trec", *M], 2, "Invalid value"),
    ("explain --html into a missing folder", ["explain", OK, "-q", "x", "--html", "{root}/no/such/x.html",
                                              "--model", "./no/such/model"], 2, "does not exist"),
    # output paths: checked before any model loads (the model named here does not exist)
    ("explain --html a folder", ["explain", OK, "-q", "x", "--html", "{root}", "--model", "./no/such/model"], 2,
     "is a directory"),
    ("explain --png a text suffix", ["explain", OK, "-q", "x", "--png", "{root}/fig.txt", "--model", "./no/such/m"],
     2, "not an image format"),
    ("explain --png a folder", ["explain", OK, "-q", "x", "--png", "{root}", "--model", "./no/such/model"], 2,
     "is a directory"),
    ("explain --png under /proc", ["explain", OK, "-q", "x", "--png", "/proc/headrank.png", "--model", "./no/m"], 2,
     "cannot be written"),
    ("rerank-batch --out a file", ["rerank-batch", "--out", OK, "--benchmark", "dl19", "--model", "./no/m"], 2,
     "is a file"),
    ("rerank-batch --out under /proc", ["rerank-batch", "--out", "/proc/headrank-x", "--benchmark", "dl19"], 2,
     "cannot be written"),
    ("evaluate --out a file", ["evaluate", "--method", "bm25", "-b", "dl19", "--out", OK], 2, "is a file"),
    ("build-preset --out a file", ["build-preset", "--out", OK], 2, "is a file"),
    ("build-preset --name with a path", ["build-preset", "--out", "{root}/p", "--name", "../evil"], 2,
     "plain name"),
    ("build-preset --card a folder", ["build-preset", "--out", "{root}/p", "--card", "{root}"], 2, "is a directory"),
    ("build-preset --card not UTF-8", ["build-preset", "--out", "{root}/p", "--card", "{root}/latin1.tsv"], 2,
     "not UTF-8"),
    ("build-preset --checkpoint a file", ["build-preset", "--out", "{root}/p", "--checkpoint", OK], 2,
     "not a checkpoint folder (it is a file)"),
    # evaluate: optional package
    ("ir_datasets without the package", ["evaluate", "--method", "bm25", "-b", "ir_datasets:msmarco-passage/dev",
                                         "--out", "{root}/runs"], 2, "pip install 'headrank[ir-datasets]'"),
    ("evaluate --split a path", ["evaluate", "--method", "bm25", "-b", "nfcorpus", "--split", "../../x", "--out",
                                 "{root}/runs"], 2, "split must be a plain name"),
    ("rerank --safety-valve on a model without one", ["rerank", OK, "-q", "x", *M, "--heads", "1:0",
                                                      "--safety-valve"], 2, "has no safety valve"),
    ("calibrate a reporting set", ["calibrate", "{model}", "--sets", "dl19"], 2, "validation sets only"),
    ("calibrate a plain model", ["calibrate", "{model}"], 2, "neither a preset nor a checkpoint"),
    # serve
    ("serve --root-path without a slash", ["serve", "--root-path", "hr", *M], 2, "root_path must look like"),
    ("serve --preload of an unknown preset", ["serve", "--preload", "nope", *M], 2, "not a shipped preset"),
    ("serve --log-level loud", ["serve", "--log-level", "loud", *M], 2, "log_level"),
]


@pytest.mark.parametrize("name, args, code, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(files, name, args, code, message):
    result = runner.invoke(app, _args(args, files))
    assert result.exit_code == code, (name, result.output)
    assert message in result.output, (name, result.output)
    assert "Traceback" not in result.output


def test_cli_non_utf8_stdin(files):
    result = runner.invoke(app, ["rerank", "-", "-q", "x", "--model", str(files / "tiny")], input=b"d1\tcaf\xe9\n")
    assert result.exit_code == 2 and "not UTF-8" in result.output


@pytest.fixture(scope="module")
def ranker(files):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained(str(files / "tiny"), heads=[(1, 0), (2, 3)], device="cpu")


def _api_cases():
    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.fusion import fuse_with_first_stage
    from headrank.engine.heads import HeadSet, HeadSetMismatchError
    from headrank.engine.models import ModelUnavailableError, load_model, resolve_device, resolve_dtype
    from headrank.engine.presets import load_preset
    from headrank.engine.prompt import PromptSettings
    from headrank.engine.ranker import HeadRanker
    from headrank.learn.align import TrainConfig

    docs = ["solar panels", "pasta recipes"]
    return [
        ("empty query", lambda r, m: r.rank("  ", docs), ValueError, "empty"),
        ("no passages", lambda r, m: r.rank("q", []), ValueError, "no passages"),
        ("query not a string", lambda r, m: r.rank(None, docs), TypeError, "expected str"),
        ("passages as one string", lambda r, m: r.rank("q", "solar"), TypeError, "list of strings"),
        ("passage not a string", lambda r, m: r.rank("q", [1, 2]), TypeError, "expected str"),
        ("top_k 0", lambda r, m: r.rank("q", docs, top_k=0), ValueError, "top_k"),
        ("top_k float", lambda r, m: r.rank("q", docs, top_k=1.5), ValueError, "top_k"),
        ("top_k string", lambda r, m: r.rank("q", docs, top_k="2"), ValueError, "top_k"),
        ("generator of queries", lambda r, m: r.rank_batch((q for q in ["q"]), [docs]), TypeError, "not iterators"),
        ("queries and lists differ", lambda r, m: r.rank_batch(["q"], [docs, docs]), ValueError, "passage lists"),
        ("batch_size 0", lambda r, m: r.rank_batch(["q"], [docs], batch_size=0), ValueError, "batch_size"),
        ("lone surrogate in query", lambda r, m: r.rank("q\ud800", docs), ValueError, "lone surrogate"),
        ("lone surrogate in passage", lambda r, m: r.rank("q", ["a\udfff"]), ValueError, "lone surrogate"),
        ("dict passage without text", lambda r, m: r.rank("q", [{"id": 1}]), TypeError, "'text'"),
        ("doc_ids of the wrong length", lambda r, m: r.rank("q", docs, doc_ids=["a"]), ValueError, "doc_ids"),
        ("score() beyond the context", lambda r, m: HeadRanker(r.model, r.heads, max_length=20).score("q", docs),
         ValueError, "max_length"),
        ("one passage longer than the context",
         lambda r, m: HeadRanker(r.model, r.heads, max_length=40).rank("q", ["solar " * 300, "x " * 300]),
         ValueError, "raise max_length"),
        ("model as a number", lambda r, m: HeadRanker.from_pretrained(123), TypeError, "model must be"),
        ("model as an empty string", lambda r, m: HeadRanker.from_pretrained(""), ValueError, "empty"),
        ("unknown method", lambda r, m: HeadRanker.from_pretrained(m, method="bm25"), ValueError, "unknown method"),
        ("heads method without heads", lambda r, m: HeadRanker.from_pretrained(m, method="heads"), ValueError,
         "needs a head set"),
        ("icr with heads", lambda r, m: HeadRanker.from_pretrained(m, method="icr", heads=[(1, 0)]), ValueError,
         "reads every head"),
        ("inline heads the model lacks", lambda r, m: HeadRanker.from_pretrained(m, heads="16:0"),
         HeadSetMismatchError, "do not exist"),
        ("window of 1", lambda r, m: HeadRanker.from_pretrained(m, heads=[(1, 0)], window=1), ValueError, "window"),
        ("fusion weight 1.5", lambda r, m: HeadRanker.from_pretrained(m, heads=[(1, 0)], fuse_first_stage=1.5),
         ValueError, "fuse_first_stage"),
        ("max_length 0", lambda r, m: HeadRanker(r.model, r.heads, max_length=0), ValueError, "max_length"),
        ("empty head set", lambda r, m: HeadSet(heads=[]), ValueError, "at least one"),
        ("duplicate heads", lambda r, m: HeadSet(heads=[(1, 0), (1, 0)]), ValueError, "twice"),
        ("non-integer head", lambda r, m: HeadSet(heads=[(1, "a")]), ValueError, "integers"),
        ("head set shape as a string", lambda r, m: HeadSet(heads=[(1, 0)], num_layers="30"), ValueError,
         "num_layers"),
        ("heads as a bare string", lambda r, m: HeadSet(heads="1:0"), ValueError, "HeadSet.parse"),
        ("head set from a missing file", lambda r, m: HeadSet.load("/no/such/heads.json"), FileNotFoundError,
         "not found"),
        ("NaN learning rate", lambda r, m: TrainConfig(lr=math.nan), ValueError, "lr"),
        ("tau 0", lambda r, m: TrainConfig(tau=0), ValueError, "tau"),
        ("zero pairs", lambda r, m: TrainConfig(pairs_per_list=0), ValueError, "pairs_per_list"),
        ("negative alpha", lambda r, m: TrainConfig(alpha=-0.5), ValueError, "alpha"),
        ("no LoRA targets", lambda r, m: TrainConfig(target_modules=()), ValueError, "target_modules"),
        ("inference window 1", lambda r, m: InferenceSettings(window=1), ValueError, "window"),
        ("unknown inference setting", lambda r, m: InferenceSettings.from_dict({"orders": 2}), ValueError,
         "unknown inference settings"),
        ("unknown preset", lambda r, m: load_preset("no-such-preset"), ValueError, "unknown preset"),
        ("passage budget 0", lambda r, m: PromptSettings(max_passage_tokens=0), ValueError, "max_passage_tokens"),
        ("fractional passage budget", lambda r, m: HeadRanker.from_pretrained(m, heads=[(1, 0)],
                                                                              max_passage_tokens=2.5),
         ValueError, "max_passage_tokens must be a whole number"),
        ("both_orders as a string", lambda r, m: HeadRanker.from_pretrained(m, heads=[(1, 0)], both_orders="no"),
         ValueError, "both_orders must be True, False or None"),
        ("per-call fusion weight NaN", lambda r, m: r.rank("q", docs, fuse_first_stage=math.nan), ValueError,
         "fuse_first_stage"),
        ("head set object without heads", lambda r, m: HeadSet.coerce({"layers": [1]}), ValueError,
         "needs a 'heads' list"),
        ("fusion weight 2", lambda r, m: fuse_with_first_stage([1.0, 0.0], 2), ValueError, "between 0 and 1"),
        ("meta device", lambda r, m: resolve_device("meta"), ValueError, "unknown device"),
        ("float8 dtype", lambda r, m: resolve_dtype("float8", resolve_device("cpu")), ValueError, "unknown dtype"),
        ("missing local model", lambda r, m: load_model("./no/such/model"), ModelUnavailableError, "not found"),
        ("unknown bare model name", lambda r, m: load_model("nosuchmodel"), ModelUnavailableError, "owner/name"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("name, call, error, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(ranker, files, name, call, error, message):
    with pytest.raises(error, match=message):
        call(ranker, str(files / "tiny"))


def test_there_are_enough_cases():
    assert len(CLI_CASES) + len(API_CASES) + 1 >= 60


# ------------------------------------------------------------------------------------------------------------------
# Silently wrong results (issue 44): one rule for a repeated id or qid in every reader (the first is kept and the
# repeat is reported with the file and line: a warning, problems.txt in rerank-batch, refused with --on-error
# fail); conflicting judgments keep the first; ids that are not strings or integers are refused; every backend
# checks its options at load, before a model loads. Each case failed before: a later line replaced the first.

from headrank.data.formats import DataFormatError, read_beir, read_qrels, read_rerank_input, read_topics  # noqa: E402


def test_topics_keep_the_first_query_text_and_say_so(tmp_path, caplog):
    path = tmp_path / "topics.tsv"
    path.write_text("q1\tfirst question\nq2\tother\nq1\tsecond question\n")
    with caplog.at_level(logging.WARNING):
        topics = read_topics(path)
    assert topics == {"q1": "first question", "q2": "other"}
    assert "topics.tsv:3: repeated id 'q1' with another text (first at line 1); the first is kept" in caplog.text
    problems = []
    assert read_topics(path, on_problem=problems.append)["q1"] == "first question" and len(problems) == 1


def test_conflicting_qrels_keep_the_first_judgment(tmp_path, caplog):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 2\nq1 0 d2 0\nq1 0 d1 0\nq1 0 d2 0\n")
    with caplog.at_level(logging.WARNING):
        qrels = read_qrels(path)
    assert qrels == {"q1": {"d1": 2, "d2": 0}}
    assert "qrels.txt:3: a second judgment of document 'd1' for query 'q1' (grade 0; the first said 2)" in caplog.text
    assert "qrels.txt:4" not in caplog.text  # the same judgment twice is no conflict


def _beir(folder, corpus_lines):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(o) + "\n" for o in corpus_lines))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "solar power"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def test_beir_corpus_with_a_repeated_id_keeps_the_first_text(tmp_path, caplog):
    folder = _beir(tmp_path / "beir", [{"_id": "d1", "title": "Solar", "text": "panels make power"},
                                       {"_id": "d2", "text": "pasta"},
                                       {"_id": "d1", "text": "something else entirely"}])
    with caplog.at_level(logging.WARNING):
        corpus, queries, qrels = read_beir(folder)
    assert corpus["d1"] == "Solar panels make power" and len(corpus) == 2
    assert "corpus.jsonl:3: repeated _id 'd1' with another text (first at line 1)" in caplog.text


@pytest.mark.parametrize("bad", [None, [1, 2], {"a": 1}, True, 1.5, "", "  "])
def test_ids_that_are_not_strings_or_integers_are_refused(tmp_path, bad):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"query": "q"}) + "\n" + json.dumps({"docid": bad, "text": "x"}) + "\n")
    with pytest.raises(DataFormatError, match=r"c.jsonl:2: .*'docid'"):
        read_rerank_input(jsonl)
    rankgpt = tmp_path / "c.json"
    rankgpt.write_text(json.dumps({"query": "q", "hits": [{"docid": bad, "content": "x"}]}))
    with pytest.raises(DataFormatError, match="entry 0, hit 0"):
        read_rerank_input(rankgpt)
    folder = _beir(tmp_path / "beir", [{"_id": bad, "text": "x"}])
    with pytest.raises(DataFormatError, match="corpus.jsonl:1"):
        read_beir(folder)


def test_an_empty_tsv_docid_is_refused(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("d1\tsolar\n\tpasta\n")
    with pytest.raises(DataFormatError, match=r"c.tsv:2: empty docid"):
        read_rerank_input(path)


def test_rerank_batch_ranks_the_first_text_of_a_repeated_corpus_id_and_lists_it(tmp_path):
    from headrank.batch import read_run_lists

    (tmp_path / "topics.tsv").write_text("q1\tsolar power\nq1\tpasta recipes\n")
    (tmp_path / "corpus.tsv").write_text("d1\tsolar panels\nd2\tpasta\nd1\ta cat video\n")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 9.0 bm25\nq1 Q0 d2 2 8.0 bm25\n")
    batch = read_run_lists(tmp_path / "run.trec", tmp_path / "topics.tsv", tmp_path / "corpus.tsv")
    (only,) = batch.lists
    assert only.query == "solar power" and only.texts == ["solar panels", "pasta"]
    assert any("topics.tsv:2: repeated id 'q1'" in p for p in batch.problems)
    assert any("corpus.tsv:3: repeated id 'd1'" in p for p in batch.problems)
    with pytest.raises(DataFormatError, match="repeated id"):
        read_run_lists(tmp_path / "run.trec", tmp_path / "topics.tsv", tmp_path / "corpus.tsv", on_error="fail")
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in [{"_id": "d1", "text": "solar panels"},
                                                            {"_id": "d2", "text": "pasta"},
                                                            {"_id": ["d1"], "text": "list id"},
                                                            {"_id": "d1", "text": "a cat video"}]))
    batch = read_run_lists(tmp_path / "run.trec", tmp_path / "topics.tsv", jsonl)
    assert batch.lists[0].texts == ["solar panels", "pasta"]
    assert any("corpus.jsonl:3: document id must be a string or an integer, got list" in p for p in batch.problems)
    assert any("corpus.jsonl:4: repeated document id 'd1'" in p for p in batch.problems)


def test_evaluate_on_a_beir_folder_with_a_repeated_id_uses_the_first_text(tmp_path, caplog):
    from headrank.data.benchmarks import load_benchmark

    folder = _beir(tmp_path / "beir", [{"_id": "d1", "text": "solar panels make power"}, {"_id": "d2", "text": "pasta"},
                                       {"_id": "d1", "text": "pasta pasta pasta"}])
    with caplog.at_level(logging.WARNING):
        bench = load_benchmark(str(folder), cache_dir=tmp_path / "cache")
    texts = {c.docid: c.text for c in bench.candidates["q1"]}
    assert texts["d1"] == "solar panels make power"
    assert "repeated _id 'd1'" in caplog.text


def test_adapt_says_when_a_corpus_repeats_ids(tmp_path, caplog):
    """adapt --corpus reads with the same rule and says how many rows became how many documents."""
    from headrank.learn.synthetic import corpus_benchmark

    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"d{i}\tpassage number {i} about solar panels and wind farms\n" for i in range(19))
                      + "d3\tanother text for d3\n")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="19 documents"):
        corpus_benchmark(corpus, "smollm2-135m-instruct", 8, tmp_path / "cache", depth=20)
    assert "20 rows, 19 documents: 1 repeated id (the first text kept)" in caplog.text
    assert "corpus.tsv:20: repeated id 'd3'" in caplog.text


@pytest.mark.parametrize("backend", ["headrank", "icr", "pointwise", "generative"])
@pytest.mark.parametrize("options, message", [({"max_passage_tokens": 0}, "max_passage_tokens"),
                                              ({"fuse_first_stage": 2}, "fuse_first_stage"),
                                              ({"fuse_first_stage": True}, "fuse_first_stage"),
                                              ({"fuse_first_stage": float("nan")}, "fuse_first_stage")])
def test_every_backend_checks_its_options_at_load_before_any_model_loads(backend, options, message, monkeypatch):
    """The same rules for every backend, at load: a model name that does not exist is never reached."""
    from headrank.rerankers import load_reranker

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("headrank.engine.models.load_model", no_model)
    monkeypatch.setattr("headrank.engine.ranker.load_model", no_model, raising=False)
    with pytest.raises(ValueError, match=message):
        load_reranker(backend, "smollm2-135m-instruct", **options)


@pytest.mark.parametrize("backend", ["", None, 3, "..", "json", "os.path", "x.y.z"])
def test_load_reranker_names_the_valid_backends(backend):
    from headrank.rerankers import load_reranker

    with pytest.raises(ValueError, match="choose one of heads, icr, generative, pointwise, bm25, headrank, firststage"):
        load_reranker(backend)


def test_fusion_weights_of_any_real_number_type_and_never_a_bool():
    import decimal

    import numpy as np

    from headrank.engine.rule import fusion_weight

    for value, want in ((np.float32(0.5), 0.5), (np.int64(1), 1.0), (decimal.Decimal("0.25"), 0.25),
                        (np.float64(0.0), None), (0, None)):
        assert fusion_weight(0.8, value) == want, value
    for bad in (True, np.True_, 2, float("nan"), "0.5", decimal.Decimal("1.5")):
        with pytest.raises(ValueError, match="fuse_first_stage"):
            fusion_weight(0.8, bad)


def test_metadata_must_be_a_dict(tmp_path, tiny_base):
    from headrank.engine.ranker import HeadRanker
    from headrank.rerankers import load_reranker

    ranker = HeadRanker.from_pretrained(str(tiny_base), heads="1:0,2:3", device="cpu")
    for reranker in (ranker, load_reranker("firststage")):
        with pytest.raises(TypeError, match="metadata of passage 1 of query 0 must be a dict"):
            reranker.rank("q", [{"text": "a", "meta": {"k": 1}}, {"text": "b", "meta": "oops"}])
    with pytest.raises(TypeError, match="metadata of passage 0"):
        ranker.rank("q", ["a", "b"], metadata=[["x"], None])


def test_read_beir_refuses_a_split_that_is_a_path(tmp_path):
    """--split named a file outside the benchmark folder (qrels/../../x.tsv) and a run folder outside --out."""
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (tmp_path / "x.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    for bad in ("../../x", "../x", "/etc/passwd", "", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="split must be a plain name"):
            read_beir(folder, bad)


def test_rerank_says_when_the_valve_fired_and_names_only_what_was_on(files, tmp_path):
    """A preset whose valve always fires: the JSON says valve_fired, the table carries a caption and a note; the
    input-order note names the safety valve alone when fusion is off (it used to say 'fusion' anyway)."""
    from conftest import make_tiny_preset

    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.rule import SafetyValve

    always = SafetyValve("agreement", threshold=2.0, weight=1.0)
    preset = make_tiny_preset(files / "tiny", tmp_path / "valved", InferenceSettings(safety_valve=always))
    base = ["rerank", str(files / "ok.tsv"), "-q", "solar", "--model", str(preset), "--device", "cpu"]
    as_json = runner.invoke(app, [*base, "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["valve_fired"] is True and body["safety_valve"]["signal"] == "agreement"
    assert body["fuse_first_stage"] is None
    table = runner.invoke(app, base)
    assert "safety valve fired" in table.output and "the safety valve read the input order" in table.output
    assert "fusion" not in table.output.split("note:")[-1]
    off = runner.invoke(app, [*base, "--no-safety-valve", "-o", "json"])
    assert json.loads(off.stdout)["valve_fired"] is False and "note:" not in off.output
